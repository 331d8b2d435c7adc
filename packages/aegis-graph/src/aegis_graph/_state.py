"""The states a task goes through, and why a task was skipped."""

from __future__ import annotations

import enum

__all__ = ["SkipReason", "TaskState"]


class TaskState(str, enum.Enum):
    """The state of one task in a `TaskQueue`.

    PENDING -> RUNNING -> DONE | FAILED, or PENDING -> SKIPPED. A PENDING task may also go
    straight to DONE or FAILED when completed while ready.
    """

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def is_terminal(self) -> bool:
        """Whether the task is finished (DONE, FAILED or SKIPPED)."""
        return self in _TERMINAL


_TERMINAL = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.SKIPPED})


class SkipReason(str, enum.Enum):
    """Why a task was SKIPPED."""

    UPSTREAM_FAILED = "upstream_failed"
    """A task it depends on, directly or transitively, failed."""
    STOPPED = "stopped"
    """Another task failed in a queue built with ``stop_on_failure=True``."""
    CANCELLED = "cancelled"
    """The queue was halted by `TaskQueue.halt`."""
    BUDGET_SPENT = "budget_spent"
    """The run's budget (tokens, requests or cost) ran out before the task could start."""
