"""Resuming a run: which earlier results can be kept, and when the graph changed too much."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from aegis_graph import Task, TaskState

from aegis_gov._errors import IncompatibleResumeError
from aegis_gov._results import RunResult, TaskResult

__all__ = ["fingerprint", "reusable_results"]


def fingerprint(task: Task) -> str:
    """A short digest of what a task asks for: its description, agent and dependencies."""
    payload = repr((task.description, task.agent, task.depends_on))
    return hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()


def reusable_results(tasks: Iterable[Task], previous: RunResult) -> dict[str, TaskResult]:
    """The DONE results of ``previous`` that a new run over ``tasks`` keeps.

    Raises :class:`IncompatibleResumeError`, naming every difference, when a task that
    finished before is gone or now asks for something else: its output would no longer mean
    what downstream tasks expect. FAILED and SKIPPED tasks simply run again, and so does
    everything downstream of them.
    """
    by_id = {task.id: task for task in tasks}
    differences: list[str] = []
    kept: dict[str, TaskResult] = {}
    for task_id, result in previous.items():
        if result.status is not TaskState.DONE:
            continue
        task = by_id.get(task_id)
        if task is None:
            differences.append(f"task {task_id!r} finished before but is no longer in the graph")
        elif result.fingerprint is not None and result.fingerprint != fingerprint(task):
            differences.append(
                f"task {task_id!r} changed its description, agent or dependencies since it ran"
            )
        else:
            kept[task_id] = result
    if differences:
        raise IncompatibleResumeError(differences)
    # Keep a result only when everything it was computed from is kept too.
    changed = True
    while changed:
        changed = False
        for task_id in list(kept):
            if any(dep not in kept for dep in by_id[task_id].depends_on):
                del kept[task_id]
                changed = True
    return kept
