"""A token-bucket rate limiter: a sans-I/O core over an injected clock, with thin drivers."""

from __future__ import annotations

import collections
import math
import numbers
import threading
import time
from collections.abc import Awaitable, Callable

import attrs

from aegis_breaker._errors import BreakerError

__all__ = ["RateLimitExceededError", "RateLimiter", "RateLimiterStatus"]

_SLACK = 1e-9
"""A shortfall below this fraction of the capacity counts as none (float rounding)."""


class RateLimitExceededError(BreakerError):
    """A rate limiter could not admit a call within the caller's wait limit.

    Raised at once, without waiting and without consuming any capacity.

    Attributes:
        retry_after_s: Seconds after which the same amount could go without waiting, if
            nobody else takes the capacity meanwhile.
        limiter_name: The limiter's name, or None when it has none.
        amount: The amount that was asked for.
    """

    retry_after_s: float
    limiter_name: str | None
    amount: float

    def __init__(self, limiter_name: str | None, retry_after_s: float, amount: float) -> None:
        """Build the error for *limiter_name*, which could admit *amount* in *retry_after_s*."""
        self.limiter_name = limiter_name
        self.retry_after_s = retry_after_s
        self.amount = amount
        super().__init__(
            f"{_who(limiter_name)}: {amount:g} would have to wait {retry_after_s:.3f} s, "
            "past the wait limit"
        )

    def __reduce__(self) -> tuple[type[RateLimitExceededError], tuple[str | None, float, float]]:
        """Pickle with the constructor arguments (the message is derived from them)."""
        return (type(self), (self.limiter_name, self.retry_after_s, self.amount))


@attrs.frozen
class RateLimiterStatus:
    """A snapshot of a rate limiter, as `RateLimiter.status` returns it."""

    name: str | None
    """The limiter's name."""
    rate: float
    """Tokens added every ``per_s`` seconds."""
    per_s: float
    """The refill period, in seconds."""
    capacity: float
    """The most tokens the bucket holds (the largest burst)."""
    available: float
    """Tokens in the bucket now; negative while capacity is reserved ahead (callers wait)."""
    waiting: int
    """Callers of `RateLimiter.acquire` / `RateLimiter.aacquire` sleeping until their turn
    in this process."""
    queued_s: float
    """Seconds until the last reservation made so far may go (0.0 when nobody waits)."""
    shared: bool = False
    """Whether the snapshot came from a shared (Redis) state."""

    def to_dict(self) -> dict[str, object]:
        """The snapshot as a plain dict (for logs, JSON and status pages)."""
        return attrs.asdict(self)


async def _asyncio_sleep(seconds: float) -> None:
    """``asyncio.sleep``, imported on first use so that importing the package loads no asyncio."""
    import asyncio  # noqa: PLC0415  # asyncio loads with the async API

    await asyncio.sleep(seconds)


_PLAIN = frozenset({float, int})
"""The types `try_acquire` compares at once; others are checked first (a bool is no amount)."""


def _who(name: str | None) -> str:
    return "rate limiter" if name is None else f"rate limiter {name!r}"


def _number(name: str | None, what: str, value: object) -> float:
    """*value* as a float, or a TypeError naming *what* and the type when it is not a number.

    Checked before anything changes: a string or a bool taken for a number would otherwise
    fail deep inside (``"5" > 0``) with a message naming neither, or count as 1. A number
    too large for a float (``10**400``) raises a ValueError naming *what*, not a bare
    OverflowError.
    """
    try:
        if type(value) in _PLAIN:  # the common case, without the ABC check's cost
            return float(value)  # type: ignore[arg-type]  # an int or a float
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"{_who(name)}: {what} must be a number, got {type(value).__name__} {value!r}"
            )
        return float(value)
    except OverflowError:  # an int (or a Fraction) past what a float holds: 10**400
        raise ValueError(
            f"{_who(name)}: {what} must be a finite number, got one too large for a float"
        ) from None


def _positive(name: str | None, what: str, value: float) -> float:
    value = _number(name, what, value)
    if not (math.isfinite(value) and value > 0):  # `not x > 0` also rejects NaN
        raise ValueError(f"{_who(name)}: {what} must be a positive finite number, got {value!r}")
    return value


