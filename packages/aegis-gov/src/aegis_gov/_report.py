"""What a run report shows, worked out from a :class:`RunResult` (and its timeline, if any).

:func:`build_report` turns a result into plain values: one :class:`TaskLine` per task with the
spans of its timeline (blocked on upstream, waiting for a slot, running, retrying, parked,
running on a fallback), one :class:`EndpointLine` per endpoint with its breaker's states over
the run, and tokens and cost per agent and endpoint. ``_report_html`` draws them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, Literal

import attrs
from aegis_adapters import Usage
from aegis_graph import TaskState

from aegis_gov._budget import Price
from aegis_gov._display_names import endpoint_display_names, endpoint_from_key
from aegis_gov._results import RunResult, TaskResult
from aegis_gov._timeline import Timeline, TimelineEntry

__all__ = [
    "UNRECORDED_ENDPOINT",
    "EndpointLine",
    "Report",
    "Span",
    "SpanKind",
    "TaskLine",
    "UsageLine",
    "build_report",
    "price_of",
]

SpanKind = Literal["blocked", "waiting", "running", "retrying", "parked", "fallback"]

UNRECORDED_ENDPOINT: Final = "(not recorded)"
"""The endpoint a failed task's tokens are counted under when no fall-back says which."""

_END_KINDS: Final = frozenset({"succeeded", "reused", "failed", "skipped"})
_WAIT_KINDS: Final = frozenset({"retrying", "parked"})


@attrs.frozen
class Span:
    """A stretch of one task's (or breaker's) time: ``kind`` from ``start_s`` to ``end_s``."""

    start_s: float
    end_s: float
    kind: str


@attrs.frozen
class TaskLine:
    """One task as the report shows it.

    ``ready_s`` is when its last dependency finished (None when the graph is not known),
    ``waited_s`` how long it then waited for a free slot, ``retry_wait_s`` and ``parked_s``
    its waits between attempts and while turned away. Times are seconds from the run's start.
    """

    task_id: str
    state: str  # done, failed, skipped, kept or unfinished
    result: TaskResult | None
    spans: tuple[Span, ...] = ()
    ready_s: float | None = None
    started_s: float | None = None
    ended_s: float | None = None
    waited_s: float | None = None
    retry_wait_s: float = 0.0
    parked_s: float = 0.0
    fell_back_to: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    endpoint: str = ""


@attrs.frozen
class EndpointLine:
    """One endpoint: its display name and its breaker's states over the run."""

    key: str
    name: str
    spans: tuple[Span, ...]
    changes: int


@attrs.frozen
class UsageLine:
    """Tokens (and cost, when priced) of one agent or endpoint."""

    name: str
    tasks: int
    usage: Usage
    cost_usd: float | None


@attrs.frozen
class Report:
    """Everything a run report shows."""

    result: RunResult
    tasks: tuple[TaskLine, ...]
    endpoints: tuple[EndpointLine, ...]
    agents_usage: tuple[UsageLine, ...]
    endpoints_usage: tuple[UsageLine, ...]
    duration_s: float
    timeline: Timeline | None
    dependencies: Mapping[str, tuple[str, ...]]
    endpoint_names: Mapping[str, str]
    priced: bool

    @property
    def has_graph(self) -> bool:
        """Whether the task graph (each task's dependencies) is known."""
        return bool(self.dependencies)


def price_of(key: str, prices: Mapping[str, Price]) -> Price | None:
    """The price of endpoint *key*: by key, ``provider:model`` or model (as a budget does)."""
    if not prices:
        return None
    endpoint = endpoint_from_key(key)
    for name in (key, f"{endpoint.provider}:{endpoint.model}", endpoint.model):
        if name in prices:
            return prices[name]
    return None


def build_report(
    result: RunResult,
    *,
    dependencies: Mapping[str, Sequence[str]] | None = None,
    prices: Mapping[str, Price] | None = None,
) -> Report:
    """The report of *result*; *dependencies* and *prices* fill in what its timeline lacks."""
    timeline = result.timeline
    graph: dict[str, tuple[str, ...]] = {}
    if timeline is not None:
        graph.update(timeline.dependencies)
    if dependencies:
        graph.update({task_id: tuple(deps) for task_id, deps in dependencies.items()})
    price_table: dict[str, Price] = dict(timeline.prices) if timeline is not None else {}
    price_table.update(prices or {})
    entries = timeline.entries if timeline is not None else ()
    by_task: dict[str, list[TimelineEntry]] = {}
    circuits: dict[str, list[TimelineEntry]] = {}
    for entry in entries:
        (circuits if entry.kind == "circuit" else by_task).setdefault(entry.subject, []).append(
            entry
        )
    ends = {
        subject: entry.at_s
        for subject, items in by_task.items()
        for entry in items
        if entry.kind in _END_KINDS
    }
    duration = (
        timeline.duration_s
        if timeline is not None
        else max((r.duration_s for r in result.values()), default=0.0)
    )
    lines = [
        _task_line(
            task_id,
            task,
            by_task.get(task_id, []),
            graph=graph,
            ends=ends,
            duration=duration,
            recorded=timeline is not None,
        )
        for task_id, task in result.items()
    ]
    lines += [
        _task_line(
            task_id,
            None,
            by_task.get(task_id, []),
            graph=graph,
            ends=ends,
            duration=duration,
            recorded=timeline is not None,
        )
        for task_id in result.unfinished
    ]
    keys = _endpoint_keys(lines, circuits)
    names = endpoint_display_names(keys)
    endpoints = tuple(
        _endpoint_line(key, names[key], circuits.get(key, []), duration) for key in sorted(keys)
    )
    return Report(
        result=result,
        tasks=tuple(lines),
        endpoints=endpoints,
        agents_usage=_usage_by(lines, _agent, price_table),
        endpoints_usage=_usage_by(lines, lambda line: line.endpoint, price_table),
        duration_s=duration,
        timeline=timeline,
        dependencies=graph,
        endpoint_names=names,
        priced=bool(price_table),
    )


