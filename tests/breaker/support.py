"""Fakes shared by the breaker tests."""

from __future__ import annotations

from aegis_breaker import AgentPool, BreakerEvent, CircuitBreaker, CircuitState, StateChanged


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """A listener that keeps every event."""

    def __init__(self) -> None:
        self.events: list[BreakerEvent] = []

    def __call__(self, event: BreakerEvent) -> None:
        self.events.append(event)

    def transitions(self) -> list[tuple[CircuitState, CircuitState]]:
        return [(e.old, e.new) for e in self.events if isinstance(e, StateChanged)]


class BoomError(Exception):
    """The failure our fake dependency raises."""


class Interrupt(BaseException):
    """A BaseException that is not an Exception, like KeyboardInterrupt."""


def state_of(thing: CircuitBreaker | AgentPool) -> CircuitState:
    """Read the state through a call, so mypy does not narrow it across assertions."""
    return thing.state


def ok() -> str:
    return "ok"


def boom() -> str:
    raise BoomError("down")


def interrupt() -> str:
    raise Interrupt
