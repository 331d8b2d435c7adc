"""The prompt a task's agent gets: its description, then its dependencies' outputs."""

from __future__ import annotations

from collections.abc import Mapping

from aegis_graph import Task

__all__ = ["build_prompt"]


def build_prompt(task: Task, upstream: Mapping[str, str]) -> str:
    """The task's description followed by its direct dependencies' outputs, labelled by id."""
    description = task.description or task.id
    if not task.depends_on:
        return description
    parts = [description, "", "Results of the tasks this one depends on:"]
    for dep in task.depends_on:
        parts += ["", f"--- {dep} ---", upstream.get(dep, "")]
    return "\n".join(parts)
