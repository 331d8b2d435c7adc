"""Progress of a run for people: a rich live table on a terminal, plain log lines otherwise.

:class:`ProgressTracker` folds a run's events into one row per task and one circuit state per
endpoint. :class:`PlainLog` writes a line per event. :func:`run_with_progress` runs a task
graph with either display and returns the :class:`RunResult`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Final

import attrs
from aegis_breaker import CircuitState
from aegis_graph import Task
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from aegis_gov._agents import Team
from aegis_gov._budget import Budget
from aegis_gov._checkpoint import CheckpointStore
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
    ToolCalled,
)
from aegis_gov._facade import OpenMultiAgent, endpoint_key
from aegis_gov._results import RunResult, TaskResult
from aegis_gov._resume import ResumePlan
from aegis_gov._status import EndpointStatus

__all__ = [
    "PlainLog",
    "ProgressTracker",
    "TaskRow",
    "describe_event",
    "endpoints_of",
    "printable",
    "run_with_progress",
]

_STATE_STYLES: Final = {
    "pending": "dim",
    "running": "bold blue",
    "retrying": "bold yellow",
    "done": "bold green",
    "kept": "green",
    "failed": "bold red",
    "skipped": "yellow",
}
_CIRCUIT_STYLES: Final = {
    CircuitState.CLOSED: "green",
    CircuitState.HALF_OPEN: "yellow",
    CircuitState.OPEN: "bold red",
}
_NOTE_WIDTH: Final = 60


@attrs.define
class TaskRow:
    """What the display knows about one task.

    ``state`` is ``pending``, ``running``, ``retrying``, ``done``, ``kept`` (a DONE result
    reused from ``--resume``), ``failed`` or ``skipped``. While a task streams its answer,
    ``note`` shows the end of its last line, ``streamed_chars`` counts what arrived and
    ``stream_tail`` keeps the last few hundred characters.
    """

    task_id: str
    agent: str
    endpoint: str
    state: str = "pending"
    attempts: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    started_at: float | None = None
    duration_s: float | None = None
    note: str = ""
    streamed_chars: int = 0
    stream_tail: str = attrs.field(default="", repr=False)


class ProgressTracker:
    """Folds run events into task rows and endpoint circuit states; thread-safe.

    Pass it (or a function that calls it) as ``on_event``. ``kept`` lists the results a
    resumed run reuses, shown as ``kept`` from the start.
    """

    def __init__(
        self,
        tasks: Iterable[Task],
        endpoints: Mapping[str, str],
        *,
        kept: Mapping[str, TaskResult] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Start every task as pending; ``endpoints`` maps agent names to endpoint keys."""
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: dict[str, TaskRow] = {}
        for task in tasks:
            agent = task.agent or ""
            self._rows[task.id] = TaskRow(task.id, agent, endpoints.get(agent, ""))
        self._circuits: dict[str, CircuitState] = dict.fromkeys(
            sorted(set(endpoints.values())), CircuitState.CLOSED
        )
        self._failures: dict[str, int] = {}
        self._limits: dict[str, str] = {}  # "in flight/limit" per endpoint
        for task_id, result in (kept or {}).items():
            row = self._rows.get(task_id)
            if row is not None:
                row.state = "kept"
                row.attempts = result.attempts
                row.input_tokens = result.usage.input_tokens
                row.output_tokens = result.usage.output_tokens
                row.note = "reused from the resumed run"

    def __call__(self, event: RunEvent) -> None:
        """Record ``event``."""
        with self._lock:
            self._record(event)

    def _record(self, event: RunEvent) -> None:  # noqa: C901  # one branch per event type
        if isinstance(event, CircuitStateChanged):
            self._circuits[event.endpoint] = event.new
            return
        row = self._rows.get(event.task_id)
        if row is None:
            return
        if isinstance(event, TaskStarted):
            row.state, row.attempts, row.started_at = "running", event.attempt, self._clock()
        elif isinstance(event, TaskRetrying):
            row.state, row.retries = "retrying", row.retries + 1
            row.streamed_chars, row.stream_tail = 0, ""
            row.attempts = max(row.attempts, event.attempt - 1)
            row.note = f"retry in {event.delay_s:.2f}s: {event.error}"
        elif isinstance(event, TaskSucceeded):
            row.state = "kept" if event.reused else "done"
            row.attempts, row.duration_s = event.attempts, event.duration_s
            row.input_tokens = event.usage.input_tokens
            row.output_tokens = event.usage.output_tokens
            row.note = _first_line(event.output)
        elif isinstance(event, TaskFailed):
            row.state, row.attempts, row.duration_s = "failed", event.attempts, event.duration_s
            row.note = f"{event.error_type}: {event.error}"
        elif isinstance(event, TaskSkipped):
            row.state = "skipped"
            row.note = _skip_note(event.reason, event.blamed)
        elif isinstance(event, ToolCalled):
            row.note = f"tool {event.tool}" + (f" failed: {event.error}" if event.error else "")
        elif isinstance(event, FellBack):
            row.note = f"fell back to {event.to_endpoint}"
            self._circuits.setdefault(event.to_endpoint, CircuitState.CLOSED)
        elif isinstance(event, TaskOutputDelta):
            row.state = "running"
            row.streamed_chars += len(event.text)
            # Keep only what the note can show: the end of the last line so far.
            row.stream_tail = (row.stream_tail + event.text)[-4 * _NOTE_WIDTH :]
            row.note = _last_line_end(row.stream_tail)

    def observe_circuits(self, endpoints: Mapping[str, EndpointStatus]) -> None:
        """Take circuit states and failure counts from ``OpenMultiAgent.get_status()``."""
        with self._lock:
            for key, status in endpoints.items():
                if key in self._circuits:
                    self._circuits[key] = status.state
                    self._failures[key] = status.breaker.consecutive_failures
                    if status.adaptive is not None:
                        adaptive = status.adaptive
                        self._limits[key] = f"{adaptive.in_flight}/{adaptive.limit}" + (
                            f", {adaptive.overloads} overloaded" if adaptive.overloads else ""
                        )

    def rows(self) -> list[TaskRow]:
        """A copy of every task's row, in declaration order."""
        with self._lock:
            return [attrs.evolve(row) for row in self._rows.values()]

    def circuits(self) -> dict[str, CircuitState]:
        """Each endpoint's last known circuit state."""
        with self._lock:
            return dict(self._circuits)

    def render(self) -> Group:
        """The tables the live display shows: tasks, then endpoints."""
        now = self._clock()
        rows = self.rows()
        tasks = Table(title="tasks", title_justify="left", expand=False)
        for column in ("task", "agent", "state", "attempts", "retries", "tokens in/out", "time"):
            tasks.add_column(column, no_wrap=True)
        tasks.add_column("note", overflow="ellipsis", max_width=_NOTE_WIDTH, no_wrap=True)
        total_in = total_out = 0
        for row in rows:
            total_in += row.input_tokens
            total_out += row.output_tokens
            if row.duration_s is not None:
                elapsed = f"{row.duration_s:.1f}s"
            elif row.started_at is not None and row.state in {"running", "retrying"}:
                elapsed = f"{now - row.started_at:.1f}s"
            else:
                elapsed = ""
            tasks.add_row(
                Text(printable(row.task_id, one_line=True)),
                Text(printable(row.agent, one_line=True)),
                Text(row.state, style=_STATE_STYLES.get(row.state, "")),
                str(row.attempts or ""),
                str(row.retries or ""),
                f"{row.input_tokens}/{row.output_tokens}" if row.input_tokens else "",
                elapsed,
                Text(printable(row.note, one_line=True)),
            )
        with self._lock:
            circuits = dict(self._circuits)
            failures = dict(self._failures)
            limits = dict(self._limits)
        endpoints = Table(title="endpoints", title_justify="left")
        endpoints.add_column("endpoint", no_wrap=True)
        endpoints.add_column("circuit", no_wrap=True)
        endpoints.add_column("consecutive failures", no_wrap=True)
        endpoints.add_column("in flight/limit", no_wrap=True)
        for key, state in circuits.items():
            endpoints.add_row(
                Text(printable(key, one_line=True)),
                Text(state.value, style=_CIRCUIT_STYLES.get(state, "magenta")),
                str(failures.get(key, 0)),
                limits.get(key, ""),
            )
        footer = Text(f"tokens: {total_in} in / {total_out} out", style="dim")
        return Group(tasks, endpoints, footer)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, *, one_line: bool = False) -> str:
    """*text* safe to show on a terminal: control characters (ESC, BEL, ...) as escapes.

    Model and tool text is shown as it is, never as markup or terminal commands; with
    *one_line*, newlines are escaped too, so a model cannot forge log lines.
    """
    pattern = _CONTROL_OR_NEWLINE if one_line else _CONTROL
    if not pattern.search(text):
        return text
    return pattern.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else ""


