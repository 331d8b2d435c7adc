"""Pictures of a task graph: Graphviz DOT text, and SVG or PNG drawn by Graphviz's ``dot``.

The layout is Graphviz's; this module only writes the DOT text and runs ``dot`` on it. Node
names in the DOT text are generated (``t0``, ``t1``, ...) and every task id reaches it only
inside an escaped label, so no id can add attributes, nodes or edges to the drawing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Final, Literal

from aegis_graph import Task, TaskQueue, TaskState, UnknownTaskError

from aegis_gov._errors import AegisError

__all__ = [
    "DOT_TIMEOUT_S",
    "GraphvizError",
    "GraphvizNotFoundError",
    "graph_dot",
    "render_graph",
]

_log = logging.getLogger(__name__)

DOT_TIMEOUT_S: Final = 60.0
"""How long :func:`render_graph` lets ``dot`` run by default, in seconds."""

_INSTALL_HINT: Final = (
    "install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install "
    "graphviz; others: https://graphviz.org/download/)"
)
_FONT: Final = "Helvetica,Arial,sans-serif"

# (fill, border, extra node attributes) per state; the border style keeps failed and
# skipped tasks apart without colour too.
_STYLE: Final[Mapping[TaskState, tuple[str, str, str]]] = {
    TaskState.DONE: ("#d8f0dc", "#2e7d32", ""),
    TaskState.FAILED: ("#f9d6d5", "#c62828", ', penwidth="2.5"'),
    TaskState.SKIPPED: (
        "#eeeeee",
        "#9e9e9e",
        ', style="rounded,filled,dashed", fontcolor="#616161"',
    ),
    TaskState.PENDING: ("#ffffff", "#616161", ""),
    TaskState.RUNNING: ("#d6e6f8", "#1565c0", ""),
}
# The legend lists the states in the order a run goes through them, failures last.
_LEGEND_ORDER: Final = (
    TaskState.PENDING,
    TaskState.RUNNING,
    TaskState.DONE,
    TaskState.FAILED,
    TaskState.SKIPPED,
)

# What XML 1.0 (and so SVG) cannot hold, and what a terminal or Graphviz would act on:
# control characters (newlines included: a label is one line per field), lone surrogates
# (UTF-8 cannot encode them) and U+FFFE/U+FFFF; and what would rearrange or hide the label's
# text: bidi embeddings, overrides, isolates and marks, zero-width characters, separators.
_UNSHOWABLE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff"
    "\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)
_DOT_SPECIAL: Final = re.compile(r'[\\"&<>]')
_DOT_ESCAPES: Final = {"\\": "\\\\", '"': "&quot;", "&": "&amp;", "<": "&lt;", ">": "&gt;"}


class GraphvizError(AegisError):
    """Graphviz's ``dot`` could not draw the graph: it failed, or ran past its timeout.

    Attributes:
        returncode: ``dot``'s exit status, or ``None`` when it was stopped at the timeout
            (or could not be started).
        stderr: What ``dot`` wrote to standard error (may be empty).
    """

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = "") -> None:
        """Create the error; *message* says what went wrong."""
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class GraphvizNotFoundError(GraphvizError):
    """Graphviz's ``dot`` program is not installed (not found on ``PATH``).

    The message says how to install it (``apt-get install graphviz`` on Debian or Ubuntu).
    """


def _showable(text: str) -> str:
    r"""*text* as one line a drawing can show: unshowable characters as ``\xNN``-style escapes."""
    if not _UNSHOWABLE.search(text):
        return text
    return _UNSHOWABLE.sub(
        lambda m: m[0].encode("unicode_escape", "backslashreplace").decode("ascii"), text
    )


_MAX_LABEL_CHARS: Final = 80  # a longer id is cut in its box (whole in the tooltip)
_MAX_TOOLTIP_CHARS: Final = 1000  # escaped, well under Graphviz's 16384-byte string limit


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(text: str) -> str:
    """*text* as the inside of a DOT quoted-string label that Graphviz shows literally."""
    # Entities, not backslashes, for the XML characters and the quote: Graphviz decodes
    # entities in every label, so a literal '&amp;' must be written '&amp;amp;'. A
    # backslash is doubled so that '\N', '\G', '\n' and friends stay text.
    return _DOT_SPECIAL.sub(lambda m: _DOT_ESCAPES[m[0]], _showable(text))


def _check_ids(given: Mapping[str, object], known: Mapping[str, int]) -> None:
    for task_id in given:
        if task_id not in known:
            raise UnknownTaskError(task_id)


def graph_dot(
    tasks: Sequence[Task],
    *,
    states: Mapping[str, TaskState] | None = None,
    titles: Mapping[str, str] | None = None,
) -> str:
    """The task graph as Graphviz DOT text: one box per task, arrows from dependency to dependent.

    Each box shows the task's id (control characters as escapes) and, under it, its entry in
    *titles* if it has one (an agent's name, say). With *states*, boxes are coloured by state
    (a task it leaves out counts as pending) and a legend lists the states shown. Pure: runs
    nothing; :func:`render_graph` draws it.

    Raises:
        GraphError: *tasks* is not a valid graph (`DuplicateTaskError`,
            `UnknownDependencyError`, `CyclicDependencyError`, ...).
        UnknownTaskError: *states* or *titles* names a task that *tasks* does not have.
        ValueError: a value of *states* is not a `TaskState`.
    """
    TaskQueue(tasks)  # the same checks a run makes, and the same errors
    index = {task.id: number for number, task in enumerate(tasks)}
    _check_ids(titles or {}, index)
    shown: dict[str, TaskState] | None = None
    if states is not None:
        _check_ids(states, index)
        shown = {task_id: TaskState(state) for task_id, state in states.items()}
    lines = [
        "digraph pipeline {",
        f'  graph [rankdir="TB", fontname="{_FONT}", nodesep="0.35", ranksep="0.45"];',
        (
            f'  node [shape="box", style="rounded,filled", fontname="{_FONT}", fontsize="12", '
            'fillcolor="#ffffff", color="#616161"];'
        ),
        '  edge [color="#757575", arrowsize="0.7"];',
    ]
    used: set[TaskState] = set()
    for number, task in enumerate(tasks):
        label = _label(_cut(task.id, _MAX_LABEL_CHARS))
        tooltip = ""  # a cut id is shown whole (up to a limit) when the mouse is over it
        if len(task.id) > _MAX_LABEL_CHARS:
            tooltip = f', tooltip="{_label(_cut(task.id, _MAX_TOOLTIP_CHARS))}"'
        title = (titles or {}).get(task.id)
        if title:
            label += "\\n" + _label(_cut(title, _MAX_LABEL_CHARS))
        style = ""
        if shown is not None:
            state = shown.get(task.id, TaskState.PENDING)
            used.add(state)
            fill, border, extra = _STYLE[state]
            style = f', fillcolor="{fill}", color="{border}"{extra}'
        lines.append(f'  t{number} [label="{label}"{tooltip}{style}];')
    lines.extend(
        f"  t{index[dep]} -> t{number};"
        for number, task in enumerate(tasks)
        for dep in task.depends_on
    )
    if shown is not None:
        lines.extend(_legend([state for state in _LEGEND_ORDER if state in used]))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _legend(states: Sequence[TaskState]) -> list[str]:
    """A table node (named ``legend``) with one coloured cell per state, on the last rank."""
    cells = "".join(
        f'<TD BGCOLOR="{_STYLE[state][0]}" COLOR="{_STYLE[state][1]}" BORDER="1" '
        f'CELLPADDING="4">{state.value}</TD>'
        for state in states
    )
    return [
        (
            f'  legend [shape="plaintext", style="", fontsize="10", label=<<TABLE BORDER="0" '
            f'CELLBORDER="0" CELLSPACING="4"><TR>{cells}</TR></TABLE>>];'
        ),
        '  { rank="sink"; legend; }',
    ]


def render_graph(
    tasks: Sequence[Task],
    *,
    states: Mapping[str, TaskState] | None = None,
    fmt: Literal["svg", "png"] = "svg",
    titles: Mapping[str, str] | None = None,
    timeout_s: float = DOT_TIMEOUT_S,
) -> bytes:
    """The task graph drawn by Graphviz's ``dot``, as SVG (UTF-8 XML) or PNG bytes.

    What is drawn is :func:`graph_dot` of the same arguments. Runs ``dot`` from ``PATH`` in a
    subprocess and waits at most *timeout_s* seconds for it. Thread-safe.

    Raises:
        GraphvizNotFoundError: ``dot`` is not installed; the message says how to install it.
        GraphvizError: ``dot`` exited with an error, wrote nothing, or ran past *timeout_s*.
        GraphError: *tasks* is not a valid graph (see :func:`graph_dot`).
        UnknownTaskError: *states* or *titles* names a task that *tasks* does not have.
        ValueError: *fmt* is not ``"svg"`` or ``"png"``; *timeout_s* is not positive; a
            value of *states* is not a `TaskState`.
    """
    if fmt not in {"svg", "png"}:
        raise ValueError(f"fmt must be 'svg' or 'png', got {fmt!r}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    source = graph_dot(tasks, states=states, titles=titles).encode("utf-8")
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizNotFoundError(
            f"Graphviz's 'dot' program was not found on PATH: {_INSTALL_HINT}"
        )
    try:
        returncode, stdout, stderr_bytes = _run_dot([dot, f"-T{fmt}"], source, timeout_s)
    except subprocess.TimeoutExpired:  # _run_dot has killed dot and its children
        raise GraphvizError(
            f"Graphviz's dot ({dot}) did not finish within {timeout_s:g} s ({len(tasks)} tasks)"
        ) from None
    except OSError as exc:  # removed, or not executable, since `which` found it
        raise GraphvizNotFoundError(
            f"Graphviz's dot ({dot}) could not be started ({exc.strerror or exc}): {_INSTALL_HINT}"
        ) from None
    stderr = stderr_bytes.decode("utf-8", "replace").strip()
    if returncode != 0 or not stdout:
        why = stderr.splitlines()[0] if stderr else "no message"
        status = f"exited with status {returncode}" if returncode else "wrote nothing"
        raise GraphvizError(
            f"Graphviz's dot ({dot}) {status}: {why}", returncode=returncode, stderr=stderr
        )
    if stderr:
        _log.debug("dot warned: %s", stderr)
    return stdout


def _run_dot(argv: list[str], source: bytes, timeout_s: float) -> tuple[int, bytes, bytes]:
    """Run ``dot`` in a session of its own; at the timeout, kill it and all it started.

    A ``dot`` that is a wrapper script (snap, conda, nix) runs the real one as a child,
    which killing the script alone would leave running.
    """
    posix = os.name == "posix"
    with subprocess.Popen(  # noqa: S603  # a fixed argv, no shell
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=posix,
    ) as process:
        try:
            stdout, stderr = process.communicate(source, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            if posix:
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)
            process.kill()
            process.communicate()
            raise
        return process.returncode, stdout, stderr
