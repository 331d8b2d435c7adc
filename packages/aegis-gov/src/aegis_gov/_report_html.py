"""A run report as one self-contained HTML page: inline CSS and SVG, no script, no fetch.

Every piece of text from a run (task ids, agent names, outputs, errors, endpoint names)
goes through :func:`_e` (``html.escape`` with quotes) before it reaches the page, and the
page forbids scripts and every network fetch with its Content-Security-Policy, so a task id
or a model's output cannot inject markup or make the page call home.

Over 400 lines on purpose: the page's sections (the at-a-glance box, graph, timeline,
breakers, task and usage tables) share one palette and one time axis and read best together;
the numbers behind them are worked out in ``_report``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from aegis_graph import GraphError, SkipReason, Task, TaskState

from aegis_gov._budget import Price
from aegis_gov._display_names import printable
from aegis_gov._graph_svg import GraphvizError, GraphvizNotFoundError, render_graph
from aegis_gov._report import (
    UNRECORDED_ENDPOINT,
    Report,
    Span,
    TaskLine,
    UsageLine,
    build_report,
)
from aegis_gov._results import RunResult

__all__ = [
    "MAX_TIMELINE_ROWS",
    "graph_states",
    "graph_tasks",
    "render_html",
    "render_page",
    "render_report",
]

MAX_TIMELINE_ROWS: Final = 1000
"""The most task rows the timeline draws (the tables still list every task)."""
_MAX_GRAPH_TASKS: Final = 300
_MAX_TABLE_ROWS: Final = 5000
_PREVIEW_CHARS: Final = 160

_STATE_COLOURS: Final = {
    "done": "#2e7d32",
    "failed": "#c62828",
    "skipped": "#9e9e9e",
    "kept": "#5c6bc0",
    "unfinished": "#ef6c00",
}
_SPAN_COLOURS: Final = {
    "blocked": "url(#hatch)",
    "waiting": "#f4b400",
    "running": "#1e88e5",
    "retrying": "#fb8c00",
    "parked": "#8e24aa",
    "fallback": "#00897b",
}
_SPAN_WORDS: Final = {
    "blocked": "waiting on upstream",
    "waiting": "ready, waiting for a slot",
    "running": "running",
    "retrying": "waiting to retry",
    "parked": "parked (turned away by breaker or limit)",
    "fallback": "running on a fallback",
}
_CIRCUIT_COLOURS: Final = {"closed": "#66bb6a", "open": "#e53935", "half_open": "#ffb300"}

_CSS: Final = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; margin: 0; padding: 24px 32px 48px; color: #202124; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
section { background: #fff; border: 1px solid #e0e0e0; border-radius: 8px; padding: 4px 18px 14px;
  margin-top: 16px; }
.meta { color: #5f6368; margin: 0; }
.chips span { display: inline-block; border-radius: 12px; padding: 1px 10px; margin: 8px 6px 0 0;
  color: #fff; font-weight: 600; }
.glance { border-left: 6px solid #c62828; }
.glance.ok { border-left-color: #2e7d32; }
.glance ul { margin: 6px 0; padding-left: 20px; }
.note { color: #5f6368; font-style: italic; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f5f5f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.state { font-weight: 600; white-space: nowrap; }
.s-done { color: #2e7d32; } .s-failed { color: #c62828; } .s-skipped { color: #757575; }
.s-kept { color: #5c6bc0; } .s-unfinished { color: #ef6c00; }
tr.failed td { background: #fdecea; } tr.skipped td { background: #f5f5f5; }
.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  overflow-wrap: anywhere; }
b, td, li, .id, .preview, svg text, svg tspan { unicode-bidi: isolate; }
.preview { color: #5f6368; overflow-wrap: anywhere; max-width: 420px; }
.legend span { display: inline-block; margin: 2px 14px 2px 0; white-space: nowrap; }
.legend i { display: inline-block; width: 14px; height: 10px; margin-right: 5px;
  vertical-align: baseline; border: 1px solid rgba(0,0,0,.15); }
.graph svg { max-width: 100%; height: auto; }
ul.graph-list { list-style: none; padding-left: 0; } ul.graph-list li { margin: 2px 0; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  fill: #202124; }
svg.chart text.tick { fill: #757575; font-size: 11px; }
svg.chart text.why { fill: #5f6368; }
footer { color: #9e9e9e; margin-top: 24px; font-size: 12px; }
"""

_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