def _last_line_end(text: str) -> str:
    """The last non-blank line of *text*, cut from the left to fit the note column."""
    lines = text.rstrip().splitlines()
    line = lines[-1].strip() if lines else ""
    return line if len(line) <= _NOTE_WIDTH else "…" + line[-(_NOTE_WIDTH - 1) :]


def _skip_note(reason: str, blamed: str | None) -> str:
    if reason == "upstream_failed" and blamed is not None:
        return f"upstream {blamed!r} failed"
    return reason.replace("_", " ")


def describe_event(event: RunEvent) -> str | None:  # noqa: C901, PLR0911  # one per event type
    """One human line for ``event`` (``None`` for events not worth a line, like deltas)."""
    if isinstance(event, TaskStarted):
        return f"{event.task_id}: started ({event.agent})"
    if isinstance(event, FellBack):
        return (
            f"{event.task_id}: falling back from {event.from_endpoint} to "
            f"{event.to_endpoint} after: {event.error}"
        )
    if isinstance(event, TaskRetrying):
        if event.rejected:
            return (
                f"{event.task_id}: waiting {event.delay_s:.2f}s before attempt "
                f"{event.attempt}, turned away without a request: {event.error}"
            )
        return (
            f"{event.task_id}: retrying in {event.delay_s:.2f}s "
            f"(attempt {event.attempt} next) after: {event.error}"
        )
    if isinstance(event, TaskSucceeded) and event.reused:
        return f"{event.task_id}: kept without a call: its inputs came out the same as before"
    if isinstance(event, TaskSucceeded):
        return (
            f"{event.task_id}: done in {event.duration_s:.2f}s, {event.attempts} attempt(s), "
            f"tokens {event.usage.input_tokens} in / {event.usage.output_tokens} out"
        )
    if isinstance(event, TaskFailed):
        return (
            f"{event.task_id}: FAILED after {event.attempts} attempt(s): "
            f"{event.error_type}: {event.error}"
        )
    if isinstance(event, TaskSkipped):
        return f"{event.task_id}: skipped ({_skip_note(event.reason, event.blamed)})"
    if isinstance(event, ToolCalled):
        status = f"failed: {event.error}" if event.error else "ok"
        return f"{event.task_id}: tool {event.tool} {status}"
    if isinstance(event, CircuitStateChanged):
        return f"circuit {event.endpoint}: {event.old.value} -> {event.new.value}"
    return None


