"""The live table's drawing: columns laid out for the terminal's width, at every redraw.

What a user watches is never cut: state, attempts, retries, tokens and time get the width
their words need. Task and agent names get what is left (cut with ``…`` only when even
they do not fit), and the free-text note gets the rest: it shrinks first and is left out
when fewer than :data:`NOTE_MIN_WIDTH` columns would remain (an 80-column terminal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import attrs
from aegis_breaker import CircuitState
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from aegis_gov._adaptive import AdaptiveStatus
from aegis_gov._budget import Budget, Spent
from aegis_gov._display_names import printable
from aegis_gov._limits import Limits

__all__ = ["NOTE_MIN_WIDTH", "BudgetLine", "EndpointRow", "ProgressView", "TaskRow"]

NOTE_MIN_WIDTH: Final = 16
"""Below this many columns left over, the note column is not drawn."""

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
_NAME_MIN: Final = 6  # task and agent names are never squeezed below this
_STATE_WIDTH: Final = max(map(len, _STATE_STYLES))


@attrs.define
class TaskRow:
    """What the display knows about one task.

    ``state`` is ``pending``, ``running``, ``retrying``, ``done``, ``kept`` (a DONE result
    reused from ``--resume``), ``failed`` or ``skipped``. While a task streams its answer,
    ``note`` shows the end of its last line, ``streamed_chars`` counts what arrived and
    ``stream_tail`` keeps the last few hundred characters. ``endpoint`` is the key of the
    endpoint the task talks to (its fallback's after a fall-back).
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
    turn_start: tuple[int, str] = attrs.field(default=(0, ""), repr=False)
    """``streamed_chars`` and ``stream_tail`` as the current turn began: a retry goes back."""


@attrs.frozen
class EndpointRow:
    """One endpoint as the table shows it: its short name and what governs its traffic."""

    key: str
    """The full endpoint key (never with credentials)."""
    name: str
    """The short name shown (see :mod:`aegis_gov._display_names`)."""
    circuit: CircuitState = CircuitState.CLOSED
    failures: int = 0
    """Consecutive failures its breaker counts."""
    adaptive: AdaptiveStatus | None = None
    """Calls in flight and the concurrency limit, once called."""
    declared: Limits | None = None
    """The :class:`~aegis_gov.Limits` declared for it, if any."""
    fell_back_from: int = 0
    """Fall-backs taken away from this endpoint."""
    fell_back_to: int = 0
    """Fall-backs taken to this endpoint."""

    def in_flight(self) -> str:
        """``"calls in flight/limit"``, empty before the first call."""
        a = self.adaptive
        return "" if a is None else f"{a.in_flight}/{a.limit}"

    def limiter(self) -> str:
        """The declared limits, or ``adaptive``; requests waiting their turn, overloads, rate."""
        words: list[str] = []
        d = self.declared
        if d is not None:
            if d.requests_per_minute is not None:
                words.append(f"{d.requests_per_minute:g} req/min")
            if d.tokens_per_minute is not None:
                words.append(f"{d.tokens_per_minute:g} tok/min")
            if d.max_concurrent is not None:
                words.append(f"max {d.max_concurrent} at once")
        if d is None or d.max_concurrent is None:
            words.append("adaptive")
        a = self.adaptive
        if a is not None and a.paced:
            words.append(f"{a.paced} paced")
        if a is not None and a.held_s > 0.0:
            words.append(f"held {math.ceil(a.held_s):d} s by Retry-After")
        if a is not None and a.overloads:
            words.append(f"{a.overloads} overloaded")
        if a is not None and a.rate_per_s is not None:
            words.append(f"learned {a.rate_per_s:.2g} req/s")
        return ", ".join(words)

    def fallbacks(self) -> str:
        """``"2 away, 1 here"``: fall-backs taken from and to this endpoint."""
        words = []
        if self.fell_back_from:
            words.append(f"{self.fell_back_from} away")
        if self.fell_back_to:
            words.append(f"{self.fell_back_to} here")
        return ", ".join(words)


@attrs.frozen
class BudgetLine:
    """What a run with a budget spent; ``final`` once it is the run's exact total."""

    budget: Budget
    spent: Spent
    final: bool = False

    def text(self) -> str:
        """``budget: 1200 of 5000 tokens, 7 of 20 requests, $0.0012 of $0.50``."""
        b, s = self.budget, self.spent
        parts = [
            f"{s.tokens}" + (f" of {b.max_total_tokens}" if b.max_total_tokens else "") + " tokens",
            f"{s.requests}" + (f" of {b.max_requests}" if b.max_requests else "") + " requests",
        ]
        if s.cost_usd is not None:
            limit = f" of ${b.max_cost_usd:.2f}" if b.max_cost_usd is not None else ""
            parts.append(f"${s.cost_usd:.4f}{limit}")
        when = "" if self.final else " (finished tasks so far)"
        return "budget: " + ", ".join(parts) + when


def _chrome(columns: int) -> int:
    """Borders and padding of a default rich table with *columns* columns."""
    return 3 * columns + 1


def _widest(header: str, cells: Sequence[str]) -> int:
    """Terminal cells the widest of *header* and *cells* needs (CJK takes two each)."""
    return max([cell_len(header), *(cell_len(cell) for cell in cells)])


def _share(room: int, wanted: Sequence[int]) -> list[int]:
    """Split *room* among columns wanting *wanted*, never below :data:`_NAME_MIN` each."""
    if sum(wanted) <= room:
        return list(wanted)
    floors = [min(w, _NAME_MIN) for w in wanted]
    spare = max(0, room - sum(floors))
    extra = [w - f for w, f in zip(wanted, floors, strict=True)]
    total = sum(extra) or 1
    return [f + spare * e // total for f, e in zip(floors, extra, strict=True)]


@attrs.frozen
class ProgressView:
    """A snapshot of the run, drawn to fit whatever width the console gives it."""

    rows: Sequence[TaskRow]
    endpoints: Sequence[EndpointRow]
    now: float
    budget: BudgetLine | None = None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """The tasks table, the endpoints table and the totals, fitted to ``max_width``."""
        yield self._tasks(options.max_width)
        if self.endpoints:
            yield self._endpoints(options.max_width)
        total_in = sum(row.input_tokens for row in self.rows)
        total_out = sum(row.output_tokens for row in self.rows)
        yield Text(f"tokens: {total_in} in / {total_out} out", style="dim")
        if self.budget is not None:
            yield Text(self.budget.text(), style="dim")

    def _elapsed(self, row: TaskRow) -> str:
        if row.duration_s is not None:
            return f"{row.duration_s:.1f}s"
        if row.started_at is not None and row.state in {"running", "retrying"}:
            return f"{self.now - row.started_at:.1f}s"
        return ""

    def _tasks(self, width: int) -> Table:
        cells = [
            (
                printable(row.task_id, one_line=True),
                printable(row.agent, one_line=True),
                row.state,
                str(row.attempts or ""),
                str(row.retries or ""),
                f"{row.input_tokens}/{row.output_tokens}" if row.input_tokens else "",
                self._elapsed(row),
                printable(row.note, one_line=True),
            )
            for row in self.rows
        ]
        columns = list(zip(*cells, strict=True)) if cells else [()] * 8
        fixed_headers = ["state", "attempts", "retries", "tokens in/out", "time"]
        fixed = [_widest(h, col) for h, col in zip(fixed_headers, columns[2:7], strict=True)]
        fixed[0] = max(fixed[0], _STATE_WIDTH)  # the table does not jump as states change
        names = [_widest("task", columns[0]), _widest("agent", columns[1])]
        room = width - _chrome(7) - sum(fixed)
        if room - sum(names) - 3 < NOTE_MIN_WIDTH and fixed[3] > len("tokens"):
            fixed_headers[3] = "tokens"  # a narrow terminal: the short header
            fixed[3] = _widest("tokens", columns[5])
            room = width - _chrome(7) - sum(fixed)
        note_room = room - sum(names) - 3
        show_note = note_room >= NOTE_MIN_WIDTH
        name_widths = _share(room, names) if not show_note else names
        table = Table(title="tasks", title_justify="left")
        for header, size in zip(("task", "agent"), name_widths, strict=True):
            table.add_column(header, width=max(1, size), no_wrap=True, overflow="ellipsis")
        for header, size in zip(fixed_headers, fixed, strict=True):
            table.add_column(header, width=size, no_wrap=True)
        if show_note:
            note_width = min(note_room, _widest("note", columns[7]))
            table.add_column("note", width=note_width, no_wrap=True, overflow="ellipsis")
        for row, cell in zip(self.rows, cells, strict=True):
            shown = [
                Text(cell[0]),
                Text(cell[1]),
                Text(cell[2], style=_STATE_STYLES.get(row.state, "")),
                *map(Text, cell[3:7]),
            ]
            table.add_row(*shown, *([Text(cell[7])] if show_note else []))
        return table

    def _endpoints(self, width: int) -> Table:
        cells = [
            (
                printable(e.name, one_line=True),
                e.circuit.value,
                str(e.failures),
                e.in_flight(),
                e.limiter(),
                e.fallbacks(),
            )
            for e in self.endpoints
        ]
        columns = list(zip(*cells, strict=True))
        headers = ("endpoint", "circuit", "failures", "in flight", "limiter", "fallbacks")
        wanted = [_widest(h, col) for h, col in zip(headers, columns, strict=True)]
        fixed = wanted[1:4] + wanted[5:]
        room = width - _chrome(6) - sum(fixed)
        # Side by side when both fit; otherwise the limiter goes under the endpoint's name,
        # and a long name wraps (at " @ ") rather than being cut.
        side_by_side = wanted[0] + wanted[4] <= room
        table = Table(title="endpoints", title_justify="left")
        stacked = max(wanted[0], wanted[4] + 2)  # the limiter's line is indented
        name_width = wanted[0] if side_by_side else max(_NAME_MIN, min(room + 3, stacked))
        table.add_column("endpoint", width=name_width, overflow="fold")
        for header, size in zip(headers[1:4], wanted[1:4], strict=True):
            table.add_column(header, width=size, no_wrap=True)
        if side_by_side:
            table.add_column("limiter", width=wanted[4], no_wrap=True)
        table.add_column("fallbacks", width=wanted[5], no_wrap=True)
        for endpoint, cell in zip(self.endpoints, cells, strict=True):
            name: RenderableType = Text(cell[0])
            if not side_by_side and cell[4] != "adaptive":  # nothing to say: one line
                # Indented under the name, wrapped lines too.
                name = Group(name, Padding(Text(cell[4], style="dim"), (0, 0, 0, 2)))
            table.add_row(
                name,
                Text(cell[1], style=_CIRCUIT_STYLES.get(endpoint.circuit, "magenta")),
                *map(Text, cell[2:4]),
                *([Text(cell[4])] if side_by_side else []),
                Text(cell[5]),
            )
        return table