# Chart geometry (SVG user units; the SVG scales to the page's width).
_LABEL_W: Final = 180
_PLOT_W: Final = 600
_NOTE_W: Final = 330
_SHOWN_WAIT_S: Final = 0.005  # shorter waits are not worth a word in the timeline
_ROW_H: Final = 22
_BAR_H: Final = 14
_AXIS_H: Final = 26

_XML_PROLOGUE: Final = re.compile(r"\A\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", re.IGNORECASE)
_COMMENT: Final = re.compile(r"<!--.*?-->", re.DOTALL)


_ESCAPES: Final = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;"}
_ESCAPES[ord("'")] = "&#x27;"


# Characters that rearrange or hide the text around them: bidi embeddings, overrides,
# isolates and marks, zero-width characters, line and paragraph separators.
_INVISIBLE: Final = re.compile("[\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _e(text: object) -> str:
    r"""*text* escaped for HTML text and quoted attributes (control characters shown).

    As ``html.escape(..., quote=True)``, without importing ``html`` (and its entity table)
    with the package. Control, bidi and zero-width characters are shown as escapes
    (``\u202e``), so a task id cannot reverse the page's words around it or pass for another.
    """
    shown = printable(str(text), one_line=True)
    if _INVISIBLE.search(shown):
        shown = _INVISIBLE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), shown)
    return shown.translate(_ESCAPES)


def _seconds(value: float | None) -> str:
    if value is None:
        return "&ndash;"
    if value < 10:  # noqa: PLR2004  # short times get more precision
        return f"{value:.2f} s"
    if value < 120:  # noqa: PLR2004
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {value % 60:.0f} s"


def _cost(value: float | None) -> str:
    if value is None:
        return "&ndash;"
    if not math.isfinite(value):  # a doctored price table: more than a float holds
        return "over $1.8e308"
    return f"${value:.4f}" if value < 1e6 else f"${value:.4g}"  # noqa: PLR2004


def _preview(text: str | None) -> str:
    shown = " ".join((text or "").split())
    return shown if len(shown) <= _PREVIEW_CHARS else shown[: _PREVIEW_CHARS - 1] + "…"


def render_report(
    result: RunResult,
    *,
    dependencies: Mapping[str, Sequence[str]] | None = None,
    prices: Mapping[str, Price] | None = None,
) -> str:
    """The run report of *result* as one self-contained HTML page (what ``aegis report`` writes).

    Shows which tasks failed and what was skipped because of each, the task graph coloured
    by state (drawn by Graphviz's ``dot``; a list when it is not installed), a timeline of
    every task and each endpoint's breaker states (when the result carries a
    :class:`~aegis_gov.Timeline`; the page says so when it does not), and tokens and cost
    per agent and endpoint. *dependencies* (task id -> ids it depends on) and *prices* (as
    ``Budget.prices``) fill in what the result's timeline does not hold. Every text from the
    run is escaped; the page runs no script and fetches nothing.
    """
    return render_page(result, dependencies=dependencies, prices=prices)


def render_page(
    result: RunResult,
    *,
    dependencies: Mapping[str, Sequence[str]] | None = None,
    prices: Mapping[str, Price] | None = None,
    run_note: str = "",
    timeline_note: str = "",
) -> str:
    """:func:`render_report`, with what ``aegis report`` knows beyond the result.

    *run_note* says how the run ended when the result cannot (killed, still running);
    *timeline_note* why it has no timeline (killed, or the recorded one was unreadable).
    """
    report = build_report(result, dependencies=dependencies, prices=prices)
    notes = {"run_note": run_note, "timeline_note": timeline_note}
    try:
        tasks = graph_tasks(report)
    except GraphError as exc:  # a doctored file: a task that depends on itself, say
        note = f"The recorded graph is not valid, so it is listed instead: {exc}"
        return render_html(report, graph_svg=None, graph_note=note, **notes)
    if tasks is None:
        if not report.has_graph:
            note = (
                "The task graph (each task's dependencies) was not recorded with this "
                "result: the tasks are listed with their states. (aegis report --pipeline "
                "FILE gives it.)"
            )
        elif len(report.tasks) > _MAX_GRAPH_TASKS:
            note = f"The graph has more than {_MAX_GRAPH_TASKS} tasks: listed, not drawn."
        else:
            note = "The recorded graph does not name every task of the result: listed."
        return render_html(report, graph_svg=None, graph_note=note, **notes)
    titles = {
        line.task_id: line.result.agent
        for line in report.tasks
        if line.result is not None and line.result.agent
    }
    try:
        svg = render_graph(tasks, states=graph_states(report), titles=titles).decode("utf-8")
    except GraphvizNotFoundError as exc:
        note = f"Graphviz is not installed, so the graph is listed instead of drawn: {exc}"
        return render_html(report, graph_svg=None, graph_note=note, **notes)
    except (GraphvizError, GraphError) as exc:  # GraphError: a cycle in a doctored file
        note = f"The graph could not be drawn, so it is listed instead: {exc}"
        return render_html(report, graph_svg=None, graph_note=note, **notes)
    return render_html(report, graph_svg=svg, **notes)


