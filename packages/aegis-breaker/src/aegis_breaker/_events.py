"""Circuit states and the events a breaker reports to its listeners."""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

__all__ = ["BreakerEvent", "BreakerListener", "CallRejected", "CircuitState", "StateChanged"]


class CircuitState(str, enum.Enum):
    """The three states of a circuit breaker; values are the lowercase names."""

    CLOSED = "closed"
    """Calls pass; consecutive failures are counted."""
    OPEN = "open"
    """Calls are rejected until the recovery timeout has passed."""
    HALF_OPEN = "half_open"
    """A limited number of probe calls decide whether to close or reopen."""

    def __str__(self) -> str:
        """Return the value, e.g. ``"half_open"``."""
        return self.value


@attrs.frozen
class StateChanged:
    """A breaker moved from *old* to *new* at clock time *at*."""

    breaker: str | None
    """The breaker's name."""
    old: CircuitState
    """State before the change."""
    new: CircuitState
    """State after the change."""
    at: float
    """The breaker's clock reading (monotonic seconds) when it changed."""


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
    """The breaker's clock reading (monotonic seconds) at rejection."""


BreakerEvent = StateChanged | CallRejected
"""Anything a breaker reports to its listeners."""

BreakerListener = Callable[[BreakerEvent], None]
"""A callable notified of breaker events, outside the breaker's lock; exceptions are logged."""
