"""aegis-graph: a pure, typed task dependency graph with cycle detection and failure cascades.

Build a `TaskQueue` from `Task` values; it validates the graph at construction, hands out
ready tasks, and turns the dependents of a failed task into SKIPPED tasks that remember
the root failure.
"""

from __future__ import annotations

import logging

from aegis_graph._errors import (
    CyclicDependencyError,
    DuplicateTaskError,
    GraphError,
    InconsistentResumeError,
    InvalidTaskError,
    InvalidTransitionError,
    TaskNotReadyError,
    UnknownDependencyError,
    UnknownTaskError,
)
from aegis_graph._queue import TaskQueue
from aegis_graph._state import SkipReason, TaskState
from aegis_graph._task import Task

# A library adds no handler of its own: records reach whatever the application set up, and
# nothing is printed through logging's last-resort handler in apps that set up none.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "CyclicDependencyError",
    "DuplicateTaskError",
    "GraphError",
    "InconsistentResumeError",
    "InvalidTaskError",
    "InvalidTransitionError",
    "SkipReason",
    "Task",
    "TaskNotReadyError",
    "TaskQueue",
    "TaskState",
    "UnknownDependencyError",
    "UnknownTaskError",
]