def render_html(
    report: Report,
    *,
    graph_svg: str | None,
    graph_note: str = "",
    run_note: str = "",
    timeline_note: str = "",
) -> str:
    """The report page; *graph_svg* is Graphviz's drawing (None: the graph as a list)."""
    result = report.result
    title = f"aegis run report: {result.run_id or result.team or 'run'}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        _header(report),
        _glance(report, run_note),
        _graph(report, graph_svg, graph_note),
        _timeline(report, timeline_note),
        _breakers(report),
        _task_table(report),
        _usage(report),
        (
            f"<footer>Written by aegis-gov {_e(_version())}. No network is needed to read "
            "this page.</footer>"
        ),
        "</body></html>",
    ]
    page = "\n".join(part for part in parts if part) + "\n"
    # A lone surrogate (from a model, or a resumed file) cannot be written as UTF-8: its escape.
    return page.encode("utf-8", "backslashreplace").decode("utf-8")


def _version() -> str:
    import importlib.metadata  # noqa: PLC0415  # slow to import; only a report needs it

    try:
        return importlib.metadata.version("aegis-gov")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _header(report: Report) -> str:
    result = report.result
    counts: dict[str, int] = {}
    for line in report.tasks:
        counts[line.state] = counts.get(line.state, 0) + 1
    chips = "".join(
        f'<span data-count="{_e(state)}" style="background:{_colour(state)}">'
        f"{count} {_e(state)}</span>"
        for state, count in counts.items()
    )
    usage = result.usage
    bits = [f"team <b>{_e(result.team or '(unnamed)')}</b>"]
    if result.run_id:
        bits.append(f"run <b class='id'>{_e(result.run_id)}</b>")
    if report.timeline is not None:
        bits.append(f"{_seconds(report.duration_s)} from first to last event")
    bits.append(f"{usage.input_tokens:,} tokens in / {usage.output_tokens:,} out")
    if result.spent is not None and result.spent.cost_usd is not None:
        bits.append(f"spent {_cost(result.spent.cost_usd)}")
    if result.cancelled:
        bits.append("<b>cancelled</b>")
    return (
        f"<header><h1>Run report</h1><p class='meta'>{' · '.join(bits)}</p>"
        f"<div class='chips'>{chips}</div></header>"
    )


_MAX_GLANCE_ITEMS: Final = 50  # failed tasks, and skipped tasks per reason, in the glance
_MAX_VICTIMS: Final = 20  # skipped tasks named after each failed one


def _outcome(report: Report, skipped: Sequence[TaskLine], run_note: str) -> str:
    """How the run ended, in words, when it did not simply run every task."""
    result = report.result
    unfinished = sum(line.state == "unfinished" for line in report.tasks)
    reasons = {s.result.skip_reason for s in skipped if s.result is not None}
    failed = [line.task_id for line in report.tasks if line.state == "failed"]
    words = []
    if result.cancelled or SkipReason.CANCELLED in reasons:
        words.append("The run was cancelled: what had not finished was skipped.")
    if SkipReason.STOPPED in reasons:
        names = ", ".join(_e(task_id) for task_id in failed[:3]) or "a task"
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""  # noqa: PLR2004
        words.append(
            f"The run stopped after <span class='id'>{names}</span>{more} failed "
            "(stop_on_failure): every task not yet started was skipped."
        )
    if SkipReason.BUDGET_SPENT in reasons:
        words.append("The run's budget ran out: the tasks not yet started were skipped.")
    if unfinished:
        words.append(
            f"The run did not finish: {unfinished} task(s) never finished"
            + (
                f" ({_e(run_note)})."
                if run_note
                else " (it was still running, or was killed, when this was saved)."
            )
        )
    return "".join(f"<p class='outcome'>{w}</p>" for w in words)


