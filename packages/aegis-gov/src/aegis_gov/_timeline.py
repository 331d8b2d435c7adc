"""A run's timeline: when each task started, waited, retried, fell back and ended.

:class:`TimelineRecorder` is an ``on_event`` handler that notes each event with the time it
arrived (read from the clock it is given: the facade's, so tests are exact) and
:meth:`~TimelineRecorder.attach` puts the :class:`Timeline` on the run's result, where
``to_json`` saves it and ``aegis report`` draws it. A run without a recorder pays nothing:
the run itself keeps no timestamps beyond what it did before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final, Literal

import attrs
from aegis_adapters import redact_text
from aegis_graph import Task

from aegis_gov._budget import Price
from aegis_gov._events import (
    CircuitStateChanged,
    FellBack,
    RunEvent,
    TaskFailed,
    TaskOutputDelta,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)

if TYPE_CHECKING:
    from aegis_gov._results import RunResult

__all__ = ["TIMELINE_KINDS", "Timeline", "TimelineEntry", "TimelineKind", "TimelineRecorder"]

TimelineKind = Literal[
    "started", "retrying", "parked", "fell_back", "succeeded", "reused", "failed", "skipped",
    "circuit",
]  # fmt: skip
"""What a :class:`TimelineEntry` records (see its docstring)."""

TIMELINE_KINDS: Final[frozenset[str]] = frozenset(
    ("started", "retrying", "parked", "fell_back", "succeeded", "reused", "failed", "skipped")
) | {"circuit"}
"""Every :data:`TimelineKind`."""

_MAX_ERROR_CHARS: Final = 300


@attrs.frozen
class TimelineEntry:
    """One moment of a run, ``at_s`` seconds after its first event.

    ``kind`` is ``started`` (the task was handed to its agent), ``retrying`` (it waits
    ``delay_s`` after a failed request, ``error``, before request ``attempt``), ``parked``
    (it waits ``delay_s`` without a request: the endpoint's breaker, bulkhead or limit
    turned it away), ``fell_back`` (it moved on to ``endpoint``, after ``error``),
    ``succeeded``, ``reused`` (kept from the run it resumed), ``failed``, ``skipped``, or
    ``circuit``: the breaker of endpoint ``subject`` went from ``previous_state`` to
    ``state``. ``subject`` is the task id for every other kind.
    """

    at_s: float
    kind: TimelineKind
    subject: str
    attempt: int = 0
    delay_s: float = 0.0
    endpoint: str = ""
    error: str = ""
    state: str = ""
    previous_state: str = ""

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON: the fields that are not at their defaults."""
        data: dict[str, object] = {"at_s": self.at_s, "kind": self.kind, "subject": self.subject}
        optional = {
            "attempt": self.attempt,
            "delay_s": self.delay_s,
            "endpoint": self.endpoint,
            "error": self.error,
            "state": self.state,
            "previous_state": self.previous_state,
        }
        data.update({name: value for name, value in optional.items() if value})
        return data


def _entries(value: Iterable[TimelineEntry]) -> tuple[TimelineEntry, ...]:
    return tuple(value)


def _dependencies(value: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    return {task_id: tuple(deps) for task_id, deps in value.items()}


def _prices(value: Mapping[str, Price]) -> dict[str, Price]:
    return dict(value)


@attrs.frozen
class Timeline:
    """What a :class:`TimelineRecorder` saw of one run, for ``aegis report`` to draw.

    ``entries`` are in the order they happened. ``dependencies`` is the task graph (task id
    -> the ids it depends on; empty when not given), from which a report tells when each
    task became ready. ``prices`` (as :attr:`Budget.prices <aegis_gov.Budget.prices>`) let
    it put a cost on each agent's and endpoint's tokens.
    """

    entries: tuple[TimelineEntry, ...] = attrs.field(default=(), converter=_entries)
    dependencies: Mapping[str, tuple[str, ...]] = attrs.field(
        factory=dict, converter=_dependencies, hash=False
    )
    prices: Mapping[str, Price] = attrs.field(factory=dict, converter=_prices, hash=False)

    @property
    def duration_s(self) -> float:
        """Seconds from the first entry to the last (0.0 when there are none)."""
        return max((entry.at_s for entry in self.entries), default=0.0)

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON (``RunResult.to_json`` writes it under ``"timeline"``)."""
        return {
            "entries": [entry.to_dict() for entry in self.entries],
            "dependencies": {task_id: list(deps) for task_id, deps in self.dependencies.items()},
            "prices": {
                name: [price.input_per_million_usd, price.output_per_million_usd]
                for name, price in self.prices.items()
            },
        }


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
        if isinstance(event, TaskOutputDelta):  # the most frequent event, and not drawn
            return
        now = self._clock()
        with self._lock:
            if self._start is None:
                self._start = now
            at = round(now - self._start, 6)
            row = _row(at, event)
            if row is not None:
                self._rows.append(row)

    def timeline(self) -> Timeline:
        """What was recorded so far."""
        with self._lock:
            rows = list(self._rows)
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


def _row(at: float, event: RunEvent) -> _Row | None:  # noqa: PLR0911  # one per event type
    if isinstance(event, TaskStarted):
        return (at, "started", event.task_id, event.attempt, 0.0, "", "", "", "")
    if isinstance(event, TaskSucceeded):
        kind = "reused" if event.reused else "succeeded"
        return (at, kind, event.task_id, event.attempts, 0.0, "", "", "", "")
    if isinstance(event, TaskFailed):
        error = _short(f"{event.error_type}: {event.error}")
        return (at, "failed", event.task_id, event.attempts, 0.0, "", error, "", "")
    if isinstance(event, TaskSkipped):
        return (at, "skipped", event.task_id, 0, 0.0, "", "", "", "")
    if isinstance(event, TaskRetrying):
        kind = "parked" if event.rejected else "retrying"
        delay = max(0.0, event.delay_s)
        return (at, kind, event.task_id, event.attempt, delay, "", _short(event.error), "", "")
    if isinstance(event, FellBack):
        to = event.to_endpoint
        return (at, "fell_back", event.task_id, 0, 0.0, to, _short(event.error), "", "")
    if isinstance(event, CircuitStateChanged):
        old, new = event.old.value, event.new.value
        return (at, "circuit", event.endpoint, 0, 0.0, "", "", new, old)
    return None  # tool calls are in the task's result
