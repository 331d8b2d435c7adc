"""Trip policies: when a CLOSED breaker opens. Sans-I/O, O(1) per recorded outcome."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator

import attrs

__all__ = ["ConsecutiveFailures", "CountWindow", "TimeWindow", "TripPolicy"]


def _positive_int(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value}")


def _rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{attribute.name} must be in (0, 1], got {value}")


def _duration_or_none(
    _: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number > 0 or None, got {value}")


def _window_s(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value}")


@attrs.frozen
class ConsecutiveFailures:
    """Trip after *limit* failures in a row; a success resets the count (the default policy).

    HALF_OPEN follows the breaker's ``success_threshold``: that many probe successes close it,
    one probe failure reopens it. Slow calls are not tracked by this policy.
    """

    limit: int = attrs.field(default=5, validator=_positive_int)
    """Failures in a row, while CLOSED, that trip the breaker (>= 1)."""

    @property
    def slow_call_duration_s(self) -> float | None:
        """Always None: this policy does not time calls."""
        return None


@attrs.frozen
class CountWindow:
    """Trip on the failure or slow-call rate over the last *size* calls.

    Rates are computed once at least ``min(minimum_calls, size)`` outcomes are in the window; a
    rate *at* its threshold trips (as in resilience4j). Ignored outcomes never enter the window.
    A call (success or failure) taking longer than ``slow_call_duration_s`` is slow; slow calls
    trip the breaker on their own once their rate reaches ``slow_call_rate_threshold``.

    HALF_OPEN: the first ``half_open_max_calls`` probe outcomes form their own window; once it is
    full, the same thresholds decide between OPEN and CLOSED.
    """

    size: int = attrs.field(default=100, validator=_positive_int)
    """Number of most recent calls in the window (>= 1)."""
    failure_rate_threshold: float = attrs.field(default=0.5, validator=_rate)
    """Failure rate (0, 1] at or above which the breaker trips."""
    minimum_calls: int = attrs.field(default=10, validator=_positive_int)
    """Calls the window must hold before rates are evaluated (capped at *size*)."""
    slow_call_duration_s: float | None = attrs.field(default=None, validator=_duration_or_none)
    """Calls taking longer than this many seconds are slow; None disables slow-call tracking."""
    slow_call_rate_threshold: float = attrs.field(default=1.0, validator=_rate)
    """Slow-call rate (0, 1] at or above which the breaker trips."""


@attrs.frozen
class TimeWindow:
    """Trip on the failure or slow-call rate over the calls of the last *window_s* seconds.

    The window is a ring of *buckets* buckets of ``window_s / buckets`` seconds each (as in
    resilience4j's ``SlidingTimeWindowMetrics``, which uses one-second buckets), so a call costs
    O(1) and memory does not grow with traffic; calls leave the window a bucket at a time.
    Thresholds, ``minimum_calls`` (not capped) and slow calls work as in `CountWindow`.
    """

    window_s: float = attrs.field(default=60.0, validator=_window_s)
    """Seconds of history in the window."""
    buckets: int = attrs.field(default=60, validator=_positive_int)
    """Buckets the window is divided into; more buckets expire calls more smoothly."""
    failure_rate_threshold: float = attrs.field(default=0.5, validator=_rate)
    """Failure rate (0, 1] at or above which the breaker trips."""
    minimum_calls: int = attrs.field(default=10, validator=_positive_int)
    """Calls the window must hold before rates are evaluated."""
    slow_call_duration_s: float | None = attrs.field(default=None, validator=_duration_or_none)
    """Calls taking longer than this many seconds are slow; None disables slow-call tracking."""
    slow_call_rate_threshold: float = attrs.field(default=1.0, validator=_rate)
    """Slow-call rate (0, 1] at or above which the breaker trips."""


TripPolicy = ConsecutiveFailures | CountWindow | TimeWindow
"""When a CLOSED breaker opens: `ConsecutiveFailures`, `CountWindow` or `TimeWindow`."""


# -- window metrics (internal, mutable, guarded by the breaker's lock) ------------------------

_FAILED: Final = 1
_SLOW: Final = 2
_EMPTY: Final = 4


class WindowCounts(Protocol):
    """What the breaker reads from a window."""

    def record(self, code: int, now: float) -> bool:
        """Add one outcome (bit 1: failed, bit 2: slow); True when a threshold is reached."""
        ...

    def counts(self, now: float) -> tuple[int, int, int]:
        """(calls, failed, slow) in the window at *now*."""
        ...

    def success_tally(self) -> Iterator[int] | None:
        """A counter whose ``next`` records one success without a lock, or None.

        Offered only while a success cannot reach a threshold (so it needs no verdict), and
        for a time window only for successes in `tally_bucket`; the tally is folded into the
        window before the window is next read.
        """
        ...

    def tally_bucket(self) -> tuple[int, float] | None:
        """(bucket number, bucket width) a success's time must fall in to use the tally."""
        ...


class CountMetrics:
    """The last *size* outcomes in a ring, with a running count of each kind of outcome."""

    __slots__ = (
        "_by_code",
        "_failure_rate",
        "_i",
        "_minimum",
        "_ring",
        "_seen",
        "_size",
        "_slow_rate",
        "_tally",
    )

    def __init__(self, size: int, minimum: int, failure_rate: float, slow_rate: float) -> None:
        self._ring = bytearray([_EMPTY]) * size
        # Outcomes in the ring by code: success, failed, slow, slow and failed, empty slot.
        self._by_code = [0, 0, 0, 0, size]
        self._size = size
        self._minimum = min(minimum, size)
        self._failure_rate = failure_rate
        self._slow_rate = slow_rate
        self._i = 0
        # `next` on an itertools.count is atomic under the GIL, so successes can be noted
        # without the breaker's lock and folded in later, in order, before the next read.
        self._tally = itertools.count()
        self._seen = 0

    def success_tally(self) -> Iterator[int] | None:
        # Once the window holds `minimum` calls, a success only replaces an older outcome:
        # neither rate can rise, so it can never trip the breaker and needs no verdict.
        if self._size - self._by_code[_EMPTY] >= self._minimum:
            return self._tally
        return None

    def tally_bucket(self) -> tuple[int, float] | None:
        return None  # any time: a count window has no buckets

    def _fold(self, noted: int) -> None:
        """Write the successes noted on the tally (read as *noted*) into the ring."""
        pending = noted - self._seen
        self._seen = noted + 1  # this read counts too
        if not pending:
            return
        size, ring, by_code = self._size, self._ring, self._by_code
        i = self._i
        if pending >= size:
            ring[:] = bytes(size)
            by_code[:] = [size, 0, 0, 0, 0]
            self._i = (i + pending) % size
            return
        for _ in range(pending):
            by_code[ring[i]] -= 1
            ring[i] = 0
            i = i + 1 if i + 1 < size else 0
        by_code[0] += pending
        self._i = i

    def record(self, code: int, now: float) -> bool:  # noqa: ARG002  # count windows ignore time
        self._fold(next(self._tally))
        ring = self._ring
        i = self._i
        old = ring[i]
        ring[i] = code
        i += 1
        self._i = i if i < self._size else 0
        if old == code:
            # Same totals as after the last record, whose verdict was "below the thresholds":
            # a verdict above them makes the breaker leave CLOSED and stop recording here.
            return False
        by_code = self._by_code
        by_code[old] -= 1
        by_code[code] += 1
        calls = self._size - by_code[_EMPTY]
        if calls < self._minimum:
            return False
        both = by_code[_FAILED | _SLOW]
        # Division is correctly rounded, so a rate exactly at the threshold compares equal.
        return (by_code[_FAILED] + both) / calls >= self._failure_rate or (
            by_code[_SLOW] + both
        ) / calls >= self._slow_rate

    def counts(self, now: float) -> tuple[int, int, int]:  # noqa: ARG002  # count windows ignore time
        self._fold(next(self._tally))
        by_code = self._by_code
        both = by_code[_FAILED | _SLOW]
        return (
            self._size - by_code[_EMPTY],
            by_code[_FAILED] + both,
            by_code[_SLOW] + both,
        )


class TimeMetrics:
    """Outcomes of the last *window_s* seconds in a ring of buckets, with running totals."""

    __slots__ = (
        "_calls",
        "_failed",
        "_failure_rate",
        "_head",
        "_minimum",
        "_n",
        "_nf",
        "_ns",
        "_seen",
        "_slot",
        "_slow",
        "_slow_rate",
        "_tally",
        "_warm_head",
        "_width",
    )

    def __init__(
        self, window_s: float, buckets: int, minimum: int, failure_rate: float, slow_rate: float
    ) -> None:
        self._width = window_s / buckets
        self._calls = [0] * buckets
        self._failed = [0] * buckets
        self._slow = [0] * buckets
        self._minimum = minimum
        self._failure_rate = failure_rate
        self._slow_rate = slow_rate
        self._head: int | None = None  # the bucket number (time // width) of the newest bucket
        self._slot = 0  # its index in the ring
        self._n = self._nf = self._ns = 0
        # Successes noted without the lock (see success_tally), folded into the newest bucket.
        self._tally = itertools.count()
        self._seen = 0
        self._warm_head: int | None = None

    def success_tally(self) -> Iterator[int] | None:
        # A success cannot trip the window while the newest bucket is the one of the last
        # verdict (nothing has left the window since) and that verdict had enough calls and
        # was below the thresholds: one more success then lowers both rates. Racing a roll,
        # it may land one bucket late, which keeps it in the window longer and never trips it.
        return None if self._warm_head is None else self._tally

    def tally_bucket(self) -> tuple[int, float] | None:
        return None if self._warm_head is None else (self._warm_head, self._width)

    def _fold(self) -> None:
        """Add the successes noted on the tally to the newest bucket."""
        noted = next(self._tally)
        pending = noted - self._seen
        self._seen = noted + 1  # this read counts too
        if pending:
            self._calls[self._slot] += pending
            self._n += pending

    def _roll(self, number: int) -> None:
        """Make bucket *number* the newest, emptying the buckets that fell out of the window."""
        head = self._head
        size = len(self._calls)
        if head is None:
            self._head = number
            self._slot = number % size
            return
        if number < head:
            return  # a clock that went back records into the newest bucket
        self._warm_head = None
        # At most `size` buckets to clear, however far the clock jumped: O(buckets) worst
        # case, O(1) amortised since each bucket is cleared once per width of time.
        calls, failed, slow = self._calls, self._failed, self._slow
        for k in range(head + 1, head + 1 + min(number - head, size)):
            slot = k % size
            if calls[slot]:
                self._n -= calls[slot]
                self._nf -= failed[slot]
                self._ns -= slow[slot]
                calls[slot] = failed[slot] = slow[slot] = 0
        self._head = number
        self._slot = number % size

    def record(self, code: int, now: float) -> bool:
        self._fold()
        number = int(now // self._width)
        if number != self._head:
            self._roll(number)
        slot = self._slot
        self._calls[slot] += 1
        calls = self._n = self._n + 1
        if code:
            failed, slow = code & _FAILED, code >> 1
            self._failed[slot] += failed
            self._slow[slot] += slow
            self._nf += failed
            self._ns += slow
        if calls < self._minimum:
            return False
        if self._nf / calls >= self._failure_rate or self._ns / calls >= self._slow_rate:
            return True
        self._warm_head = self._head
        return False

    def counts(self, now: float) -> tuple[int, int, int]:
        self._fold()
        number = int(now // self._width)
        if number != self._head:
            self._roll(number)
        return self._n, self._nf, self._ns


def new_window(policy: TripPolicy) -> WindowCounts | None:
    """Fresh CLOSED-state metrics for *policy*; None for `ConsecutiveFailures`."""
    if isinstance(policy, CountWindow):
        return CountMetrics(
            policy.size,
            policy.minimum_calls,
            policy.failure_rate_threshold,
            policy.slow_call_rate_threshold,
        )
    if isinstance(policy, TimeWindow):
        return TimeMetrics(
            policy.window_s,
            policy.buckets,
            policy.minimum_calls,
            policy.failure_rate_threshold,
            policy.slow_call_rate_threshold,
        )
    return None


def half_open_window(policy: TripPolicy, permitted_calls: int) -> WindowCounts | None:
    """Metrics for the HALF_OPEN probes: their own count window of *permitted_calls*."""
    if isinstance(policy, ConsecutiveFailures):
        return None
    return CountMetrics(
        permitted_calls,
        permitted_calls,
        policy.failure_rate_threshold,
        policy.slow_call_rate_threshold,
    )
