"""BreakerSettings: every setting of a circuit breaker, validated once, in one frozen value."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from aegis_breaker._policy import ConsecutiveFailures, CountWindow, TimeWindow, TripPolicy

__all__ = ["BreakerSettings"]

_DEFAULT_HALF_OPEN_MAX_WAIT_S = 60.0


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value}")


def _number(
    attribute: attrs.Attribute[float] | attrs.Attribute[float | None], value: object
) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be a number of seconds, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    _number(attribute, value)
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


def _wait(_: object, attribute: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None:
        _number(attribute, value)
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


def _policy(_: object, attribute: attrs.Attribute[TripPolicy | None], value: object) -> None:
    if value is not None and not isinstance(value, ConsecutiveFailures | CountWindow | TimeWindow):
        raise TypeError(
            f"{attribute.name} must be ConsecutiveFailures, CountWindow or TimeWindow, "
            f"got {value!r}"
        )


@attrs.frozen
class BreakerSettings:
    """How a breaker decides; shared by `CircuitBreaker`, `AgentPool` and the Redis breaker.

    Invalid settings cannot exist: construction raises `ValueError` naming the setting.

    ``policy`` decides when a CLOSED breaker trips. None means
    ``ConsecutiveFailures(consecutive_failure_limit)``, the 0.1 behaviour; with a
    `CountWindow` or `TimeWindow`, ``consecutive_failure_limit`` and ``success_threshold`` are
    not used (HALF_OPEN is decided by the rates of the first ``half_open_max_calls`` probes).
    """

    consecutive_failure_limit: int = attrs.field(default=5, validator=_at_least_one)
    """Failures in a row, while CLOSED, that trip the default policy (>= 1)."""
    recovery_timeout_s: float = attrs.field(default=30.0, validator=_non_negative)
    """Seconds OPEN before the breaker turns HALF_OPEN (>= 0)."""
    half_open_max_calls: int = attrs.field(default=1, validator=_at_least_one)
    """Probes allowed in flight while HALF_OPEN (>= 1); a window policy's half-open window size."""
    success_threshold: int = attrs.field(default=1, validator=_at_least_one)
    """Probe successes that close a `ConsecutiveFailures` breaker (>= 1)."""
    half_open_max_wait_s: float | None = attrs.field(default=None, validator=_wait)
    """Seconds after which an unreported probe frees its slot; None: max(60, recovery)."""
    is_failure: Callable[[BaseException], bool] | None = None
    """Decides whether an `Exception` counts as a failure; None counts every one."""
    policy: TripPolicy | None = attrs.field(default=None, validator=_policy)
    """When to trip; None means `ConsecutiveFailures` of ``consecutive_failure_limit``."""

    @property
    def trip_policy(self) -> TripPolicy:
        """The policy in force (``policy``, or the consecutive-failure default)."""
        if self.policy is None:
            return ConsecutiveFailures(self.consecutive_failure_limit)
        return self.policy

    @property
    def probe_max_wait_s(self) -> float:
        """``half_open_max_wait_s`` resolved: its default is ``max(60.0, recovery_timeout_s)``."""
        if self.half_open_max_wait_s is None:
            return max(_DEFAULT_HALF_OPEN_MAX_WAIT_S, self.recovery_timeout_s)
        return float(self.half_open_max_wait_s)

    @property
    def slow_call_duration_s(self) -> float | None:
        """The policy's slow-call threshold, or None when calls are not timed for it."""
        return self.trip_policy.slow_call_duration_s
