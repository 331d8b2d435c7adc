"""BreakerStatus and PoolStatus: typed, frozen snapshots of a breaker and of a pool."""

from __future__ import annotations

import attrs

from aegis_breaker._events import CircuitState

__all__ = ["BreakerStatus", "PoolStatus"]


@attrs.frozen
class BreakerStatus:
    """What a breaker looked like at one moment; from `CircuitBreaker.snapshot`.

    Rates are fractions in [0, 1] over the CLOSED window (the probes' window while HALF_OPEN);
    they are None under `ConsecutiveFailures`, which keeps no window, and while the window
    holds fewer calls than the policy's ``minimum_calls``.
    """

    name: str | None
    """The breaker's name."""
    state: CircuitState
    """The state, after any due OPEN -> HALF_OPEN change."""
    failure_rate: float | None
    """Failed calls / calls in the window, or None (see above)."""
    slow_call_rate: float | None
    """Slow calls / calls in the window, or None (see above)."""
    calls_in_window: int
    """Outcomes currently in the window (0 under `ConsecutiveFailures`)."""
    failed_calls: int
    """Failed calls in the window."""
    slow_calls: int
    """Slow calls in the window."""
    consecutive_failures: int
    """Failures in a row counted so far (cleared on closing)."""
    rejected_calls: int
    """Calls rejected since the breaker was created."""
    retry_after_s: float
    """Seconds until an OPEN breaker turns HALF_OPEN; 0.0 otherwise (inf when FORCED_OPEN)."""

    def to_dict(self) -> dict[str, object]:
        """The snapshot as plain data (the state as its string value), e.g. for JSON."""
        data = attrs.asdict(self, recurse=False)
        data["state"] = self.state.value
        return data


@attrs.frozen
class PoolStatus:
    """What an `AgentPool` looked like at one moment; from `AgentPool.snapshot`."""

    state: CircuitState
    """The worst state over its breakers (open > half-open > closed)."""
    consecutive_failures: int
    """The highest count of failures in a row among its breakers."""
    active: int
    """Bulkhead permits held now."""
    max_concurrent: int
    """The bulkhead's limit."""
    breakers: dict[str, BreakerStatus]
    """Each breaker's snapshot, by key."""

    def to_dict(self) -> dict[str, object]:
        """Plain data (each breaker as `BreakerStatus.to_dict` gives it), e.g. for JSON."""
        return {
            "state": self.state.value,
            "consecutive_failures": self.consecutive_failures,
            "active": self.active,
            "max_concurrent": self.max_concurrent,
            "breakers": {key: status.to_dict() for key, status in self.breakers.items()},
        }