_JUMP_S = 1.0
"""A reading this far behind the bucket's time, twice in a row, is a clock that jumped back.

Nearer ones are readings taken before another thread's update (a thread descheduled between
its reading and the lock: milliseconds, not seconds): the bucket's own time, then.
"""


def _find(
    ahead: collections.deque[list[float]], amount: float, go_at: float, near: float
) -> list[float] | None:
    """The waiting reservation of *amount* going nearest *go_at*, if less than *near* from it.

    Searched from the end of the line (go times only grow along it).
    """
    found, best = None, near
    for entry in reversed(ahead):
        if entry[0] <= go_at - near:
            break
        off = abs(entry[0] - go_at)
        if off < best and entry[1] == amount and not entry[2]:
            found, best = entry, off
    return found


class RateLimiter:
    """A token bucket shared by threads and asyncio tasks: ``rate`` tokens every ``per_s``.

    ``RateLimiter(500)`` admits 500 requests a minute; ``RateLimiter(200_000)`` works as a
    tokens-per-minute limit when each call asks for its (estimated) token count. The bucket
    holds at most ``burst`` tokens and starts full, so up to ``burst`` can go at once after an
    idle spell; the default ``burst`` is ``rate`` (one period's worth), so a fresh limiter may
    let ``rate`` calls go at once, and then one every ``per_s / rate`` seconds. Pass a smaller
    ``burst`` (``burst=1`` paces calls evenly) when the provider counts over windows shorter
    than ``per_s``. In any window of ``per_s`` seconds at most ``burst + rate`` are admitted.

    The core is a state machine over the clock and never sleeps: `reserve` takes capacity
    *now* and says how long the caller must wait before going; the bucket may go negative
    (capacity reserved ahead), so reservations are served first come, first served: a later
    small request never goes before an earlier large one. Every operation is O(1) under a
    lock that is never held while sleeping. `acquire`, `aacquire` and `try_acquire` are thin
    drivers over it; `refund` and `consume` reconcile an estimate with the real usage.

    Args:
        rate: Tokens added every *per_s* seconds (> 0).
        per_s: The refill period in seconds (> 0); 60 by default, so *rate* is per minute.
        burst: The bucket's capacity (> 0); None means *rate*.
        clock: Monotonic seconds; tests pass a fake.
        name: Shown in errors and `status`.

    Every method given a time, an amount or a wait limit that is not a number (a string,
    a bool) raises a TypeError naming the argument and its type, before anything changes.

    Raises:
        ValueError: When *rate*, *per_s* or *burst* is not a positive finite number.
        TypeError: When one of them is not a number.
    """

    __slots__ = (
        "_ahead",
        "_by_go",
        "_capacity",
        "_clock",
        "_jump_from",
        "_jump_to",
        "_last",
        "_last_go",
        "_lock",
        "_name",
        "_per_s",
        "_per_second",
        "_rate",
        "_slack",
        "_tokens",
        "_waiting",
    )

    def __init__(
        self,
        rate: float,
        per_s: float = 60.0,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
    ) -> None:
        """Build a limiter whose bucket starts full."""
        self._name = name
        self._rate = _positive(name, "rate", rate)
        self._per_s = _positive(name, "per_s", per_s)
        self._capacity = self._rate if burst is None else _positive(name, "burst", burst)
        self._per_second = self._rate / self._per_s
        if not self._per_second > 0 or not math.isfinite(self._per_second):
            raise ValueError(
                f"{self._who()}: rate / per_s must be a positive finite number of tokens a "
                f"second, got {rate!r} / {per_s!r}"
            )
        # Float rounding may leave a bucket a hair short of an amount that fits exactly (e.g.
        # 5 tokens a minute is not a binary fraction per second): a shortfall this small is
        # none, so a caller who should go now is not refused or sent to sleep for 1e-15 s.
        self._slack = self._capacity * _SLACK
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = self._capacity
        self._last = -math.inf
        # A first reading far behind the bucket (`_JUMP_S`): the bucket's time then, and it.
        self._jump_from = math.nan
        self._jump_to = math.nan
        # The go time of the latest reservation: capacity up to it is promised to waiters.
        self._last_go = -math.inf
        self._waiting = 0
        # Reservations that wait, in go-time order: [go time, amount, given back]. A waiter
        # given back in the middle of the line leaves its turn to come back to the bucket at
        # its go time; given-back ones at the end of the line are dropped at once.
        self._ahead: collections.deque[list[float]] = collections.deque()
        self._by_go: dict[float, list[float]] = {}  # the same, by go time (the latest)

    # -- settings --------------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        """The limiter's name."""
        return self._name

    @property
    def rate(self) -> float:
        """Tokens added every `per_s` seconds."""
        return self._rate

    @property
    def per_s(self) -> float:
        """The refill period, in seconds."""
        return self._per_s

    @property
    def capacity(self) -> float:
        """The most tokens the bucket holds: the largest burst and the largest single amount."""
        return self._capacity

    # -- the sans-I/O core (callers hold the lock) ------------------------------------------

    def _check(self, amount: float, max_wait_s: float | None = None) -> None:
        if max_wait_s is not None and not _number(self._name, "the wait limit", max_wait_s) >= 0:
            raise ValueError(f"{self._who()}: the wait limit must be >= 0, got {max_wait_s!r}")
        self._check_amount("amount", amount)
        if amount > self._capacity:
            raise ValueError(
                f"{self._who()}: amount {amount:g} exceeds the capacity {self._capacity:g}; "
                "it could never be admitted"
            )

    def _check_amount(self, what: str, amount: float) -> None:
        """Refuse an *amount* (named *what* in the message) that is negative or not finite.

        A non-number raises a TypeError naming *what* and its type.
        """
        if not (math.isfinite(_number(self._name, what, amount)) and amount >= 0):
            raise ValueError(f"{self._who()}: {what} must be a finite number >= 0, got {amount!r}")

    def _check_time(self, what: str, value: float | None, *, required: bool = False) -> None:
        """Refuse a clock time given by a caller that is not a finite number.

        None means "read the clock" and passes, unless the time is *required*.

        A NaN or infinite time would stay in the bucket: a NaN ``now`` or go time disabled it
        for good (every wait came back NaN, `try_acquire` always said yes). So it is refused,
        with a ValueError naming *what*, before anything changes. A non-number raises a
        TypeError naming *what* and its type.
        """
        if (value is not None or required) and not math.isfinite(_number(self._name, what, value)):
            raise ValueError(f"{self._who()}: {what} must be a finite number, got {value!r}")

    def _refill(self, now: float) -> float:
        """Bring the bucket to *now* and return the (possibly earlier) time it is at.

        A reading that is not finite counts as the bucket's own time (it would stay in the
        bucket: NaN disabled it, +inf froze it). So does one behind the bucket's by up to
        `_JUMP_S` (a second): a reading taken before another thread's update, whose thread
        was descheduled before it got the lock. Re-anchoring on one of those minted tokens:
        the next up-to-date reading refilled the same time again (6875 admitted in a second
        against a bound of 1010). One further behind is a clock that jumped back, once the
        next reading confirms it (is as far behind, with no reading in between moving the
        bucket on): the bucket re-anchors on the first of the two (see `_rewind`) and
        refills up to the second. Until then it keeps its time, so a clock that swings back
        and forth (every other reading behind) neither re-anchors nor refills twice.

        What a re-anchor can still mint, when the two readings were stale ones after all
        (two threads in a row each descheduled for over a second, or a clock that swings
        back for two readings at a time): the time it moved back by is refilled again, so
        at most ``jump * rate / per_s`` tokens, and never more than `capacity` once an
        up-to-date reading has come (the bucket holds no more). A reading of 1e18 and then
        normal ones cost one reading's worth of refill, not a frozen bucket.
        """
        last = self._last
        if not last < now < math.inf:
            if not (last - now > _JUMP_S and now > -math.inf):  # NaN fails both
                return last
            if self._jump_from != last:  # the first that far behind (NaN: none yet)
                self._jump_from, self._jump_to = last, now
                return last
            self._rewind(min(self._jump_to, now))
            last = self._last
            if not last < now:
                return last
        tokens = self._tokens + (now - last) * self._per_second
        self._tokens = min(self._capacity, tokens)
        self._last = now
        if self._ahead and self._ahead[0][0] <= now:
            self._gone(now)
        return now

    def _rewind(self, now: float) -> None:
        """Re-anchor the bucket's times on *now*, a reading before its own: no time passed.

        Every time the bucket holds (its last reading, the line's go times) moves back by
        the jump, so the waits already promised stay as long as they were, tokens stay as
        they were and nothing refills. Keeping the old times instead froze the bucket
        until the clock caught up with them (after one reading of 1e18, forever), and
        newcomers waited behind go times that far away. Each time is moved as
        ``now + (t - last)``, which stays exact where ``t - jump`` would round away a
        small clock's precision against a huge one. Go times handed out before the jump
        are on the old clock: `cancel` with one finds no reservation (see there).
        """
        last = self._last
        self._last = now
        self._jump_from = self._jump_to = math.nan
        self._last_go = now + (self._last_go - last)  # -inf (nobody ever queued) stays so
        self._by_go.clear()
        for entry in self._ahead:
            entry[0] = now + (entry[0] - last)
            self._by_go[entry[0]] = entry

    def _gone(self, now: float) -> None:
        """Forget reservations whose time has come (a given-back one's turn went unused)."""
        ahead = self._ahead
        while ahead and ahead[0][0] <= now:
            self._forget(ahead.popleft())

    def _forget(self, entry: list[float]) -> None:
        if self._by_go.get(entry[0]) is entry:
            del self._by_go[entry[0]]

    def _drop(self, amount: float, go_at: float, now: float) -> float | None:
        """Give back the waiting reservation (*amount*, *go_at*); None if none is known.

        The last in line comes back whole, with what is left of any given back before it
        that nobody is scheduled behind any more. One with later reservations behind it
        gives back only what they were not scheduled behind (see `_give_back_at`); the rest
        comes back if every reservation behind it is given back before its go time.
        Returns the tokens put back.
        """
        ahead = self._ahead
        entry = self._by_go.get(go_at)
        if entry is None or entry[1] != amount or entry[2]:
            # Reservations of *amount* go at least ``amount / rate`` apart (each waits for
            # its own amount to refill): within half that of *go_at* is at most one of them.
            # One of nothing gives back no tokens, only its place in line: within 1 ms.
            near = 0.5 * amount / self._per_second if amount else 1e-3
            entry = _find(ahead, amount, go_at, near)
            if entry is None:
                return None
        entry[2] = 1.0
        if ahead[-1] is not entry:
            back = self._give_back_at(amount, entry[0], now)
            entry[1] = amount - back  # what comes back if all behind it are given back
            self._last_go = max(self._last_go, ahead[-1][0])  # still someone's turn
            return back
        back = 0.0
        while ahead and ahead[-1][2]:
            gone = ahead.pop()
            self._forget(gone)
            back += gone[1]
        self._tokens += back  # a debt paid back
        if self._tokens > self._capacity:
            back -= self._tokens - self._capacity
            self._tokens = self._capacity
        self._last_go = ahead[-1][0] if ahead else min(self._last_go, now)
        return back

    def _reserve_at(self, amount: float, now: float, max_wait_s: float | None) -> float:
        """Reserve *amount* at *now*; the wait, or ``-retry_after`` when it exceeds the limit."""
        now = self._refill(now)
        left = self._tokens - amount
        wait = 0.0 if left >= -self._slack else -left / self._per_second
        if self._last_go > now + wait:  # first come, first served: never before a waiter
            wait = self._last_go - now
        if max_wait_s is not None and wait > max_wait_s:
            return -wait  # > max_wait_s >= 0, so never -0.0: refusal is unambiguous
        self._tokens = left
        go = now + wait
        self._last_go = max(self._last_go, go)
        if wait > 0:
            entry = [go, amount, 0.0]
            self._ahead.append(entry)
            self._by_go[go] = entry
        return wait

    def _give_back_at(self, amount: float, after: float, now: float) -> float:
        """Return capacity unused from *after* on; the tokens actually put back."""
        now = self._refill(now)
        after = max(after, now)
        # Later reservations' go times were computed with this capacity taken, and their
        # callers sleep until then: the capacity up to the last go time stays promised, or
        # newcomers would be admitted in the same window as them (past the bucket's bound).
        promised = (self._last_go - after) * self._per_second
        if promised <= self._slack:
            promised = 0.0
        back = amount - promised
        if back <= 0:
            return 0.0
        if self._last_go > now and promised == 0.0:
            # The latest reservation was given back: the queue ends that much earlier.
            self._last_go = max(now, self._last_go - back / self._per_second)
        tokens = self._tokens + back
        if tokens > self._capacity:
            back = self._capacity - self._tokens
            tokens = self._capacity
        self._tokens = tokens
        return back

    def _who(self) -> str:
        return _who(self._name)

    # -- the sans-I/O API -------------------------------------------------------------------

    def reserve(
        self, amount: float = 1.0, *, now: float | None = None, max_wait_s: float | None = None
    ) -> float:
        """Reserve *amount* now and return the seconds to wait before going (0.0: go now).

        The capacity is taken at once, so later callers queue behind this one. The caller
        must then wait the returned time itself, or give the reservation back with `cancel`.
        Thread-safe; never sleeps.

        Args:
            amount: Tokens to take (0 <= amount <= `capacity`).
            now: The clock reading to use; None reads the limiter's clock.
            max_wait_s: Refuse, reserving nothing, when the wait would be longer.

        Raises:
            ValueError: When *amount* is negative, not finite or above `capacity`, the wait
                limit is negative, or *now* is not finite.
            RateLimitExceededError: When the wait would exceed *max_wait_s*.
        """
        self._check(amount, max_wait_s)
        self._check_time("now", now)
        with self._lock:
            wait = self._reserve_at(amount, self._clock() if now is None else now, max_wait_s)
        if wait < 0:
            raise RateLimitExceededError(self._name, -wait, amount)
        return wait

    def cancel(self, amount: float, go_at: float, *, now: float | None = None) -> float:
        """Give back a reservation of *amount* that was to go at clock time *go_at*.

        *go_at* is the reservation's clock reading plus the wait `reserve` returned (a
        reading taken just before or after `reserve` serves as well): the waiting
        reservation of *amount* going nearest to it is the one, if it is less than half
        ``amount / rate * per_s`` away. Reservations of one amount go at least that far
        apart (each waits for its own amount to refill), so at most one is that near: a
        cancel repeated, or given a go time made up near another waiter's, gives back
        nothing rather than that waiter's reservation (who would still go: tokens minted).
        Two reservations of one amount can share a go time (a `refund` while others wait
        lets the next one in at the last one's time); those the bucket cannot tell apart. A
        reservation whose time has come is spent; otherwise its capacity returns to the
        bucket, except the part later reservations were already scheduled behind (their
        callers sleep to fixed times, and letting newcomers use it would put more than the
        bucket allows in one window). That part comes back too once every reservation
        behind it is given back: so cancelling the last reservation in line gives it all
        back, with what is left of those given back before it, and a whole line given up
        before the first of its turns comes, in any order, leaves the bucket as if it had
        never formed (a given-up waiter whose time passes before the rest of the line is
        given up is spent, as a turn nobody took).

        A go time and amount that match no waiting reservation (one whose turn came, one
        given back already, one never granted, or one granted before the clock jumped back,
        see `_rewind`) give back nothing: the bucket cannot tell them from a caller minting
        tokens it never reserved, so the capacity stays spent, which only errs on the safe
        side. Thread-safe.

        Returns:
            The tokens put back (0.0 when no waiting reservation matches).

        Raises:
            ValueError: When *amount* is negative or not finite, or *go_at* or *now* is not
                finite (nothing is given back).
            TypeError: When *amount*, *go_at* or *now* is not a number.
        """
        self._check_amount("amount", amount)
        self._check_time("go_at", go_at, required=True)
        self._check_time("now", now)
        with self._lock:
            now_ = self._clock() if now is None else now
            if go_at <= now_:
                return 0.0
            back = self._drop(amount, go_at, self._refill(now_))
            return 0.0 if back is None else back

    def refund(self, amount: float, *, now: float | None = None) -> float:
        """Give back *amount* an admitted call did not use (its estimate was too high).

        The bucket never rises above `capacity`, and capacity already promised to callers
        waiting their turn is not given back (see `cancel`). Thread-safe.

        Returns:
            The tokens put back.

        Raises:
            ValueError: When *amount* is negative or not finite, or *now* is not finite.
        """
        self._check_amount("refund", amount)
        self._check_time("now", now)
        with self._lock:
            now_ = self._clock() if now is None else now
            return self._give_back_at(amount, now_, now_)

    def consume(self, amount: float, *, now: float | None = None) -> None:
        """Take *amount* more without waiting: usage beyond an admitted call's estimate.

        The bucket may go negative (debt), so callers after it wait until it is paid back.
        Any amount is accepted, even above `capacity`, short of a debt whose wait no float
        can hold. Thread-safe.

        Raises:
            ValueError: When *amount* is negative or not finite, *now* is not finite, or the
                debt would take longer than a float can count to pay back (nothing is taken).
        """
        self._check_amount("consume", amount)
        self._check_time("now", now)
        with self._lock:
            now_ = self._refill(self._clock() if now is None else now)
            self._check_debt(amount, self._tokens, now_)
            self._tokens -= amount

    def _check_debt(self, amount: float, tokens: float, now: float = 0.0) -> None:
        """Refuse taking *amount* from *tokens* when the wait to pay it back is not finite.

        consume(1e308) made the next wait +inf, and the line's go time with it: the bucket
        admitted nobody ever again. The same when the wait is finite but the time it ends,
        from the clock reading *now*, is not (a reading near the float's largest).
        """
        wait = (amount - tokens) / self._per_second
        # In microseconds, as the shared bucket counts: one check serves both.
        if not (math.isfinite(wait * 1e6) and now + wait < math.inf):
            raise ValueError(
                f"{self._who()}: consume {amount:g} would put the bucket in a debt that takes "
                "longer than a float can count to pay back"
            )

    # -- hooks the Redis limiter overrides --------------------------------------------------

    def _take(self, amount: float, max_wait_s: float | None) -> tuple[float, float, bool]:
        """Reserve on the clock: (wait or -retry_after, go time, shared)."""
        with self._lock:
            wait = self._reserve_at(amount, self._clock(), max_wait_s)
            # From the time the bucket is at, not the reading: one behind another thread's
            # (or NaN) counts as that one, and the go time is the one the line holds.
            go_at = self._last + wait
        return wait, go_at, False

    async def _atake(self, amount: float, max_wait_s: float | None) -> tuple[float, float, bool]:
        return self._take(amount, max_wait_s)

    def _try_take(self, amount: float) -> bool:
        # `_reserve_at(amount, clock(), 0.0)` inlined: try_acquire is the hot path.
        with self._lock:
            now = self._clock()
            last = self._last
            if last < now < math.inf:  # else not finite, or behind: see `_refill`
                tokens = self._tokens + (now - last) * self._per_second
                if tokens > self._capacity:  # noqa: PLR1730  # cheaper than min() here
                    tokens = self._capacity
                self._tokens = tokens
                self._last = now
                if self._ahead and self._ahead[0][0] <= now:
                    self._gone(now)
            else:
                now = self._refill(now)
            left = self._tokens - amount
            if left < -self._slack or self._last_go > now:  # short, or someone waits
                return False
            self._tokens = left
            if now > self._last_go:  # noqa: PLR1730  # cheaper than max() here
                self._last_go = now
            return True

    def _count_waiting(self, delta: int) -> None:
        with self._lock:
            self._waiting += delta

    def _untake(self, amount: float, go_at: float, shared: bool) -> None:  # noqa: FBT001
        del shared  # one state here; the Redis limiter has two
        if math.isfinite(go_at):  # not when the clock never read a finite time: none to find
            self.cancel(amount, go_at)

    # -- drivers ----------------------------------------------------------------------------

    def try_acquire(self, amount: float = 1.0) -> bool:
        """Take *amount* if it can go now, without waiting or queuing; thread-safe.

        Raises:
            ValueError: When *amount* is negative, not finite or above `capacity`.
        """
        # NaN fails the range too; a bool or a str never reaches the comparison.
        if type(amount) not in _PLAIN or not 0 <= amount <= self._capacity:
            self._check(amount)  # raises, unless it is another kind of number in range
        return self._try_take(amount)

    def acquire(
        self,
        amount: float = 1.0,
        *,
        timeout_s: float | None = None,
        sleep: Callable[[float], object] = time.sleep,
    ) -> float:
        """Take *amount*, sleeping the thread until its turn; thread-safe, first come first served.

        If the sleep is interrupted (an exception, ``KeyboardInterrupt``), the reservation is
        given back as by `cancel`.

        Args:
            amount: Tokens to take (0 <= amount <= `capacity`).
            timeout_s: The longest wait accepted; None waits as long as needed.
            sleep: Sleeps for the given seconds; tests pass a fake.

        Returns:
            The seconds waited.

        Raises:
            ValueError: When *amount* is negative, not finite or above `capacity`, or the
                wait limit is negative.
            RateLimitExceededError: At once, consuming nothing, when the wait would exceed
                *timeout_s*.
        """
        self._check(amount, timeout_s)
        wait, go_at, shared = self._take(amount, timeout_s)
        if wait < 0:
            raise RateLimitExceededError(self._name, -wait, amount)
        if wait == 0:
            return 0.0
        self._count_waiting(1)
        try:
            sleep(wait)
        except BaseException:
            self._untake(amount, go_at, shared)
            raise
        finally:
            self._count_waiting(-1)
        return wait

    async def aacquire(
        self,
        amount: float = 1.0,
        *,
        timeout_s: float | None = None,
        sleep: Callable[[float], Awaitable[object]] = _asyncio_sleep,
    ) -> float:
        """Take *amount*, awaiting its turn without blocking the loop; first come first served.

        A cancelled waiter gives its reservation back as by `cancel`, so callers arriving
        after it are not delayed by it.

        Args:
            amount: Tokens to take (0 <= amount <= `capacity`).
            timeout_s: The longest wait accepted; None waits as long as needed.
            sleep: Awaits the given seconds; tests pass a fake.

        Returns:
            The seconds waited.

        Raises:
            ValueError: When *amount* is negative, not finite or above `capacity`, or the
                wait limit is negative.
            RateLimitExceededError: At once, consuming nothing, when the wait would exceed
                *timeout_s*.
        """
        self._check(amount, timeout_s)
        wait, go_at, shared = await self._atake(amount, timeout_s)
        if wait < 0:
            raise RateLimitExceededError(self._name, -wait, amount)
        if wait == 0:
            return 0.0
        self._count_waiting(1)
        try:
            await sleep(wait)
        except BaseException:
            self._untake(amount, go_at, shared)
            raise
        finally:
            self._count_waiting(-1)
        return wait

    # -- inspection -------------------------------------------------------------------------

    def status(self) -> RateLimiterStatus:
        """A snapshot: settings, tokens available now, waiters and the queue's length in time."""
        with self._lock:
            now = self._refill(self._clock())
            tokens, last_go = self._tokens, self._last_go
        return RateLimiterStatus(
            name=self._name,
            rate=self._rate,
            per_s=self._per_s,
            capacity=self._capacity,
            available=tokens,
            waiting=self._waiting,
            queued_s=max(0.0, last_go - now),
        )

    def __repr__(self) -> str:
        """Show the name and settings."""
        return (
            f"RateLimiter(name={self._name!r}, rate={self._rate:g}, per_s={self._per_s:g}, "
            f"capacity={self._capacity:g})"
        )
