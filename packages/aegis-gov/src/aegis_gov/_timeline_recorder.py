"""Record a run's :class:`~aegis_gov.Timeline` from its events.

:class:`TimelineRecorder` is an ``on_event`` handler that notes each event with the time it
arrived (read from the clock it is given: the facade's, so tests are exact) and
:meth:`~TimelineRecorder.attach` puts the timeline on the run's result, where ``to_json``
saves it and ``aegis report`` draws it. A run without a recorder pays nothing: the run
itself keeps no timestamps beyond what it did before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs
from aegis_adapters import redact_text
from aegis_graph import Task

from aegis_gov._budget import Price
from aegis_gov._events import (
    CircuitStateChanged,
    FellBack,
    RunEvent,
    TaskFailed,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from aegis_gov._results import RunResult
from aegis_gov._timeline import Timeline, TimelineEntry

__all__ = ["TimelineRecorder"]

_MAX_ERROR_CHARS: Final = 300

_Row = tuple[float, str, str, int, float, str, str, str, str]


class TimelineRecorder:
    """An ``on_event`` handler that keeps a :class:`Timeline` of the run.

    ``clock`` must be the facade's (``OpenMultiAgent.clock``) so its times agree with the
    run's durations; times are counted from the first event. ``tasks`` gives the graph
    (without it a report cannot tell how long a task waited for a free slot), ``prices`` a
    cost per token. Cheap: one clock read and one append per event; streamed chunks are
    ignored. Thread-safe. Use one recorder per run.

    Example:
        ```python
        recorder = TimelineRecorder(tasks, clock=oma.clock)
        result = recorder.attach(oma.run_tasks(tasks, team, on_event=recorder))
        ```
    """

    def __init__(
        self,
        tasks: Iterable[Task] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        """Record against *clock*; *tasks* and *prices* go into the timeline as they are."""
        self._clock = clock
        self._dependencies = {task.id: tuple(task.depends_on) for task in tasks}
        self._prices = dict(prices or {})
        self._start: float | None = None
        self._rows: list[_Row] = []
        self._lock = threading.Lock()

    def __call__(self, event: RunEvent) -> None:
        """Note *event* with the time it arrived."""
        row = _ROWS.get(type(event))
        if row is None:  # streamed chunks (the most frequent event) and tool calls
            return
        start = self._start
        if start is None:
            with self._lock:  # the first event's clock read fixes the start, under the lock
                now = self._clock()
                if self._start is None:
                    self._start = now
                start = self._start
        else:
            now = self._clock()
        # Never before the start: another thread's first event may have read the clock
        # later, and a clock that is not monotonic may step back.
        self._rows.append(row(max(0.0, round(now - start, 6)), event))  # one append: atomic

    def timeline(self) -> Timeline:
        """What was recorded so far, in time order."""
        rows = sorted(self._rows, key=_at)  # threads may append out of order by a hair
        return Timeline(
            entries=[TimelineEntry(*row) for row in rows],  # type: ignore[arg-type]
            dependencies=self._dependencies,
            prices=self._prices,
        )

    def attach(self, result: RunResult) -> RunResult:
        """*result* with this recorder's :class:`Timeline` on it."""
        return attrs.evolve(result, timeline=self.timeline())


def _short(error: str) -> str:
    text = redact_text(error)
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def _at(row: _Row) -> float:
    return row[0]


def _started(at: float, event: TaskStarted) -> _Row:
    return (at, "started", event.task_id, event.attempt, 0.0, "", "", "", "")


def _succeeded(at: float, event: TaskSucceeded) -> _Row:
    kind = "reused" if event.reused else "succeeded"
    return (at, kind, event.task_id, event.attempts, 0.0, "", "", "", "")


def _failed(at: float, event: TaskFailed) -> _Row:
    error = _short(f"{event.error_type}: {event.error}")
    return (at, "failed", event.task_id, event.attempts, 0.0, "", error, "", "")


def _skipped(at: float, event: TaskSkipped) -> _Row:
    return (at, "skipped", event.task_id, 0, 0.0, "", "", "", "")


def _retrying(at: float, event: TaskRetrying) -> _Row:
    kind = "parked" if event.rejected else "retrying"
    delay = max(0.0, event.delay_s)
    return (at, kind, event.task_id, event.attempt, delay, "", _short(event.error), "", "")


def _fell_back(at: float, event: FellBack) -> _Row:
    to = event.to_endpoint
    return (at, "fell_back", event.task_id, 0, 0.0, to, _short(event.error), "", "")


def _circuit(at: float, event: CircuitStateChanged) -> _Row:
    old, new = event.old.value, event.new.value
    return (at, "circuit", event.endpoint, 0, 0.0, "", "", new, old)


_ROWS: Final[dict[type, Callable[[float, Any], _Row]]] = {
    TaskStarted: _started,
    TaskSucceeded: _succeeded,
    TaskFailed: _failed,
    TaskSkipped: _skipped,
    TaskRetrying: _retrying,
    FellBack: _fell_back,
    CircuitStateChanged: _circuit,
}
