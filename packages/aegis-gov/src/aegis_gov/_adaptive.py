"""Adaptive limits per endpoint: an AIMD limit on calls in flight, a rate learned from 429s.

When nobody declared what an endpoint can take, learn it, as Netflix's concurrency-limits
``AIMD`` limit does: the limit grows by one for every window of successful calls that used
at least half of it (additive increase) and is multiplied by 0.9 on each sign of overload —
a 429, a 529 or 503, a timeout (multiplicative decrease) — never below one nor above the
pool's ``max_concurrent``; once per burst, as TCP cuts once per round trip: an overload of a
call started before the last cut answers the same question and cuts nothing more. A
provider that *refuses* a call as one too many in flight (a 503 or 529 while the
endpoint's other calls are in flight) says more: it held at most those
others, so the limit drops to that count at once — a burst of refusals lands it on the
provider's cap instead of cutting once per refusal — unless a call succeeded lately with as
many in flight: then no cap refused it (busy hosted models refuse at random), and it is an
overload like any other; and a burst refused whole (its last call back alone, nothing answered)
held nothing, so its readings mark no cap: the limit climbs back as after an outage (below).
Growth is ten times slower near the
level the last overload came at (a plateau, as TCP CUBIC's window flattens near where it
last lost), so a provider capped at C calls is asked for C + 1 about once per 10 C calls;
not after a 429 the learned rate (below) took as a rate limit, which caps no calls in flight.
After an outage (a half-open circuit's probe succeeded) the limit restarts at half of
where the run of overloads began and climbs back by one per success, as TCP's slow start
climbs to its threshold: a recovered endpoint is ramped up — not flooded — in a few round
trips, not a few dozen. Sans-I/O and thread-safe: callers ask
:meth:`AdaptiveLimit.try_acquire` and report each call's outcome with
:meth:`AdaptiveLimit.release`; waiting is the caller's business.

A concurrency limit cannot bound a *rate*: against a provider that answers in milliseconds,
one call in flight is still hundreds a second. So a 429 also teaches :class:`LearnedRate` a
request rate, which then paces the endpoint's requests (evenly spaced): on a 429 the rate
drops to 90% of what the provider was seen to answer (or of the paced rate, if lower), the
next turn one new turn after the last (not at once: the provider just said it got too many),
then climbs back along a cubic curve: to that ceiling, flat near it, then probing ever faster
above it, until the next 429. This is how the AWS SDKs' "adaptive" retry mode paces (CUBIC on
the rate, from a ratio of 0.7 of the measured *send* rate, in absolute units); measuring the
rate the provider *answered* lands the ceiling on its limit, so the ratio can be gentler, and
the curve is scaled to the ceiling. Only a 429 that reflects the current rate counts: 429s to
requests sent before the last cut say nothing new (as TCP reacts once per window). A
Retry-After also holds the pacer, so paced requests do not run into it.

What the provider answered is counted over the last second; but while requests wait for their
turns (the pace, not the application, holds the sender back) and the second holds fewer than
ten answers, over the last four answers since they began waiting (three gaps, over the time
they took): a one-second window holds one answer or none at a slow pace. Never from before
they began waiting, when answers were as few as the application made them (answers kept
across an idle minute once read as a provider answering a few a minute). A ceiling so
measured, or from ten answers in the second, is trusted: the curve regains it in five turns
at it or a second, whichever is longer (a second is a fraction of a turn to a slow provider),
twice as many turns each time the next 429 measures about the same ceiling (up to 80: a limit
that holds still is probed rarely), then probes above it gently. One from fewer answers (a
run just starting) or none (nothing answered since the pace was cut) may be far too low: it
is regained in a second and probed above fast.

Answers come back a whole answer after their requests left: from a model that takes seconds
to answer and refuses at once, they tell what a pace cut earlier sent then. So a cut also
counts what the provider *took*: requests that left longer ago than its 429s take to come
back (twice the slowest of the last few) and drew none, answered yet or not, over the window
or the last ten while requests wait for their turns. Both are lower bounds on what the
provider allows; the larger is the ceiling.

The climb is capped at twice the rate the sender uses, so a pace the application does not use
does not grow without bound (TCP CUBIC's check for an application-limited sender): what was
answered over the last second while turns go unused. While requests wait for their turns and
the provider answers them, every turn is used, but the window can miss the one in flight: one
answer more is counted, up to the pace itself. Without that a pace cut below about a turn a
second read an empty window at every turn and stayed at its ceiling for good (0.1-0.6 requests
a second against a provider answering everything); with it that pace doubles turn by turn. A
provider answering nothing lets nothing grow.

:class:`Waiters` and :class:`Alarm` let tasks that wait for an endpoint (over its limit, or
for a half-open circuit's probe) be woken when it can take more, instead of sleeping out a
backoff: one per call that ends, first come first served, so a recovering endpoint is ramped
up by its limit rather than flooded.

Over 400 lines on purpose: the limit, the learned rate and the wake-up queue are one
endpoint's capacity model, tuned against each other; apart, each would hide why the others
are shaped as they are.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    import asyncio

__all__ = ["AdaptiveLimit", "AdaptiveStatus", "Alarm", "LearnedRate", "Waiters"]


@attrs.frozen
class AdaptiveStatus:
    """A snapshot of one endpoint's adaptive limit."""

    limit: int
    """Calls allowed in flight now."""
    in_flight: int
    """Calls in flight now."""
    overloads: int
    """Signs of overload seen (429s, 529s, 503s, timeouts)."""
    max_limit: int
    """The ceiling: the pool's ``max_concurrent``."""
    rate_per_s: float | None = None
    """The request rate learned from 429s (requests a second); None until a 429 comes with
    answers (or requests the provider took) to learn it from."""
    paced: int = 0
    """Requests waiting now for their turn in the endpoint's pace (declared or learned)."""
    held_s: float = 0.0
    """Seconds a provider's Retry-After still holds the endpoint (0.0: not held)."""

    def to_dict(self) -> dict[str, int | float | None]:
        """The snapshot as a JSON-ready dict."""
        return attrs.asdict(self)


