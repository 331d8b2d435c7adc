"""Window metrics as immutable values: what a window policy remembers between calls.

A store keeps these values as part of the breaker's `Machine` (in memory, or encoded in
Redis); the transition function replaces them, it never changes one in place. Recording
an outcome is O(1) in the policy's size for the counts and O(size) for the copy of the
ring, which only the slow path pays: a store notes the successes that cannot trip a window
on a lock-free tally and folds them in (`add_successes`) before the window is next used.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from aegis_breaker._policy import CountWindow, TimeWindow, TripPolicy

__all__ = [
    "EMPTY",
    "CountState",
    "HalfState",
    "TimeState",
    "WindowState",
    "add_successes",
    "counts",
    "empty_window",
    "quiet_bucket",
    "record",
]

FAILED: Final = 1
SLOW: Final = 2
EMPTY: Final = 4
"""The code of a slot of a count window's ring that holds no outcome yet."""

_BYTE: Final = tuple(bytes((code,)) for code in range(EMPTY + 1))


class CountState(NamedTuple):
    """The last ``size`` outcomes as a ring of codes, with running totals."""

    ring: bytes
    """One code per call: bit 1 failed, bit 2 slow; `EMPTY` for a slot never written."""
    i: int
    """The slot the next outcome goes to."""
    calls: int
    failed: int
    slow: int


class TimeState(NamedTuple):
    """The outcomes of the last ``window_s`` seconds in a ring of buckets, with totals."""

    head: int | None
    """The bucket number (time // width) of the newest bucket; None before the first call."""
    buckets: tuple[tuple[int, int, int], ...]
    """(calls, failed, slow) per bucket, bucket number k at index k % buckets."""
    calls: int
    failed: int
    slow: int
    warm: int | None
    """The head when the last verdict had enough calls and was below the thresholds."""


class HalfState(NamedTuple):
    """The half-open probes' outcomes so far: they form a window of their own."""

    calls: int
    failed: int
    slow: int


WindowState = CountState | TimeState
"""What a CLOSED window policy remembers."""

HALF_EMPTY: Final = HalfState(0, 0, 0)


def empty_window(policy: TripPolicy) -> WindowState | None:
    """A window with no outcome for *policy*; None for `ConsecutiveFailures`."""
    if isinstance(policy, CountWindow):
        return CountState(_BYTE[EMPTY] * policy.size, 0, 0, 0, 0)
    if isinstance(policy, TimeWindow):
        return TimeState(None, ((0, 0, 0),) * policy.buckets, 0, 0, 0, None)
    return None


def _exceeded(policy: CountWindow | TimeWindow, calls: int, failed: int, slow: int) -> bool:
    # Division is correctly rounded, so a rate exactly at the threshold compares equal.
    return (
        failed / calls >= policy.failure_rate_threshold
        or slow / calls >= policy.slow_call_rate_threshold
    )


def record(
    policy: CountWindow | TimeWindow, window: WindowState, code: int, now: float
) -> tuple[WindowState, bool]:
    """*window* with one more outcome (*code*) at *now*, and whether a threshold is reached."""
    if isinstance(window, CountState):
        assert isinstance(policy, CountWindow)  # noqa: S101  # the store pairs them
        return _record_count(policy, window, code)
    assert isinstance(policy, TimeWindow)  # noqa: S101
    return _record_time(policy, window, code, now)


def _record_count(policy: CountWindow, window: CountState, code: int) -> tuple[CountState, bool]:
    ring, i, calls, failed, slow = window
    old = ring[i]
    if old == EMPTY:
        calls += 1
    else:
        failed -= old & FAILED
        slow -= old >> 1
    failed += code & FAILED
    slow += code >> 1
    size = len(ring)
    following = i + 1 if i + 1 < size else 0
    new = CountState(ring[:i] + _BYTE[code] + ring[i + 1 :], following, calls, failed, slow)
    minimum = min(policy.minimum_calls, size)
    return new, calls >= minimum and _exceeded(policy, calls, failed, slow)