def _dependents(report: Report) -> dict[str, list[str]]:
    """Task id -> the ids of the tasks that depend on it directly."""
    out: dict[str, list[str]] = {}
    for task_id, deps in report.dependencies.items():
        for dep in dict.fromkeys(deps):
            if dep != task_id:
                out.setdefault(dep, []).append(task_id)
    return out


def _downstream(task_id: str, dependents: Mapping[str, Sequence[str]]) -> set[str]:
    """Every task that depends on *task_id*, directly or through others."""
    seen: set[str] = set()
    todo = list(dependents.get(task_id, ()))
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(dependents.get(current, ()))
    return seen


def _glance(report: Report, run_note: str = "") -> str:
    """How the run ended, which tasks failed, what was skipped because of each (and why)."""
    failed = [line for line in report.tasks if line.state == "failed"]
    skipped = [line for line in report.tasks if line.state == "skipped"]
    outcome = _outcome(report, skipped, run_note)
    if not failed and not skipped:
        words = "" if outcome else "<p>Every task is done.</p>"
        return (
            f"<section id='glance' class='glance ok'><h2>At a glance</h2>{outcome}{words}</section>"
        )
    blamed: dict[str, list[TaskLine]] = {}
    for s in skipped:
        if s.result is not None and s.result.blamed is not None:
            blamed.setdefault(s.result.blamed, []).append(s)
    by_id = {line.task_id: line for line in report.tasks}
    dependents = _dependents(report)
    named: set[str] = set()
    items = []
    for line in failed[:_MAX_GLANCE_ITEMS]:
        victims = {v.task_id: v for v in blamed.get(line.task_id, ())}
        below = _downstream(line.task_id, dependents) if report.has_graph else set()
        for task_id in below:
            victim = by_id.get(task_id)
            if victim is not None and victim.state in {"skipped", "unfinished"}:
                victims.setdefault(task_id, victim)
        named.update(victims)
        items.append(
            _failed_item(
                line, list(victims.values()), has_graph=report.has_graph, has_dependents=bool(below)
            )
        )
    if len(failed) > _MAX_GLANCE_ITEMS:
        items.append(
            f"<li>… and {len(failed) - _MAX_GLANCE_ITEMS} more failed tasks (see the table).</li>"
        )
    items.extend(_other_skips(skipped, named))
    return (
        f"<section id='glance' class='glance'><h2>At a glance</h2>{outcome}<ul>"
        + "".join(items)
        + "</ul></section>"
    )


def _other_skips(skipped: Sequence[TaskLine], named: set[str]) -> list[str]:
    """The skipped tasks no failure accounts for, one item per reason."""
    items = []
    others: dict[str, list[TaskLine]] = {}
    for s in skipped:
        if s.task_id not in named:
            others.setdefault(_reason(s), []).append(s)
    for reason, group in others.items():
        shown = ", ".join(
            f"<b class='id s-skipped'>{_e(s.task_id)}</b>" for s in group[:_MAX_GLANCE_ITEMS]
        )
        more = (
            f" and {len(group) - _MAX_GLANCE_ITEMS} more" if len(group) > _MAX_GLANCE_ITEMS else ""
        )
        items.append(
            f"<li data-reason='{_e(reason)}'>{len(group)} skipped ({_e(reason)}): "
            f"{shown}{more}</li>"
        )
    return items


def _failed_item(
    line: TaskLine, victims: Sequence[TaskLine], *, has_graph: bool, has_dependents: bool
) -> str:
    task = line.result
    error = f"{task.error_type}: {task.error}" if task is not None else ""
    if victims:
        shown = ", ".join(
            f"<span class='id' data-victim='{_e(v.task_id)}'>{_e(v.task_id)}</span>"
            + (f" ({_e(_reason(v))}, " if _skip_reason(v) != "upstream_failed" else " (")
            + f"waited {_seconds(_waited(v))})"
            for v in victims[:_MAX_VICTIMS]
        )
        more = f" and {len(victims) - _MAX_VICTIMS} more" if len(victims) > _MAX_VICTIMS else ""
        because = f"; skipped because of it: {shown}{more}"
    elif has_graph and not has_dependents:
        because = "; nothing depended on it"
    elif has_graph:
        because = "; no task was skipped because of it"
    else:
        because = "; no skipped task names it (the task graph was not recorded)"
    attempts = task.attempts if task is not None else 0
    after = f" after {attempts} attempt(s)" if attempts else ""
    return (
        f"<li data-failed='{_e(line.task_id)}'><b class='id s-failed'>{_e(line.task_id)}"
        f"</b> failed{after}, {_seconds(task.duration_s if task else None)}: "
        f"<span class='preview'>{_e(_preview(error))}</span>{because}</li>"
    )


