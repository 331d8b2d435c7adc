"""Rendering a task graph as a Mermaid flowchart."""

from __future__ import annotations

from collections.abc import Sequence

from aegis_graph._state import TaskState

__all__ = ["render_mermaid"]

# Colours per state: grey pending, blue running, green done, red failed, amber skipped.
_STYLES = {
    TaskState.PENDING: "fill:#eeeeee,stroke:#999999,color:#333333",
    TaskState.RUNNING: "fill:#cce5ff,stroke:#3b82f6,color:#0b3d91",
    TaskState.DONE: "fill:#d4edda,stroke:#28a745,color:#155724",
    TaskState.FAILED: "fill:#f8d7da,stroke:#dc3545,color:#721c24",
    TaskState.SKIPPED: "fill:#fff3cd,stroke:#ffc107,color:#856404",
}

# Mermaid entity codes: ids are shown as quoted labels, so quotes, '#' (which starts an entity)
# and HTML-significant characters must be encoded; '#' first so later codes stay intact.
_ESCAPES = (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("&", "#amp;"))


def _label(task_id: str) -> str:
    for char, code in _ESCAPES:
        task_id = task_id.replace(char, code)
    return " ".join(task_id.split())  # newlines and tabs would break the node line


def render_mermaid(
    ids: Sequence[str],
    edges: Sequence[tuple[int, int]],
    states: Sequence[TaskState] | None,
) -> str:
    """Render the graph; node ``t<i>`` is the i-th task; an edge ``(d, i)`` means i depends on d."""
    lines = ["flowchart TD"]
    lines.extend(f'    t{i}["{_label(task_id)}"]' for i, task_id in enumerate(ids))
    lines.extend(f"    t{d} --> t{i}" for d, i in edges)
    if states is not None:
        lines.extend(f"    classDef {state.value} {style}" for state, style in _STYLES.items())
        for state in _STYLES:
            members = [f"t{i}" for i, s in enumerate(states) if s is state]
            if members:
                lines.append(f"    class {','.join(members)} {state.value}")
    return "\n".join(lines) + "\n"