class PlainLog:
    """An event handler that writes one timestamped line per event to ``stream``."""

    def __init__(self, stream: IO[str], *, clock: Callable[[], float] = time.monotonic) -> None:
        """Lines are stamped with seconds since this log was made."""
        self._stream = stream
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()

    def __call__(self, event: RunEvent) -> None:
        """Write ``event``'s line, if it has one."""
        line = describe_event(event)
        if line is None:
            return
        line = printable(line, one_line=True)  # a model's text must not forge lines or escapes
        with self._lock:
            self._stream.write(f"[{self._clock() - self._start:6.2f}s] {line}\n")
            self._stream.flush()


def endpoints_of(oma: OpenMultiAgent, team: Team, tasks: Iterable[Task]) -> dict[str, str]:
    """Agent name -> endpoint key, for the agents that ``tasks`` use."""
    used = {task.agent for task in tasks}
    return {
        name: endpoint_key(oma.adapter_for(agent)) for name, agent in team.items() if name in used
    }


def run_with_progress(
    oma: OpenMultiAgent,
    tasks: Iterable[Task],
    team: Team,
    *,
    console: Console,
    live: bool,
    stop_on_failure: bool = False,
    resume: RunResult | ResumePlan | None = None,
    kept: Mapping[str, TaskResult] | None = None,
    extra_handler: Callable[[RunEvent], None] | None = None,
    cancel: threading.Event | None = None,
    cancel_grace_s: float = 10.0,
    budget: Budget | None = None,
    checkpoint: CheckpointStore | None = None,
) -> RunResult:
    """Run ``tasks`` with ``team``, showing progress on ``console``.

    ``live=True`` shows a rich live table (task states, retries, tokens, each endpoint's
    circuit); otherwise one plain line per event is written to the console's file.
    ``extra_handler`` also receives every event. ``cancel`` and ``cancel_grace_s`` are
    passed to :meth:`~aegis_gov.OpenMultiAgent.run_tasks`: once ``cancel`` is set, pending
    tasks are skipped and calls in flight get ``cancel_grace_s`` seconds to finish.

    Raises:
        RunCancelledError: on :class:`KeyboardInterrupt` during the run; its ``result``
            holds what finished.
    """
    tasks = list(tasks)
    tracker = ProgressTracker(tasks, endpoints_of(oma, team, tasks), kept=kept)
    plain = None if live else PlainLog(console.file)

    def on_event(event: RunEvent) -> None:
        tracker(event)
        if plain is not None:
            plain(event)
        if extra_handler is not None:
            extra_handler(event)

    def run() -> RunResult:
        return oma.run_tasks(
            tasks,
            team,
            stop_on_failure=stop_on_failure,
            on_event=on_event,
            resume=resume,
            cancel=cancel,
            cancel_grace_s=cancel_grace_s,
            budget=budget,
            checkpoint=checkpoint,
        )

    if not live:
        return run()

    def render() -> Group:
        tracker.observe_circuits(oma.get_status().endpoints)
        return tracker.render()

    with Live(get_renderable=render, console=console, refresh_per_second=8):
        return run()
