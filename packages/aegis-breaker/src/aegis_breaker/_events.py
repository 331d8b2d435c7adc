"""Circuit states and the events a breaker reports to its listeners."""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

__all__ = [
    "BreakerEvent",
    "BreakerListener",
    "CallEvent",
    "CallFailed",
    "CallListener",
    "CallRejected",
    "CallSucceeded",
    "CircuitState",
    "StateChanged",
]


class CircuitState(str, enum.Enum):
    """The three states of a circuit breaker; values are the lowercase names."""

    CLOSED = "closed"
    """Calls pass; consecutive failures are counted."""
    OPEN = "open"
    """Calls are rejected until the recovery timeout has passed."""
    HALF_OPEN = "half_open"
    """A limited number of probe calls decide whether to close or reopen."""
    FORCED_OPEN = "forced_open"
    """Set by `CircuitBreaker.force_open`: every call is rejected until an operator acts."""
    DISABLED = "disabled"
    """Set by `CircuitBreaker.disable`: every call passes; outcomes are only measured."""

    def __str__(self) -> str:
        """Return the value, e.g. ``"half_open"``."""
        return self.value


@attrs.frozen
class StateChanged:
    """A breaker moved from *old* to *new* at clock time *at*.

    ``at`` is always a reading of the breaker's own ``clock`` (monotonic seconds by default)
    taken by the process that emits the event: when it made the change, or, for a change
    another process made (``remote``), when it heard of it. A breaker whose state is shared
    through Redis also gives the store's time of the change as ``shared_at``: the Redis
    server's clock in epoch seconds (the breaker's clock with ``server_clock=False``).
    """

    breaker: str | None
    """The breaker's name."""
    old: CircuitState
    """State before the change."""
    new: CircuitState
    """State after the change."""
    at: float
    """The breaker's clock reading (monotonic seconds by default) when it changed or was heard."""
    remote: bool = False
    """True when another process made the change (a `RedisCircuitBreaker` hears them)."""
    shared_at: float | None = None
    """The shared store's clock at the change (Redis server epoch seconds); None if local."""


@attrs.frozen
class CallRejected:
    """A breaker rejected a call in *state* at clock time *at*."""

    breaker: str | None
    """The breaker's name."""
    state: CircuitState
    """State that caused the rejection (OPEN, or HALF_OPEN with every probe slot taken)."""
    retry_after_s: float
    """Seconds until a call may be admitted again, as carried by the CircuitOpenError."""
    at: float
    """The breaker's clock reading (monotonic seconds by default) at rejection."""
    shared_at: float | None = None
    """The shared store's clock at the decision (Redis server epoch seconds); None if local."""


@attrs.frozen
class CallSucceeded:
    """A call through the breaker succeeded."""

    breaker: str | None
    """The breaker's name."""
    duration_s: float
    """Seconds the call took on the breaker's clock."""
    slow: bool
    """Whether the policy counted it as a slow call."""
    at: float
    """The breaker's clock reading when the outcome was reported."""


@attrs.frozen
class CallFailed:
    """A call through the breaker failed (an exception that counts as a failure)."""

    breaker: str | None
    """The breaker's name."""
    duration_s: float
    """Seconds the call took on the breaker's clock."""
    slow: bool
    """Whether the policy counted it as a slow call."""
    error: BaseException | None = attrs.field(eq=False)
    """The exception, when the driver had one (a bare `Permit.failure()` has none)."""
    at: float
    """The breaker's clock reading when the outcome was reported."""


BreakerEvent = StateChanged | CallRejected
"""Anything a breaker reports to its listeners."""

BreakerListener = Callable[[BreakerEvent], None]
"""A callable notified of breaker events, outside the breaker's lock; exceptions are logged."""

CallEvent = CallSucceeded | CallFailed | CallRejected
"""What a call listener hears: every call's outcome, and every rejection."""

CallListener = Callable[[CallEvent], None]
"""A callable notified of every call outcome and rejection (`CircuitBreaker.add_call_listener`)."""
