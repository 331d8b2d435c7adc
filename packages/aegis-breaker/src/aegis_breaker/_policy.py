"""Trip policies: when a CLOSED breaker opens. Sans-I/O, O(1) per recorded outcome."""

from __future__ import annotations

import math

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