class AdaptiveLimit:
    """An AIMD limit on one endpoint's calls in flight.

    Args:
        max_limit: The ceiling (and the starting limit): the pool's ``max_concurrent``.
        min_limit: The floor.
        backoff_ratio: What the limit is multiplied by on overload (Netflix's default, 0.9).
        plateau: How many times slower the limit grows near the level it was last cut at.
    """

    def __init__(
        self,
        max_limit: int,
        *,
        min_limit: int = 1,
        backoff_ratio: float = 0.9,
        plateau: float = 10.0,
    ) -> None:
        """Start at *max_limit*: nothing is known to be wrong yet."""
        if not 1 <= min_limit <= max_limit:
            raise ValueError(f"need 1 <= min_limit <= max_limit, got {min_limit}, {max_limit}")
        if not 0.0 < backoff_ratio < 1.0:
            raise ValueError(f"backoff_ratio must be in (0, 1), got {backoff_ratio!r}")
        if not plateau >= 1.0:
            raise ValueError(f"plateau must be >= 1, got {plateau!r}")
        self.max_limit = max_limit
        self.min_limit = min_limit
        self.backoff_ratio = backoff_ratio
        self.plateau = plateau
        self._limit = float(max_limit)
        self._in_flight = 0
        self._overloads = 0
        # After an outage, growth is one per success up to here (TCP's ssthresh); 0: none.
        self._threshold = 0.0
        # The whole limit the last run of overloads came at: growth is slow near it.
        self._ceiling = 0
        self._streak = False  # overloads since the last success
        self._refusals = 0  # refusals since the last success
        self._answered = 0  # calls that succeeded, ever
        self._throttles = 0  # 429s since the last success
        self._timeouts = 0  # calls timed out since the last success
        self._timeout_wave = 0  # calls in flight at the first of those
        self._outages = 0  # times the endpoint's circuit opened
        self._before = float(max_limit)  # the limit when the current run of overloads began
        self._cuts = 0  # times the limit was cut: a call started before the last cut is stale
        # The most calls in flight when one succeeded, this stretch of successes and the last
        # (a stretch is twice max_limit successes): what the provider was seen to hold.
        self._held_now = 0
        self._held_last = 0
        self._stretch = 0
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        """Calls allowed in flight now."""
        return _whole(self._limit)

    @property
    def overloads(self) -> int:
        """Signs of overload seen so far: 0 for a limit never cut."""
        return self._overloads

    @property
    def ever_cut(self) -> bool:
        """Whether the limit was ever cut (an overload, or an outage of the endpoint)."""
        return self._overloads > 0 or self._outages > 0

    @property
    def in_flight(self) -> int:
        """Calls in flight now."""
        return self._in_flight

    @property
    def cuts(self) -> int:
        """Times the limit was cut so far; pass it back to :meth:`release` as *since*."""
        return self._cuts

    @property
    def outages(self) -> int:
        """Times the endpoint's circuit opened (see :meth:`outage`)."""
        return self._outages

    def outage(self) -> None:
        """The endpoint's circuit opened: remember the limit it had, to climb back to it."""
        with self._lock:
            self._outages += 1
            if not self._streak:  # not in a run of overloads, which set its own level
                self._before = self._limit

    @property
    def answered(self) -> int:
        """Calls of the endpoint that succeeded so far."""
        return self._answered

    def throttled(self) -> int:
        """Count a 429; return how many came since the endpoint last answered a call."""
        with self._lock:
            self._throttles += 1
            return self._throttles

    @property
    def refusals(self) -> int:
        """Refusals ("one call too many") since the endpoint last answered a call."""
        return self._refusals

    @property
    def free(self) -> int:
        """How many more calls the limit allows in flight now."""
        with self._lock:
            return max(_whole(self._limit) - self._in_flight, 0)

    def try_acquire(self) -> bool:
        """Count one more call in flight if the limit allows it."""
        with self._lock:
            if self._in_flight >= int(self._limit + 1e-9):  # _whole, inlined (a call per call)
                return False
            self._in_flight += 1
            return True

    def release(
        self,
        *,
        overloaded: bool | None,
        refused: bool = False,
        since: int | None = None,
        timed_out: bool = False,
        paced: bool = False,
    ) -> None:
        """One call ended: ``True`` overloaded, ``False`` succeeded, ``None`` tells nothing.

        *since*: :attr:`cuts` when the call started. An overload of a call that started
        before the limit's last cut is counted but cuts nothing more: it says what that cut
        already answered, as TCP cuts its window once per round trip, not once per loss. A
        burst of 429s to calls sent together so costs one cut (0.9), not one per 429 — which
        took a limit of 32 down to 3 against a provider whose answers take seconds, and
        starved a pace that needed ten in flight. *None*: every overload cuts.

        *refused*: the provider turned the (overloaded) call away as one too many in flight.
        It then held at most as many as the endpoint's other calls in flight now, so the
        limit drops to that (rather than by the usual tenth) and grows slowly near it; a
        refusal that finds the limit already that low says nothing new. A burst of
        refusals thus lands the limit on the provider's cap, however many come back. Unless
        a call succeeded lately with as many in flight (this stretch of twice ``max_limit``
        successes or the last): the provider held that many, so no cap refused this one —
        it is an overload like any other (a provider turning calls away at random, as
        busy hosted models do, ratcheted the limit down by one per refusal: 5% of 503s
        took a limit of 16 to 2).

        *timed_out*: the (overloaded) call got no answer in time. Timeouts in a row with no
        success between, half the calls in flight at the first of them (at least two), are
        an endpoint that answers nothing (a slow one answers most calls between its
        timeouts): the limit drops to
        ``min_limit`` (its calls would hold run slots for a whole timeout each, slots that
        tasks of other endpoints could use) and climbs back by one a success once it
        answers, to where it was.

        *paced*: the overload was a 429 that a learned rate took as a rate limit. The limit is
        cut as for any overload but sets no plateau: the rate, not the calls in flight, is
        what the provider limits, and a model that answers in seconds needs rate x latency
        calls in flight. With a plateau at each 429 the limit only fell (16 to 6 against a
        2 a second provider answering in 5 s, which then ran at 55% of its rate).
        """
        with self._lock:
            in_flight = self._in_flight
            self._in_flight = in_flight - 1 if in_flight > 0 else 0  # (no max(): a call each)
            if overloaded is False:  # the common case first
                self._succeeded(in_flight, since is None or since >= self._cuts)
            elif overloaded:
                stale = since is not None and since < self._cuts
                self._overload(
                    in_flight, refused=refused, stale=stale, timed_out=timed_out, paced=paced
                )
                if timed_out:
                    self._timeouts += 1

    def _overload(
        self, in_flight: int, *, refused: bool, stale: bool, timed_out: bool, paced: bool
    ) -> None:
        """Settle an overloaded call (see :meth:`release`); *stale*: begun before the last cut."""
        if timed_out and self._timeouts + 1 >= self._timeouts_down(in_flight):
            self._unresponsive()
        elif in_flight == 1 and self._refusals and not self._held(1):
            self._refuted(refused=refused)
        elif refused and not self._held(in_flight):
            self._refused(in_flight - 1)
        elif refused:  # it held that many lately: no cap, a passing overload
            self._refusals += 1
            if stale:
                self._overloads += 1
            else:
                self._overloaded()
                if in_flight < max(self._held_now, self._held_last):
                    self._ceiling = 0  # it held more: no cap near here, grow back as usual
        elif stale:
            self._overloads += 1  # stale: the last cut already answered it
        else:
            self._overloaded(plateau=not paced)

    def _timeouts_down(self, in_flight: int) -> int:
        """Timeouts in a row, with no success between, that make an endpoint unresponsive."""
        if self._timeouts == 0:
            self._timeout_wave = in_flight
        return max(2, (self._timeout_wave + 1) // 2)

    def _unresponsive(self) -> None:
        self._overloads += 1
        if self._limit <= self.min_limit:
            return
        if not self._streak:
            self._before = self._limit
        self._threshold = max(self._threshold, self._before)  # back by one a success
        self._ceiling = 0
        self._limit = float(self.min_limit)
        self._streak = True
        self._cuts += 1

    def _overloaded(self, *, plateau: bool = True) -> None:
        self._overloads += 1
        whole = _whole(self._limit)
        if self._streak:  # a burst of overloads: the last cut's level is the one to remember
            if plateau:
                self._ceiling = min(self._ceiling, whole)
        else:
            self._before = self._limit
            if plateau:
                self._ceiling = whole
        self._limit = max(float(self.min_limit), self._limit * self.backoff_ratio)
        self._threshold = 0.0  # overload while climbing back: stop climbing fast
        self._streak = True
        self._cuts += 1

    def _refused(self, others: int) -> None:
        self._overloads += 1
        self._refusals += 1
        if others >= _whole(self._limit):
            return  # the limit is already down to what the provider held: nothing new
        if not self._streak:
            self._before = self._limit
        self._ceiling = others + 1
        self._limit = max(float(self.min_limit), float(others))
        self._threshold = 0.0
        self._streak = True
        self._cuts += 1

    def _refuted(self, *, refused: bool) -> None:
        """The last call of a burst came back overloaded alone, its refused fellows before it.

        Each of those refusals lowered the limit to the calls still in flight (see
        :meth:`_refused`), down to this one, and set a plateau there; but none of them was
        held, since nothing answered: what turned them away was no cap on calls in flight but
        a provider down or restarting (a 0.3 s restart at the start of a run left a limit of
        32 at 1 for seconds and tripled the run). So the low limit stays — the next call goes
        alone, as a probe would — but it marks no cap: once calls are answered the limit
        climbs back by one per success (a doubling per round trip) to where the refusals
        began, as after an outage.
        """
        self._overloads += 1
        self._refusals += refused
        if not self._streak:
            self._before = self._limit
        self._threshold = max(self._threshold, self._before)
        self._ceiling = 0
        self._streak = True

    def _held(self, in_flight: int) -> bool:
        """Whether a call succeeded lately with at least *in_flight* calls in flight.

        Lately: this stretch of twice ``max_limit`` successes, or the last. A call refused
        with *in_flight* counted (itself included) found the others held; a provider that
        held as many as *in_flight* lately has no cap there, so the refusal is a passing
        overload (see :meth:`release`). A success counts no more in flight than the limit:
        calls refused at once in a burst are still counted until their refusals come back.
        """
        return in_flight <= max(self._held_now, self._held_last)

    def _succeeded(self, in_flight: int, fresh: bool) -> None:  # noqa: FBT001  # hot path
        self._answered += 1
        if fresh:  # (one started before the last cut may count a burst's refusals in flight)
            self._held_now = max(self._held_now, min(in_flight, int(self._limit + 1e-9)))
        self._stretch += 1
        if self._stretch >= 2 * self.max_limit:
            self._held_last, self._held_now, self._stretch = self._held_now, 0, 0
        self._throttles = 0
        self._timeouts = 0
        self._streak = False
        self._refusals = 0
        limit = self._limit
        if limit < self._threshold:  # climbing back to a known-good limit after an outage
            self._limit = min(self._threshold, limit + 1.0)
            return
        if in_flight * 2 < limit:  # idle success proves nothing
            return
        step = 1.0 / limit
        ceiling = self._ceiling
        if ceiling and ceiling - 1 <= _whole(limit) <= ceiling:
            step /= self.plateau  # near where the last overload came: probe it gently
        self._limit = min(float(self.max_limit), limit + step)
        if ceiling and _whole(self._limit) > ceiling:
            self._ceiling = 0  # past it with no overload: what capped it has gone

    def recovered(self) -> None:
        """The endpoint was down and a probe just succeeded: climb fast to where it was.

        What cut the limit was an outage, not overload, so it restarts from half the limit
        the run of failures began at and grows by one per success (a doubling per round
        trip) back up to it: the probe, then half, then all of it.
        """
        with self._lock:
            self._threshold = max(self._threshold, self._before)
            self._ceiling = 0
            # Half, as TCP's threshold is half the window it lost: a probe that succeeded
            # says one call goes, and a provider still too busy for half refuses the excess
            # at no cost (the refusals set the limit). A quarter cost two round trips more
            # than no ramp at all; half costs one.
            # An outage of failures that are no overload (500s) did not cut the limit at
            # all: it drops to half, so the probe is not followed by the whole former load.
            half = max(float(_whole(self._before / 2.0)), 1.0)
            self._limit = half if self._limit >= self._before else max(self._limit, half)

    def status(self) -> AdaptiveStatus:
        """A snapshot of the limit."""
        with self._lock:
            return AdaptiveStatus(
                limit=_whole(self._limit),
                in_flight=self._in_flight,
                overloads=self._overloads,
                max_limit=self.max_limit,
            )


def _whole(limit: float) -> int:
    # Sums of 1/limit land a hair under the next integer; do not lose a slot to that.
    return int(limit + 1e-9)


class LearnedRate:
    """A request rate learned from 429s, pacing one endpoint (see the module docstring).

    Unpaced until the first 429. Sans-I/O over *clock*; thread-safe.

    Args:
        clock: Monotonic seconds.
        window_s: How far back the provider's answers are counted.
        backoff_ratio: The share of the ceiling the rate drops to on a 429.
        regain_s: Seconds after a cut until the rate is back at the ceiling (at least: a
            ceiling measured from enough answers takes five turns at it or more).
        horizon_s: How far ahead turns are taken.
        min_rate: The slowest pace, in requests a second.

    Raises:
        ValueError: *backoff_ratio* is not in (0, 1), or *min_rate* is not positive.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        window_s: float = 1.0,
        backoff_ratio: float = 0.9,
        regain_s: float = 1.0,
        horizon_s: float = 0.25,
        min_rate: float = 0.05,
    ) -> None:
        """Start unpaced: nothing is known to be wrong yet."""
        if not 0.0 < backoff_ratio < 1.0:
            raise ValueError(f"backoff_ratio must be in (0, 1), got {backoff_ratio!r}")
        if not min_rate > 0.0:
            raise ValueError(f"min_rate must be positive, got {min_rate!r}")
        self._clock = clock
        self.window_s = window_s
        self.backoff_ratio = backoff_ratio
        self.regain_s = regain_s
        self.horizon_s = horizon_s
        self.min_rate = min_rate
        self._lock = threading.Lock()
        self._rate: float | None = None
        self._ceiling = 0.0
        self._sure = True  # whether the ceiling came from enough answers to trust
        self._cut_at = 0.0
        self._epoch = 0
        self._next = _NEVER
        self._turn = _NEVER  # when the last turn taken goes
        self._hold_until = _NEVER
        self._first: float | None = None
        self._answers: collections.deque[float] = collections.deque()
        # The last answers whatever their age, for a pace too slow for the window to hold
        # enough of them (read only at a cut, while the pace holds the sender back).
        self._recent: collections.deque[float] = collections.deque(maxlen=_SEEN_TURNS + 1)
        self._regain = regain_s  # how long after the last cut the curve is back at the ceiling
        self._measured = 0.0  # the last ceiling measured from enough answers
        self._steady = 0  # how many cuts in a row measured about that ceiling
        self._given = 0.0  # the pace the last turn was taken at
        # Since when requests wait for their turns (the pace holds the sender back): None
        # while the sender leaves turns unused, or before the first 429.
        self._pressed_since: float | None = None
        # When requests left, and when those answered with a 429 had left: what the provider
        # admitted is known as soon as a 429 would have come back, not when the (slow) answer
        # does. The 429s' round trips, to know when that is.
        self._sent: collections.deque[float] = collections.deque(maxlen=_SENDS_KEPT)
        self._refused: collections.deque[float] = collections.deque(maxlen=_SENDS_KEPT)
        self._lags: collections.deque[float] = collections.deque(maxlen=_LAGS_KEPT)

    @property
    def epoch(self) -> int:
        """How many times the pace was cut or held; a reservation of an older epoch is stale."""
        return self._epoch

    def rate(self) -> float | None:
        """Requests a second now, or None while unpaced."""
        with self._lock:
            return self._now_rate(self._clock())

    def reserve(self) -> tuple[float, int | None]:
        """Take the next turn: (seconds to wait before sending, the epoch it was taken in).

        Turns are taken at most ``horizon_s`` (or one turn) ahead, so a rate that grows
        applies at once:
        past that, no turn is taken (the epoch is None) and the caller looks again after the
        wait it is given.
        """
        epoch = self._epoch  # read first: a cut meanwhile makes this turn stale, not unpaced
        if self._rate is None and self._hold_until == _NEVER:
            return 0.0, epoch  # unpaced and never held (no 429 yet): nothing to wait or track
        with self._lock:
            now = self._clock()
            start = max(now, self._hold_until)
            if start - now > self.horizon_s:
                return start - now, None  # held (a Retry-After): look again when it ends
            if self._rate is None:
                return start - now, self._epoch
            turn_at = self._next
            if turn_at > now:  # this request waits for its turn: the pace holds the sender
                if self._pressed_since is None:
                    self._pressed_since = now
            elif now - turn_at > 1.0 / self._given:  # a whole turn went unused: the sender
                self._pressed_since = None  # holds its requests back, not the pace
            rate = self._pace(now)
            start = max(start, turn_at)
            ahead = max(self.horizon_s, 1.0 / rate)  # at least the next turn
            if start - now > ahead:
                return ahead, None
            self._next = start + 1.0 / rate
            self._turn = start
            self._given = rate
            return start - now, self._epoch

    def sent(self) -> float:
        """A request leaves now (its turn, if paced, has come): count it; return the time."""
        now = self._clock()
        # One append, no lock on every request's way out (a lock here, taken by every worker
        # thread, cost 15% of a 10,000-task run): readers copy the deque first (see _sends).
        self._sent.append(now)
        return now

    def failed(self, sent_at: float) -> None:
        """The request that left at *sent_at* failed (not a 429): the provider did not take it.

        A 429 says the same through :meth:`throttled`. Without this, an endpoint that
        answered nothing but 503s had all those requests counted as taken, and the first 429
        after the outage set a rate learned from failures.
        """
        with self._lock:
            self._refused.append(sent_at)

    def answered(self) -> None:
        """The provider answered a request (not a 429): count it, let the rate grow."""
        with self._lock:
            now = self._clock()
            if self._first is None:
                self._first = now
            self._recent.append(now)
            answers = self._answers
            answers.append(now)
            while answers and answers[0] <= now - self.window_s:  # _prune, inlined
                answers.popleft()

    def throttled(
        self, epoch: int, retry_after_s: float | None, *, sent_at: float | None = None
    ) -> bool:
        """A 429 to a request sent in *epoch*; return whether it cut the rate.

        A Retry-After holds every later turn until it has passed, whatever the epoch.
        *sent_at*: when the request left (:meth:`sent`'s answer), to count what the provider
        admitted of the requests sent since, before their answers come back.
        """
        with self._lock:
            now = self._clock()
            if self._first is None:
                self._first = now
            if sent_at is not None:
                self._refused.append(sent_at)
                self._lags.append(max(now - sent_at, 0.0))
            if retry_after_s:
                self._hold_until = max(self._hold_until, now + retry_after_s)
                self._next = max(self._next, self._hold_until)
            if epoch != self._epoch:
                return False  # sent before the last cut: it says nothing about the new pace
            seen, sure = self._seen_at_cut(now)
            admitted, admitted_sure = self._admitted_at_cut(now)
            if admitted > seen:  # answers slow to come back: what was admitted says more
                seen, sure = admitted, admitted_sure
            rate = self._now_rate(now)
            if seen <= 0.0:
                if rate is None:
                    return False  # nothing answered yet to learn a rate from: the hold will do
                ceiling = rate * self.backoff_ratio  # nothing answered lately: back off further
            else:
                ceiling = seen if rate is None else min(rate, seen)
            self._ceiling = ceiling = max(ceiling, self.min_rate)
            # A ceiling from a handful of answers (a run just starting), or from none, may be
            # far too low: regain it in a second and probe above it fast. One measured from
            # enough answers is regained over turns at it (a second is a fraction of a turn
            # to a slow provider), more of them each time the cut lands about where the last
            # did (the provider's limit holds still): fewer 429s spent on a known limit.
            turns = 0.0
            if sure:
                last = self._measured
                steady = self._steady + 1 if last and _same(ceiling, last) else 0
                self._steady = min(steady, _STEADY_MOST)
                self._measured = ceiling
                turns = _REGAIN_TURNS * 2**self._steady
            self._sure = sure
            self._regain = max(self.regain_s, turns / ceiling)
            # The last turn that went. One still ahead is given up (its taker reserves again),
            # but at a pace slower than a turn per horizon one due within a turn counts as
            # gone: a caller may send it before it looks again, and a 429 to the next would
            # cut again for nothing. (None while unpaced.)
            turn = 1.0 / self._given if self._given else 0.0
            last_turn = min(self._turn, now + turn if turn >= self.horizon_s else now)
            self._rate = self._given = max(ceiling * self.backoff_ratio, self.min_rate)
            self._cut_at = now
            self._epoch += 1
            # Every turn promised so far is stale (its taker reserves again): start afresh,
            # one turn at the new pace after the last (not at once: the provider just said it
            # got too many).
            self._next = max(last_turn + 1.0 / self._rate, self._hold_until)
            return True

    def _now_rate(self, now: float) -> float | None:
        return None if self._rate is None else self._pace(now)

    def _pace(self, now: float) -> float:
        """The rate now, once paced."""
        # CUBIC, relative to the ceiling: back to it after `_regain`, flat near it, then
        # probing ever faster above it — capped at twice what the sender used lately.
        regain = self._regain
        since = max(now - self._cut_at, 0.0) - regain
        steep = 1.0 - self.backoff_ratio if since < 0.0 or self._sure else 1.0
        rate = self._ceiling * (1.0 + steep * (since / regain) ** 3)
        # What the sender uses: what it sent over the window, or what was answered, if more
        # (answers of a slow model come a whole answer late: read alone, they held a pace
        # cut before the first answer came at its ceiling for that long).
        used = max(self._seen_rate(now), self._sent_rate(now))
        recent = self._recent
        if self._pressed_since is not None and recent and recent[-1] > self._cut_at:
            # Requests wait for their turns and the provider answers them: every turn is
            # used, but the window may miss the one in flight. At two turns a window it then
            # reads one, under one it reads none, and twice that held the pace where it was
            # for good (the slow-rate trap): count one more, up to the pace turns go at.
            used = max(used, min(self._given, used + 1.0 / self.window_s))
        return max(min(rate, max(2.0 * used, self._ceiling)), self.min_rate)

    def _sent_rate(self, now: float) -> float:
        """Requests sent a second over the last window (or since the first, if later)."""
        sent = self._sends()
        if not sent:
            return 0.0
        start = now - self.window_s
        count = 0
        for at in reversed(sent):
            if at <= start:
                break
            count += 1
        span = min(self.window_s, now - sent[0]) if count == len(sent) else self.window_s
        return count / max(span, 0.05 * self.window_s)

    def _seen_rate(self, now: float) -> float:
        """Answers a second over the last window, or since the provider first answered.

        Not since the first request was *made*: a first request slow to leave (a new
        connection) would make the provider look slower than it is.
        """
        self._prune(now)
        span = self.window_s if self._first is None else min(self.window_s, now - self._first)
        return len(self._answers) / max(span, 0.05 * self.window_s)

    def _seen_at_cut(self, now: float) -> tuple[float, bool]:
        """The provider's answer rate for a cut, and whether enough answers say so.

        Over the window; but while the pace holds the sender back and the window holds
        fewer than ten answers, over the last four, so a slow pace is measured from answers
        rather than from a window holding one or none. Never from before the sender was held
        back: answers are then as few as the sender made them, not as the provider allowed.
        """
        seen = self._seen_rate(now)
        count = len(self._answers)
        pressed = self._pressed_since
        if pressed is None or count >= _SURE_AFTER:
            return seen, count >= _SURE_AFTER
        start = pressed if self._first is None else max(pressed, self._first)
        times = [at for at in self._recent if at > start]
        if len(times) < _SEEN_FEWEST:
            return seen, False
        # Turns between the answers over the time they took, or up to now if the provider
        # has been quiet for longer than that.
        gaps = len(times) - 1
        span = max(times[-1] - times[0], now - times[1], 0.05 * self.window_s)
        return gaps / span, gaps >= _SEEN_TURNS

    def _admitted_at_cut(self, now: float) -> tuple[float, bool]:
        """The rate of requests the provider took, by when they left; whether enough say so.

        A request that left longer ago than the 429s take to come back (twice the slowest
        of the last few), and drew none, was taken, whether or not its answer has come:
        against a provider that answers in seconds and refuses at once, answers tell what
        was sent seconds ago (when a cut pace sent few), while this tells what is taken now.
        Over the window; but while the pace holds the sender back and the window holds fewer
        than ten such requests, over the last ten since it began to, as :meth:`_seen_at_cut`
        does for answers. Only a lower bound on what the provider allows, as answers are:
        the larger of the two is taken.
        """
        if not self._lags:
            return 0.0, False
        settled = now - 2.0 * max(self._lags)
        start = settled - self.window_s
        times = [at for at in self._sends() if at <= settled]
        recent = [at for at in times if at > start]
        pressed = self._pressed_since
        if len(recent) >= _SURE_AFTER or pressed is None:
            refused = sum(1 for at in self._refused if start < at <= settled)
            taken = len(recent) - refused
            return max(taken, 0) / self.window_s, taken >= _SURE_AFTER
        last = [at for at in times if at > pressed][-_SURE_AFTER:]
        if len(last) < _SEEN_FEWEST or last[-1] <= last[0]:
            return 0.0, False
        # The requests after the first of them, over the time from it to the last.
        first, end = last[0], last[-1]
        taken = len(last) - 1 - sum(1 for at in self._refused if first < at <= end)
        return max(taken, 0) / (end - first), taken >= _SEEN_TURNS

    def _sends(self) -> tuple[float, ...]:
        """When the last requests left: a copy, made in one step (``sent`` appends unlocked).

        Iterating the deque itself raised "deque mutated during iteration" when a request
        left meanwhile; copying it is one C call, which no append can interleave.
        """
        return tuple(self._sent)

    def _prune(self, now: float) -> None:
        answers = self._answers
        while answers and answers[0] <= now - self.window_s:
            answers.popleft()


class Alarm:
    """A one-shot wake-up for one waiting task: thread-safe, awaitable on its loop."""

    __slots__ = ("_closed", "_event", "_future", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """An alarm for a thread, or for a coroutine of *loop*."""
        self._event = threading.Event()
        self._loop = loop
        self._future: asyncio.Future[None] | None = None if loop is None else loop.create_future()
        self._closed = False

    @property
    def rung(self) -> bool:
        """Whether the alarm went off."""
        return self._event.is_set()

    def ring(self) -> bool:
        """Wake the task; False if it had stopped waiting (the wake-up is not used)."""
        if self._closed or self._event.is_set():
            return False
        self._event.set()
        if self._loop is not None and self._future is not None:
            try:
                self._loop.call_soon_threadsafe(_resolve, self._future)
            except RuntimeError:  # the loop is closed: nobody waits any more
                return False
        return True

    @property
    def waiting(self) -> bool:
        """Whether the task still waits on this alarm (neither rung nor closed)."""
        return not (self._closed or self._event.is_set())

    def close(self) -> None:
        """The task stopped waiting."""
        self._closed = True

    def wait(self, seconds: float) -> bool:
        """Block until rung or *seconds* passed; return whether it was rung."""
        return self._event.wait(seconds)

    async def await_for(self, seconds: float) -> bool:
        """Wait on the loop until rung or *seconds* passed; return whether it was rung."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        if self._future is None:
            raise RuntimeError("this alarm was made for a thread, not a loop")
        await asyncio.wait([self._future], timeout=seconds)
        return self.rung


class Waiters:
    """Tasks waiting for one endpoint to take more, woken first come, first served."""

    def __init__(self) -> None:
        """No one waits yet."""
        self._lock = threading.Lock()
        self._queue: collections.deque[Alarm] = collections.deque()

    def __len__(self) -> int:
        """How many alarms are queued (some may have stopped waiting)."""
        return len(self._queue)

    def join(self, alarm: Alarm) -> None:
        """Queue *alarm* to be rung when the endpoint can take more."""
        with self._lock:
            if len(self._queue) >= _PRUNE_AT:  # drop those that stopped waiting
                self._queue = collections.deque(a for a in self._queue if a.waiting)
            self._queue.append(alarm)

    def wake(self, count: int | None = None) -> int:
        """Ring the *count* longest-waiting alarms still waiting (all with None); say how many."""
        woken = 0
        while count is None or woken < count:
            with self._lock:
                if not self._queue:
                    break
                alarm = self._queue.popleft()
            if alarm.ring():
                woken += 1
        return woken


_NEVER = -float("inf")
_PRUNE_AT = 64
_SURE_AFTER = 10  # answers in the window that make a learned ceiling trustworthy
_SENDS_KEPT = 64  # requests whose leaving time is kept, and 429s whose request's is
_LAGS_KEPT = 8  # the last 429s' round trips kept
_SEEN_TURNS = 3  # gaps between the last answers that measure a held-back sender's slow pace
_SEEN_FEWEST = 3  # the fewest answers that measure it at all (two gaps; not trusted)
_REGAIN_TURNS = 5  # turns at a trusted ceiling the pace takes to regain it
_SAME_CEILING = 1.25  # ceilings within this ratio of each other are about the same
_STEADY_MOST = 4  # doublings of those turns for a ceiling measured again and again (80 turns)


def _same(ceiling: float, last: float) -> bool:
    """Whether two ceilings are about the same: within a quarter of each other."""
    return last / _SAME_CEILING <= ceiling <= last * _SAME_CEILING


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
