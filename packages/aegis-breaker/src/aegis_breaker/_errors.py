"""The exceptions aegis-breaker raises."""

from __future__ import annotations

import math

from aegis_breaker._events import CircuitState

__all__ = ["BreakerError", "BulkheadFullError", "CircuitOpenError"]


class BreakerError(Exception):
    """Base class of every error raised by aegis-breaker."""


class CircuitOpenError(BreakerError):
    """A circuit breaker rejected a call without running it.

    A new instance is raised for every rejection, so tracebacks never accumulate.

    Attributes:
        retry_after_s: Seconds until the breaker may admit a call again (0.0 when unknown).
        breaker_name: The rejecting breaker's name, or None when it has none.
        state: The `CircuitState` at rejection: OPEN, HALF_OPEN (every probe slot taken) or
            FORCED_OPEN (``retry_after_s`` is then infinite). A ``str`` enum, so it still
            compares equal to ``"open"``.
    """

    retry_after_s: float
    breaker_name: str | None
    state: CircuitState

    def __init__(
        self,
        breaker_name: str | None,
        retry_after_s: float,
        state: CircuitState | str = CircuitState.OPEN,
    ) -> None:
        """Build the error for *breaker_name*, open for *retry_after_s* more seconds."""
        self.breaker_name = breaker_name
        self.retry_after_s = retry_after_s
        self.state = CircuitState(state)
        who = "circuit breaker" if breaker_name is None else f"circuit breaker {breaker_name!r}"
        if self.state is CircuitState.HALF_OPEN:
            why = "is half-open and all its probe slots are taken"
        elif self.state is CircuitState.FORCED_OPEN:
            why = "is forced open"
        else:
            why = "is open"
        when = "until reset" if math.isinf(retry_after_s) else f"retry in {retry_after_s:.3f} s"
        super().__init__(f"{who} {why}; {when}")

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[str | None, float, CircuitState]]:
        """Pickle with the constructor arguments (the message is derived from them)."""
        return (type(self), (self.breaker_name, self.retry_after_s, self.state))


class BulkheadFullError(BreakerError):
    """A bulkhead had no free permit within its wait limit.

    Attributes:
        max_concurrent: The bulkhead's limit on calls in flight.
        waited_s: Seconds the caller waited before giving up.
    """

    max_concurrent: int
    waited_s: float

    def __init__(self, max_concurrent: int, waited_s: float) -> None:
        """Build the error for a bulkhead of *max_concurrent* after waiting *waited_s*."""
        self.max_concurrent = max_concurrent
        self.waited_s = waited_s
        super().__init__(
            f"bulkhead full: all {max_concurrent} permits in use after waiting {waited_s:.3f} s"
        )

    def __reduce__(self) -> tuple[type[BulkheadFullError], tuple[int, float]]:
        """Pickle with the constructor arguments (the message is derived from them)."""
        return (type(self), (self.max_concurrent, self.waited_s))