def _skip_reason(line: TaskLine) -> str:
    task = line.result
    if task is None:
        return "unfinished"
    return task.skip_reason.value if task.skip_reason is not None else ""


def _waited(line: TaskLine) -> float | None:
    """How long a task waited before it ran (or, if skipped, before it was given up on)."""
    if line.state == "skipped":
        return line.ended_s
    if line.waited_s is None:
        return None
    return line.waited_s + line.retry_wait_s + line.parked_s


def _reason(line: TaskLine) -> str:
    task = line.result
    if task is None:
        return "never finished"
    if task.skip_reason is None:
        return "skipped"
    if task.blamed:
        return f"{task.skip_reason.value}: {task.blamed} failed"
    return task.skip_reason.value


def _graph(report: Report, graph_svg: str | None, note: str) -> str:
    head = "<section id='graph' class='graph'><h2>Task graph</h2>"
    if graph_svg is not None:
        return f"{head}{_inline_svg(graph_svg)}</section>"
    why = f"<p class='note'>{_e(note)}</p>" if note else ""
    items = []
    shown = _shown(report.tasks, _MAX_GRAPH_TASKS)
    for line in shown:
        after = (
            " ← " + ", ".join(f"<span class='id'>{_e(d)}</span>" for d in line.dependencies)
            if line.dependencies
            else ""
        )
        items.append(
            f"<li data-task='{_e(line.task_id)}' data-state='{_e(line.state)}'>"
            f"<span class='state s-{_e(line.state)}'>{_state_mark(line.state)}</span> "
            f"<span class='id'>{_e(line.task_id)}</span>{after}</li>"
        )
    tail = _left_out(len(shown), len(report.tasks), "are listed")
    return f"{head}{why}<ul class='graph-list'>{''.join(items)}</ul>{tail}</section>"


def _state_mark(state: str) -> str:
    return {"done": "✓", "failed": "✗", "skipped": "⤼", "kept": "↺"}.get(state, "…")


def _inline_svg(svg: str) -> str:
    """Graphviz's SVG document, fit to sit inside the page (no prologue or comments)."""
    return _COMMENT.sub("", _XML_PROLOGUE.sub("", svg, count=1))


def graph_tasks(report: Report) -> list[Task] | None:
    """The report's tasks as a graph ``render_graph`` can draw (None: the graph is unknown)."""
    if not report.has_graph or len(report.tasks) > _MAX_GRAPH_TASKS:
        return None
    known = {line.task_id for line in report.tasks}
    tasks = []
    for line in report.tasks:
        if line.task_id not in report.dependencies:
            return None
        deps = [d for d in line.dependencies if d in known]
        tasks.append(Task(id=line.task_id, depends_on=deps))
    return tasks


def graph_states(report: Report) -> dict[str, TaskState]:
    """Each task's state as the graph colours it (kept counts as done)."""
    names = {"done": TaskState.DONE, "kept": TaskState.DONE, "failed": TaskState.FAILED}
    names["skipped"] = TaskState.SKIPPED
    return {line.task_id: names.get(line.state, TaskState.PENDING) for line in report.tasks}


def _legend(items: Iterable[tuple[str, str]]) -> str:
    shown = "".join(
        f"<span><i style='background:{colour}'></i>{_e(word)}</span>" for colour, word in items
    )
    return f"<p class='legend'>{shown}</p>"


def _colour(state: str) -> str:
    """The colour of a task state (a running or pending task, from the library, is grey)."""
    return _STATE_COLOURS.get(state, "#757575")


_MIN_AXIS_S: Final = 1e-6  # the recorder's resolution: a shorter run has no ticks to space


def _ticks(duration: float) -> list[float]:
    if duration < _MIN_AXIS_S:
        return [0.0]
    raw = duration / 6
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    count = int(duration / step + 1e-9)
    return [i * step for i in range(count + 1)]