def _roll(policy: TimeWindow, window: TimeState, number: int) -> TimeState:
    """Make bucket *number* the newest, emptying the buckets that fell out of the window."""
    head = window.head
    if head is None:
        return window._replace(head=number)
    if number <= head:
        return window  # a clock that went back records into the newest bucket
    size = policy.buckets
    buckets = list(window.buckets)
    calls, failed, slow = window.calls, window.failed, window.slow
    # At most `size` buckets to clear however far the clock jumped.
    for k in range(head + 1, head + 1 + min(number - head, size)):
        slot = k % size
        c, f, s = buckets[slot]
        if c:
            calls -= c
            failed -= f
            slow -= s
            buckets[slot] = (0, 0, 0)
    return TimeState(number, tuple(buckets), calls, failed, slow, None)


def _record_time(
    policy: TimeWindow, window: TimeState, code: int, now: float
) -> tuple[TimeState, bool]:
    number = int(now // (policy.window_s / policy.buckets))
    if number != window.head:
        window = _roll(policy, window, number)
    head, buckets, calls, failed, slow, warm = window
    assert head is not None  # noqa: S101  # set by _roll
    slot = head % policy.buckets
    c, f, s = buckets[slot]
    is_failed, is_slow = code & FAILED, code >> 1
    buckets = (*buckets[:slot], (c + 1, f + is_failed, s + is_slow), *buckets[slot + 1 :])
    calls += 1
    failed += is_failed
    slow += is_slow
    tripped = False
    if calls >= policy.minimum_calls:
        tripped = _exceeded(policy, calls, failed, slow)
        if not tripped:
            warm = head
    return TimeState(head, buckets, calls, failed, slow, warm), tripped


def counts(policy: TripPolicy, window: WindowState | None, now: float) -> tuple[int, int, int]:
    """(calls, failed, slow) in *window* as seen at *now* (buckets past it no longer count)."""
    if window is None:
        return 0, 0, 0
    if isinstance(window, CountState):
        return window.calls, window.failed, window.slow
    assert isinstance(policy, TimeWindow)  # noqa: S101
    head = window.head
    if head is None:
        return 0, 0, 0
    size = policy.buckets
    gap = int(now // (policy.window_s / size)) - head
    if gap <= 0:
        return window.calls, window.failed, window.slow
    if gap >= size:
        return 0, 0, 0
    calls, failed, slow = window.calls, window.failed, window.slow
    for k in range(head + 1, head + 1 + gap):  # the buckets that would be emptied by a roll
        c, f, s = window.buckets[k % size]
        calls -= c
        failed -= f
        slow -= s
    return calls, failed, slow


def add_successes(window: WindowState, successes: int) -> WindowState:
    """*window* with *successes* quick successes more (the tally a store noted lock-free)."""
    if isinstance(window, TimeState):
        head = window.head
        assert head is not None  # noqa: S101  # a tally is only offered once warm
        slot = head % len(window.buckets)
        c, f, s = window.buckets[slot]
        buckets = (*window.buckets[:slot], (c + successes, f, s), *window.buckets[slot + 1 :])
        return window._replace(buckets=buckets, calls=window.calls + successes)
    ring, i, calls, failed, slow = window
    size = len(ring)
    if successes >= size:
        return CountState(bytes(size), (i + successes) % size, size, 0, 0)
    cells = bytearray(ring)
    for _ in range(successes):
        old = cells[i]
        if old == EMPTY:
            calls += 1
        else:
            failed -= old & FAILED
            slow -= old >> 1
        cells[i] = 0
        i = i + 1 if i + 1 < size else 0
    return CountState(bytes(cells), i, calls, failed, slow)


def quiet_bucket(policy: TripPolicy, window: WindowState | None) -> int | None:
    """When a quick success cannot reach a threshold: -1 always, a bucket number, or None.

    A count window holding ``minimum_calls`` outcomes: a success only replaces an older
    outcome, so neither rate rises (-1: at any time). A time window whose last verdict had
    enough calls and was below the thresholds, while the newest bucket is still that
    verdict's (nothing has left the window since): the bucket number a success's time must
    fall in. Otherwise None: every outcome needs a verdict.
    """
    if isinstance(window, CountState):
        assert isinstance(policy, CountWindow)  # noqa: S101
        return -1 if window.calls >= min(policy.minimum_calls, policy.size) else None
    if isinstance(window, TimeState):
        return window.warm
    return None
