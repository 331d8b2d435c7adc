"""Checked by mypy --strict and pyright, never run for behaviour: the task-graph pictures."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aegis_gov import (
    AegisError,
    GraphvizError,
    GraphvizNotFoundError,
    Task,
    TaskState,
    graph_dot,
    render_graph,
)

if TYPE_CHECKING:
    from typing import assert_type

    tasks = [Task("a"), Task("b", depends_on=["a"])]
    assert_type(graph_dot(tasks), str)
    assert_type(graph_dot(tasks, states={"a": TaskState.DONE}, titles={"a": "writer"}), str)
    assert_type(render_graph(tasks), bytes)
    assert_type(render_graph(tasks, fmt="png", states={"b": TaskState.FAILED}), bytes)
    assert_type(render_graph(tasks, fmt="svg", titles={}, timeout_s=5.0), bytes)
    render_graph(tasks, fmt="pdf")  # type: ignore[arg-type]  # only svg and png
    try:
        render_graph(tasks)
    except GraphvizNotFoundError as missing:
        error: GraphvizError = missing
        base: AegisError = error
        assert_type(missing.returncode, int | None)
        assert_type(missing.stderr, str)