def _axis(duration: float, top: float, height: float) -> list[str]:
    out = []
    for tick in _ticks(duration):
        x = _LABEL_W + _x(tick, duration)
        out.append(
            f"<line x1='{x:.1f}' y1='{top:.1f}' x2='{x:.1f}' y2='{top + height:.1f}' "
            "stroke='#eeeeee'/>"
            f"<text class='tick' x='{x:.1f}' y='{top - 8:.1f}' text-anchor='middle'>"
            f"{tick:g} s</text>"
        )
    return out


def _x(seconds: float, duration: float) -> float:
    return 0.0 if duration <= 0 else max(0.0, min(_PLOT_W, seconds / duration * _PLOT_W))


_MIN_BAR_W: Final = 1.5  # the narrowest bar drawn, in plot units


def _bars(spans: Sequence[Span], duration: float, y: float, colours: dict[str, str]) -> str:
    """One row's bars; a span that falls within the bar before it is merged into that bar.

    So a row holds at most ``_PLOT_W / _MIN_BAR_W`` bars, however many retries it had.
    """
    bars: list[tuple[float, float, Span, int]] = []  # x1, x2, first span, spans merged in
    for span in spans:
        x1, x2 = _x(span.start_s, duration), _x(span.end_s, duration)
        if bars:
            last_x1, last_x2, first, merged = bars[-1]
            drawn_to = last_x1 + max(last_x2 - last_x1, _MIN_BAR_W)
            if x2 <= drawn_to:  # hidden under the bar before: count it there
                bars[-1] = (last_x1, last_x2, first, merged + 1)
                continue
            x1 = max(x1, drawn_to)
        bars.append((x1, x2, span, 0))
    return "".join(_bar(bar, y, colours) for bar in bars)


def _bar(bar: tuple[float, float, Span, int], y: float, colours: dict[str, str]) -> str:
    x1, x2, span, merged = bar
    words = _SPAN_WORDS.get(span.kind, span.kind.replace("_", "-"))
    more = f", and {merged} shorter span(s) drawn under this bar" if merged else ""
    return (
        f"<rect class='span {_e(span.kind)}' data-kind='{_e(span.kind)}' "
        f"x='{_LABEL_W + x1:.1f}' y='{y:.1f}' width='{max(x2 - x1, _MIN_BAR_W):.1f}' "
        f"height='{_BAR_H}' rx='2' fill='{colours.get(span.kind, '#bdbdbd')}'>"
        f"<title>{_e(words)}: {span.start_s:.2f}&ndash;{span.end_s:.2f} s "
        f"({span.end_s - span.start_s:.2f} s){more}</title></rect>"
    )


_FIRST_SHOWN: Final = {"failed": 0, "skipped": 1, "unfinished": 2}


def _shown(lines: Sequence[TaskLine], cap: int) -> list[TaskLine]:
    """At most *cap* of *lines*, in their order: failed, skipped and unfinished ones first."""
    if len(lines) <= cap:
        return list(lines)
    order = sorted(range(len(lines)), key=lambda i: _FIRST_SHOWN.get(lines[i].state, 3))
    return [lines[i] for i in sorted(order[:cap])]


def _left_out(shown: int, total: int, what: str) -> str:
    if shown >= total:
        return ""
    return (
        f"<p class='note'>{shown} of {total} tasks {what} (failed, skipped and unfinished "
        f"ones first); {total - shown} left out.</p>"
    )


