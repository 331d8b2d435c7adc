"""Typed events a run reports to its ``on_event`` callback: the hook for progress and tracing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

import attrs
from aegis_adapters import Usage
from aegis_breaker import CircuitState
from aegis_graph import SkipReason

__all__ = [
    "CircuitStateChanged",
    "Emitter",
    "EventHandler",
    "FellBack",
    "RunEvent",
    "TaskFailed",
    "TaskOutputDelta",
    "TaskRetrying",
    "TaskSkipped",
    "TaskStarted",
    "TaskSucceeded",
    "ToolCalled",
]

logger = logging.getLogger(__name__)


@attrs.frozen
class TaskStarted:
    """A task was handed to its agent (``attempt`` counts from 1)."""

    task_id: str
    agent: str
    attempt: int


@attrs.frozen
class TaskRetrying:
    """A task waits ``delay_s`` before making request number ``attempt``.

    ``rejected`` is False when its last request failed with a retryable ``error``, and True
    when no request was made: the endpoint's breaker or bulkhead turned the task away
    (``error`` says which), so ``attempt`` is the same number as before the wait.
    """

    task_id: str
    agent: str
    attempt: int
    delay_s: float
    error: str
    rejected: bool = False


@attrs.frozen
class TaskSucceeded:
    """A task finished with an answer.

    ``reused`` is True for a task of a resumed run kept without a call because its inputs
    came out the same as before (usage, attempts and duration are the earlier run's).
    """

    task_id: str
    agent: str
    output: str
    usage: Usage
    attempts: int
    duration_s: float
    reused: bool = False


@attrs.frozen
class TaskFailed:
    """A task gave up; ``error_type`` is the exception's class name."""

    task_id: str
    agent: str
    error: str
    error_type: str
    attempts: int
    duration_s: float


@attrs.frozen
class TaskSkipped:
    """A task will not run: ``reason`` is ``upstream_failed``, ``stopped`` or ``cancelled``.

    ``blamed`` names the failed task at the root of an ``upstream_failed`` skip.
    """

    task_id: str
    reason: SkipReason
    blamed: str | None


@attrs.frozen
class TaskOutputDelta:
    """A chunk of a streaming task's answer, as it arrives.

    A request that fails after some chunks is retried (or falls back) from the start of its
    turn: after a :class:`TaskRetrying` or :class:`FellBack` of the same task, drop the
    chunks received since the task's last :class:`ToolCalled` (since it started, if it has
    called no tool); the turn's chunks come again. Turns after a tool round start with a
    newline. :attr:`TaskSucceeded.output` is the last turn's text.
    """

    task_id: str
    text: str


@attrs.frozen
class ToolCalled:
    """An agent called a tool; ``error`` is set when the call failed (the model is told)."""

    task_id: str
    agent: str
    tool: str
    arguments: Mapping[str, object]
    result: str
    error: str | None


@attrs.frozen
class FellBack:
    """A task's agent moved from one endpoint to its next fallback.

    ``error`` is what ended its tries on ``from_endpoint``: its retry budget spent on
    retryable errors, an open circuit, or (when so configured) a permanent error.
    """

    task_id: str
    agent: str
    from_endpoint: str
    to_endpoint: str
    error: str


@attrs.frozen
class CircuitStateChanged:
    """The breaker in front of one provider endpoint changed state."""

    endpoint: str
    old: CircuitState
    new: CircuitState


RunEvent = (
    TaskStarted
    | TaskRetrying
    | FellBack
    | TaskSucceeded
    | TaskFailed
    | TaskSkipped
    | TaskOutputDelta
    | ToolCalled
    | CircuitStateChanged
)
"""Any event a run reports."""

EventHandler = Callable[[RunEvent], None]
"""The type of ``on_event`` callbacks."""


class Emitter:
    """Serialises calls to a user's ``on_event`` and keeps its exceptions out of the run.

    Calling an emitter without a handler does nothing; ``active`` says whether there is one,
    so callers can skip building events nobody will see.
    """

    def __init__(self, handler: EventHandler | None) -> None:
        """Deliver events to *handler* (None: drop them)."""
        self._handler = handler
        self._lock = threading.Lock()
        self._closed = False
        self.active = handler is not None

    def close(self) -> None:
        """Deliver nothing more: the run has returned its result to the caller."""
        with self._lock:
            self._closed = True

    def __call__(self, event: RunEvent) -> None:
        """Deliver *event*, one at a time; a handler that raises is logged and ignored."""
        if self._handler is None:
            return
        with self._lock:
            if self._closed:  # an abandoned call still going after its run returned
                return
            try:
                self._handler(event)
            except Exception:
                logger.exception("on_event handler raised on %r; the run goes on", event)
