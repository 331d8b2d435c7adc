"""Progress of a run for people: a rich live table on a terminal, plain log lines otherwise.

:class:`ProgressTracker` folds a run's events into one row per task and one row per endpoint
(circuit, limiter, fall-backs), plus the budget spent; its :meth:`~ProgressTracker.render`
gives a :class:`~aegis_gov._progress_view.ProgressView`, which lays the tables out for the
terminal's width. :class:`PlainLog` writes a line per event, with full endpoint keys.
:func:`run_with_progress` runs a task graph with either display and returns the
:class:`RunResult`.

A little over 400 lines: the tracker's event folding and the plain log's one line per event
mirror each other and read best side by side; the layout lives in _progress_view.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Final

import attrs
from aegis_adapters import Usage
from aegis_breaker import CircuitState
from aegis_graph import Task
from rich.console import Console
from rich.live import Live

from aegis_gov._adaptive import AdaptiveStatus
from aegis_gov._agents import Team
from aegis_gov._budget import Budget, BudgetMeter, BudgetSpentError, Spent
from aegis_gov._checkpoint import CheckpointStore
from aegis_gov._checks import endpoint_spelling
from aegis_gov._display_names import endpoint_display_names, endpoint_from_key, printable
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
from aegis_gov._limits import Limits, resolve_limits
from aegis_gov._progress_view import BudgetLine, EndpointRow, ProgressView, TaskRow
from aegis_gov._results import RunResult, TaskResult
from aegis_gov._resume import ResumePlan
from aegis_gov._status import EndpointStatus

__all__ = [
    "PlainLog",
    "ProgressTracker",
    "TaskRow",
    "describe_event",
    "endpoints_of",
    "fallbacks_of",
    "printable",
    "run_with_progress",
]

_NOTE_WIDTH: Final = 60


class ProgressTracker:
    """Folds run events into task rows and endpoint states; thread-safe.

    Pass it (or a function that calls it) as ``on_event``. ``kept`` lists the results a
    resumed run reuses, shown as ``kept`` from the start. ``fallbacks`` names endpoint keys
    agents may fall back to (shown from the start), ``limits`` the declared
    :class:`~aegis_gov.Limits` and ``budget`` the run's :class:`~aegis_gov.Budget`.

    What a budget has spent is counted from events while the run goes: the requests (a
    task's ``attempts`` count every request it sent, tool rounds included), tokens and cost
    of the tasks that finished; a failed task's tokens and the calls still in flight are not
    in it yet. :meth:`finish` replaces it by the run's exact ``RunResult.spent``.
    """

    def __init__(
        self,
        tasks: Iterable[Task],
        endpoints: Mapping[str, str],
        *,
        kept: Mapping[str, TaskResult] | None = None,
        clock: Callable[[], float] = time.monotonic,
        fallbacks: Iterable[str] = (),
        limits: Mapping[str, Limits] | None = None,
        budget: Budget | None = None,
    ) -> None:
        """Start every task as pending; ``endpoints`` maps agent names to endpoint keys."""
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: dict[str, TaskRow] = {}
        for task in tasks:
            agent = task.agent or ""
            self._rows[task.id] = TaskRow(task.id, agent, endpoints.get(agent, ""))
        self._circuits: dict[str, CircuitState] = dict.fromkeys(
            sorted({*endpoints.values(), *fallbacks}), CircuitState.CLOSED
        )
        self._names = endpoint_display_names(self._circuits)
        self._failures: dict[str, int] = {}
        self._adaptive: dict[str, AdaptiveStatus] = {}
        # Keyed as the facade keys them, so a key written with another spelling of the URL
        # (credentials, case, a trailing slash) shows against its endpoint here too.
        self._limits = {endpoint_spelling(key): value for key, value in (limits or {}).items()}
        self._fell_from: Counter[str] = Counter()
        self._fell_to: Counter[str] = Counter()
        self._meter = BudgetMeter(budget) if budget is not None else None
        self._final_spent: Spent | None = None
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

    def _name(self, key: str) -> str:
        """The short name of *key*; an endpoint first seen now joins the table."""
        if key not in self._circuits:
            self._circuits[key] = CircuitState.CLOSED
            self._names = endpoint_display_names(self._circuits)
        return self._names[key]

    def _record(self, event: RunEvent) -> None:  # noqa: C901  # one branch per event type
        if isinstance(event, CircuitStateChanged):
            self._name(event.endpoint)
            self._circuits[event.endpoint] = event.new
            return
        row = self._rows.get(event.task_id)
        if row is None:
            return
        if isinstance(event, TaskStarted):
            row.state, row.attempts, row.started_at = "running", event.attempt, self._clock()
        elif isinstance(event, TaskRetrying):
            row.state, row.retries = "retrying", row.retries + 1
            row.streamed_chars, row.stream_tail = row.turn_start  # the turn streams again
            row.attempts = max(row.attempts, event.attempt - 1)
            row.note = f"retry in {event.delay_s:.2f}s: {event.error}"
        elif isinstance(event, TaskSucceeded):
            row.state = "kept" if event.reused else "done"
            row.attempts, row.duration_s = event.attempts, event.duration_s
            row.input_tokens = event.usage.input_tokens
            row.output_tokens = event.usage.output_tokens
            row.note = _first_line(event.output)
            if not event.reused:
                self._spend(row.endpoint, event.attempts, event.usage)
        elif isinstance(event, TaskFailed):
            row.state, row.attempts, row.duration_s = "failed", event.attempts, event.duration_s
            row.note = f"{event.error_type}: {event.error}"
            self._spend(row.endpoint, event.attempts, None)
        elif isinstance(event, TaskSkipped):
            row.state = "skipped"
            row.note = _skip_note(event.reason, event.blamed)
        elif isinstance(event, ToolCalled):  # the turn is over: a retry goes back to here
            row.turn_start = (row.streamed_chars, row.stream_tail)
            row.note = f"tool {event.tool}" + (f" failed: {event.error}" if event.error else "")
        elif isinstance(event, FellBack):  # the turn streams again on the next endpoint
            row.streamed_chars, row.stream_tail = row.turn_start
            row.note = f"fell back to {self._name(event.to_endpoint)}"
            row.endpoint = event.to_endpoint
            self._fell_from[event.from_endpoint] += 1
            self._fell_to[event.to_endpoint] += 1
        elif isinstance(event, TaskOutputDelta):
            row.state = "running"
            row.streamed_chars += len(event.text)
            # Keep only what the note can show: the end of the last line so far.
            row.stream_tail = (row.stream_tail + event.text)[-4 * _NOTE_WIDTH :]
            row.note = _last_line_end(row.stream_tail)

    def _spend(self, key: str, requests: int, usage: Usage | None) -> None:
        """Count a finished task's requests and tokens (and their cost) against the budget."""
        if self._meter is None:
            return
        for _ in range(requests):
            with contextlib.suppress(BudgetSpentError):  # past a limit: counted all the same
                self._meter.admit()
        if usage is not None:
            self._meter.record(endpoint_from_key(key), key, usage)

    def observe_circuits(self, endpoints: Mapping[str, EndpointStatus]) -> None:
        """Take circuit states, failure counts and adaptive limits from ``get_status()``."""
        with self._lock:
            for key, status in endpoints.items():
                if key in self._circuits:
                    self._circuits[key] = status.state
                    self._failures[key] = status.breaker.consecutive_failures
                    if status.adaptive is not None:
                        self._adaptive[key] = status.adaptive

    def finish(self, result: RunResult) -> None:
        """Show the run's exact spending (``result.spent``) from now on."""
        with self._lock:
            self._final_spent = result.spent

    def rows(self) -> list[TaskRow]:
        """A copy of every task's row, in declaration order."""
        with self._lock:
            return [attrs.evolve(row) for row in self._rows.values()]

    def circuits(self) -> dict[str, CircuitState]:
        """Each endpoint's last known circuit state."""
        with self._lock:
            return dict(self._circuits)

    def endpoint_rows(self) -> list[EndpointRow]:
        """Each endpoint's row: short name, circuit, limits, fall-backs."""
        with self._lock:
            return [
                EndpointRow(
                    key,
                    self._names[key],
                    state,
                    self._failures.get(key, 0),
                    self._adaptive.get(key),
                    _declared(self._limits, key),
                    self._fell_from[key],
                    self._fell_to[key],
                )
                for key, state in self._circuits.items()
            ]

    def budget_line(self) -> BudgetLine | None:
        """What the budget has spent so far, or None without a budget."""
        with self._lock:
            if self._meter is None:
                return None
            if self._final_spent is not None:
                return BudgetLine(self._meter.budget, self._final_spent, final=True)
            return BudgetLine(self._meter.budget, self._meter.spent())

    def render(self) -> ProgressView:
        """What the live display shows (tasks, endpoints, totals), fitted to the width."""
        return ProgressView(self.rows(), self.endpoint_rows(), self._clock(), self.budget_line())


def _declared(limits: Mapping[str, Limits], key: str) -> Limits | None:
    return resolve_limits(limits, endpoint_from_key(key), key) if limits else None


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


def fallbacks_of(team: Team, tasks: Iterable[Task]) -> list[str]:
    """The endpoint keys the agents that ``tasks`` use may fall back to."""
    used = {task.agent for task in tasks}
    return [
        endpoint_key(adapter)
        for name, agent in team.items()
        if name in used
        for adapter in agent.fallbacks
    ]


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
    limits: Mapping[str, Limits] | None = None,
) -> RunResult:
    """Run ``tasks`` with ``team``, showing progress on ``console``.

    ``live=True`` shows a rich live table (task states, retries, tokens; each endpoint's
    circuit, limiter and fall-backs; the budget spent), fitted to the terminal's width;
    otherwise one plain line per event is written to the console's file. ``limits`` are
    the facade's declared :class:`~aegis_gov.Limits`, for the table to show.
    ``extra_handler`` also receives every event. ``cancel`` and ``cancel_grace_s`` are
    passed to :meth:`~aegis_gov.OpenMultiAgent.run_tasks`: once ``cancel`` is set, pending
    tasks are skipped and calls in flight get ``cancel_grace_s`` seconds to finish.

    Raises:
        RunCancelledError: on :class:`KeyboardInterrupt` during the run; its ``result``
            holds what finished.
    """
    tasks = list(tasks)
    tracker = ProgressTracker(
        tasks,
        endpoints_of(oma, team, tasks),
        kept=kept,
        fallbacks=fallbacks_of(team, tasks),
        limits=limits,
        budget=budget,
    )
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

    def render() -> ProgressView:
        tracker.observe_circuits(oma.get_status().endpoints)
        return tracker.render()

    with Live(get_renderable=render, console=console, refresh_per_second=8):
        result = run()
        tracker.finish(result)  # the last frame shows the run's exact spending
        return result