def _label(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _timeline(report: Report, note: str = "") -> str:
    head = "<section id='timeline'><h2>Timeline</h2>"
    if report.timeline is None and note:
        return f"{head}<p class='note' id='no-timeline'>{_e(note)}</p></section>"
    if report.timeline is None:
        return (
            f"{head}<p class='note' id='no-timeline'>The timeline was not recorded: this "
            "result was written without a TimelineRecorder (by an older aegis, or by a "
            "library run that did not attach one). The graph, states, blame, durations and "
            "usage below come from the result itself.</p></section>"
        )
    duration = report.duration_s
    lines = _shown(report.tasks, MAX_TIMELINE_ROWS)
    top = _AXIS_H
    height = top + len(lines) * _ROW_H + 8
    width = _LABEL_W + _PLOT_W + _NOTE_W
    rows = []
    for number, line in enumerate(lines):
        y = top + number * _ROW_H
        waited = _waited(line)
        rows.append(
            f"<g class='tl-row' data-task='{_e(line.task_id)}' data-state='{_e(line.state)}' "
            f"data-waited='{'' if waited is None else f'{waited:.3f}'}'>"
            f"<title>{_e(line.task_id)}</title>"
            f"<text x='4' y='{y + _BAR_H - 2:.1f}'>{_e(_label(line.task_id))}</text>"
            + _bars(line.spans, duration, y + 2, _SPAN_COLOURS)
            + _end_mark(line, duration, y)
            + f"<text class='why' x='{_LABEL_W + _PLOT_W + 12}' y='{y + _BAR_H - 2:.1f}'>"
            f"{_row_note(line)}</text></g>"
        )
    tail = _left_out(len(lines), len(report.tasks), "are drawn")
    graph_note = (
        ""
        if report.has_graph
        else "<p class='note'>The task graph was not recorded, so the time each task waited "
        "for its upstream is not told apart from the time it waited for a free slot.</p>"
    )
    return (
        head
        + _legend(
            (_SPAN_COLOURS[k] if k != "blocked" else "#e0e0e0", w) for k, w in _SPAN_WORDS.items()
        )
        + graph_note
        + f"<svg class='chart' viewBox='0 0 {width} {height}' role='img' "
        f"aria-label='timeline of every task'>"
        "<defs><pattern id='hatch' width='6' height='6' patternUnits='userSpaceOnUse' "
        "patternTransform='rotate(45)'><rect width='6' height='6' fill='#eeeeee'/>"
        "<line x1='0' y1='0' x2='0' y2='6' stroke='#cfcfcf' stroke-width='3'/></pattern></defs>"
        + "".join(_axis(duration, top, height - top))
        + "".join(rows)
        + f"</svg>{tail}</section>"
    )


def _end_mark(line: TaskLine, duration: float, y: float) -> str:
    if line.ended_s is None:
        return ""
    x = _LABEL_W + _x(line.ended_s, duration)
    colour = _colour(line.state)
    return (
        f"<circle class='end' cx='{x:.1f}' cy='{y + 2 + _BAR_H / 2:.1f}' r='4.5' "
        f"fill='{colour}' stroke='#fff' stroke-width='1'><title>{_e(line.state)} at "
        f"{line.ended_s:.2f} s</title></circle>"
    )


def _row_note(line: TaskLine) -> str:
    state = f"<tspan class='s-{_e(line.state)}' fill='{_colour(line.state)}'>"
    state += f"{_e(line.state)}</tspan>"
    if line.state == "skipped":
        blamed = line.result.blamed if line.result is not None else None
        why = f" ← {_e(_label(blamed, 28))} failed" if blamed else f" ({_e(_reason(line))})"
        return f"{state}{why}"
    bits = [state]
    if line.waited_s is not None and line.waited_s >= _SHOWN_WAIT_S:
        bits.append(f"waited {_seconds(line.waited_s)} for a slot")
    if line.retry_wait_s >= _SHOWN_WAIT_S:
        bits.append(f"retry {_seconds(line.retry_wait_s)}")
    if line.parked_s >= _SHOWN_WAIT_S:
        bits.append(f"parked {_seconds(line.parked_s)}")
    if line.fell_back_to:
        bits.append("fell back")
    return " · ".join(bits)


def _breakers(report: Report) -> str:
    head = "<section id='breakers'><h2>Breakers</h2>"
    if not report.endpoints:
        return f"{head}<p class='note'>No endpoint was recorded.</p></section>"
    if report.timeline is None:
        names = ", ".join(f"<span class='id'>{_e(e.name)}</span>" for e in report.endpoints)
        return (
            f"{head}<p class='note'>Breaker states over the run were not recorded (no "
            f"timeline). Endpoints used: {names}.</p></section>"
        )
    duration = report.duration_s
    top = _AXIS_H
    height = top + len(report.endpoints) * _ROW_H + 8
    rows = []
    for number, endpoint in enumerate(report.endpoints):
        y = top + number * _ROW_H
        changes = f"{endpoint.changes} change(s)" if endpoint.changes else "closed throughout"
        rows.append(
            f"<g class='br-row' data-endpoint='{_e(endpoint.name)}' "
            f"data-changes='{endpoint.changes}'><title>{_e(endpoint.name)}</title>"
            f"<text x='4' y='{y + _BAR_H - 2:.1f}'>{_e(_label(endpoint.name))}</text>"
            + _bars(endpoint.spans, duration, y + 2, _CIRCUIT_COLOURS)
            + f"<text class='why' x='{_LABEL_W + _PLOT_W + 12}' y='{y + _BAR_H - 2:.1f}'>"
            f"{_e(changes)}</text></g>"
        )
    return (
        head
        + _legend((colour, state.replace("_", "-")) for state, colour in _CIRCUIT_COLOURS.items())
        + f"<svg class='chart' viewBox='0 0 {_LABEL_W + _PLOT_W + _NOTE_W} {height}' "
        "role='img' aria-label='breaker state of each endpoint'>"
        + "".join(_axis(duration, top, height - top))
        + "".join(rows)
        + "</svg></section>"
    )


def _task_table(report: Report) -> str:
    rows = []
    for line in _shown(report.tasks, _MAX_TABLE_ROWS):
        task = line.result
        blamed = task.blamed if task is not None else None
        if task is None:
            what = "never finished (the run stopped first)"
        elif line.state == "failed":
            what = f"{task.error_type}: {task.error}"
        elif line.state == "skipped":
            what = _reason(line)
        else:
            what = task.output or ""
        usage = task.usage if task is not None else None
        rows.append(
            f"<tr class='{_e(line.state)}' data-task='{_e(line.task_id)}' "
            f"data-state='{_e(line.state)}'"
            + (f" data-blamed='{_e(blamed)}'" if blamed else "")
            + f"><td class='id'>{_e(line.task_id)}</td>"
            f"<td class='state s-{_e(line.state)}'>{_state_mark(line.state)} {_e(line.state)}</td>"
            f"<td>{_e(task.agent or '') if task else ''}</td>"
            f"<td>{_e(_endpoint_name(report, line.endpoint))}</td>"
            f"<td class='num'>{task.attempts if task else ''}</td>"
            f"<td class='num'>{_seconds(_waited(line))}</td>"
            f"<td class='num'>{_seconds(task.duration_s) if task else '&ndash;'}</td>"
            f"<td class='num'>{usage.input_tokens if usage else ''}</td>"
            f"<td class='num'>{usage.output_tokens if usage else ''}</td>"
            f"<td class='preview'>{_e(_preview(what))}</td></tr>"
        )
    tail = _left_out(len(rows), len(report.tasks), "are in the table")
    return (
        "<section id='tasks'><h2>Tasks</h2><table><thead><tr><th>task</th><th>state</th>"
        "<th>agent</th><th>endpoint</th><th class='num'>attempts</th>"
        "<th class='num' title='ready to started, plus waits between attempts; skipped: "
        "until given up on'>waited</th><th class='num'>ran</th><th class='num'>tokens in</th>"
        "<th class='num'>tokens out</th><th>output, error or reason</th></tr></thead><tbody>"
        + "".join(rows)
        + f"</tbody></table>{tail}</section>"
    )


def _endpoint_name(report: Report, key: str) -> str:
    if not key or key == UNRECORDED_ENDPOINT:
        return key
    return report.endpoint_names.get(key, key)


def _usage(report: Report) -> str:
    note = (
        ""
        if report.priced
        else "<p class='note'>No prices were given (Budget.prices, or [budget.prices] in a "
        "pipeline file), so no cost is shown.</p>"
    )
    return (
        "<section id='usage'><h2>Tokens and cost</h2>"
        + note
        + "<p class='note'>A task's tokens count against the agent that ran it and the "
        "endpoint that answered it (for a failed task, the last it fell back to).</p>"
        + _usage_table("agent", report.agents_usage, lambda name: name)
        + _usage_table("endpoint", report.endpoints_usage, lambda key: _endpoint_name(report, key))
        + "</section>"
    )


def _usage_table(kind: str, lines: Sequence[UsageLine], show: Callable[[str], str]) -> str:
    rows = "".join(
        f"<tr data-{kind}='{_e(show(line.name))}'><td>{_e(show(line.name))}</td>"
        f"<td class='num'>{line.tasks}</td><td class='num'>{line.usage.input_tokens:,}</td>"
        f"<td class='num'>{line.usage.output_tokens:,}</td>"
        f"<td class='num'>{_cost(line.cost_usd)}</td></tr>"
        for line in lines
    )
    return (
        f"<table class='usage' data-by='{kind}'><thead><tr><th>{kind}</th>"
        "<th class='num'>tasks</th><th class='num'>tokens in</th><th class='num'>tokens out"
        f"</th><th class='num'>cost</th></tr></thead><tbody>{rows}</tbody></table>"
    )