def _agent(line: TaskLine) -> str:
    return (line.result.agent if line.result is not None else None) or "(no agent)"


def _state(task: TaskResult | None, items: Sequence[TimelineEntry]) -> str:
    if task is None:
        return "unfinished"
    if task.status is TaskState.DONE and any(e.kind == "reused" for e in items):
        return "kept"
    return task.status.value


def _task_line(
    task_id: str,
    task: TaskResult | None,
    items: list[TimelineEntry],
    *,
    graph: Mapping[str, tuple[str, ...]],
    ends: Mapping[str, float],
    duration: float,
    recorded: bool,
) -> TaskLine:
    deps = graph.get(task_id)
    ready = None
    if deps is not None:
        # A dependency kept from an earlier run without an event was done from the start.
        ready = max((ends.get(dep, 0.0) for dep in deps), default=0.0)
    fell_back = tuple(e.endpoint for e in items if e.kind == "fell_back")
    endpoint = ""
    if task is not None:
        endpoint = task.endpoint or (fell_back[-1] if fell_back else "")
        if not endpoint and task.status is not TaskState.SKIPPED:
            endpoint = UNRECORDED_ENDPOINT
    state = _state(task, items)
    if recorded and not items and task is not None and task.status is TaskState.DONE:
        state = "kept"  # kept by a resume without a call: it has no events in this run
    line = TaskLine(
        task_id=task_id,
        state=state,
        result=task,
        ready_s=ready,
        dependencies=deps or (),
        fell_back_to=fell_back,
        endpoint=endpoint,
    )
    if not recorded:
        return line
    started = next((e.at_s for e in items if e.kind == "started"), None)
    ended = next((e.at_s for e in items if e.kind in _END_KINDS), None)
    if started is None:  # skipped, kept or never reached: it waited on upstream all along
        until = ended if ended is not None else duration
        blocked = until > 0 and line.state != "kept"
        return attrs.evolve(
            line, spans=(Span(0.0, until, "blocked"),) if blocked else (), ended_s=ended
        )
    spans: list[Span] = []
    if ready is not None and ready > 0:
        spans.append(Span(0.0, min(ready, started), "blocked"))
    waited = None if ready is None else max(0.0, started - ready)
    if waited:
        spans.append(Span(started - waited, started, "waiting"))
    waits = _attempt_spans(items, started, ended if ended is not None else duration, spans)
    return attrs.evolve(
        line,
        spans=tuple(spans),
        started_s=started,
        ended_s=ended,
        waited_s=waited,
        retry_wait_s=waits["retrying"],
        parked_s=waits["parked"],
    )


def _attempt_spans(
    items: Iterable[TimelineEntry], started: float, finish: float, spans: list[Span]
) -> dict[str, float]:
    """Add a started task's spans up to *finish* to *spans*; its waits by kind."""
    cursor, kind = started, "running"
    waits = {"retrying": 0.0, "parked": 0.0}
    for entry in items:
        if entry.kind not in _WAIT_KINDS and entry.kind != "fell_back":
            continue
        if entry.at_s > cursor:
            spans.append(Span(cursor, entry.at_s, kind))
        if entry.kind == "fell_back":
            cursor, kind = max(cursor, entry.at_s), "fallback"
            continue
        until = min(entry.at_s + entry.delay_s, finish)
        if until > entry.at_s:
            spans.append(Span(entry.at_s, until, entry.kind))
            waits[entry.kind] += until - entry.at_s
        cursor = max(cursor, until)
    if finish > cursor:
        spans.append(Span(cursor, finish, kind))
    return waits


def _endpoint_keys(lines: Iterable[TaskLine], circuits: Mapping[str, object]) -> set[str]:
    keys = set(circuits)
    for line in lines:
        keys.update(line.fell_back_to)
        if line.endpoint and line.endpoint != UNRECORDED_ENDPOINT:
            keys.add(line.endpoint)
    return keys


def _endpoint_line(
    key: str, name: str, changes: Sequence[TimelineEntry], duration: float
) -> EndpointLine:
    state = changes[0].previous_state or "closed" if changes else "closed"
    spans: list[Span] = []
    cursor = 0.0
    for change in changes:
        if change.at_s > cursor:
            spans.append(Span(cursor, change.at_s, state))
        cursor, state = max(cursor, change.at_s), change.state or state
    if duration > cursor or not spans:
        spans.append(Span(cursor, max(duration, cursor), state))
    return EndpointLine(key=key, name=name, spans=tuple(spans), changes=len(changes))


def _usage_by(
    lines: Iterable[TaskLine], group: Callable[[TaskLine], str], prices: Mapping[str, Price]
) -> tuple[UsageLine, ...]:
    """Tokens and cost of the tasks that ran, summed per *group* (agent or endpoint)."""
    totals: dict[str, tuple[int, Usage, float | None]] = {}
    for line in lines:
        task = line.result
        if task is None or task.status is TaskState.SKIPPED:
            continue
        name = group(line) or UNRECORDED_ENDPOINT
        price = price_of(line.endpoint, prices) if line.endpoint else None
        count, usage, cost = totals.get(name, (0, Usage(), None))
        if price is not None:
            cost = (cost or 0.0) + price.cost_usd(task.usage)
        totals[name] = (count + 1, usage + task.usage, cost)
    return tuple(
        UsageLine(name=name, tasks=count, usage=usage, cost_usd=cost)
        for name, (count, usage, cost) in sorted(totals.items())
    )
