"""The exceptions of aegis-graph: one base class, one subclass per mistake."""

from __future__ import annotations

from aegis_graph._state import TaskState

__all__ = [
    "CyclicDependencyError",
    "DuplicateTaskError",
    "GraphError",
    "InconsistentResumeError",
    "InvalidTaskError",
    "InvalidTransitionError",
    "TaskNotReadyError",
    "UnknownDependencyError",
    "UnknownTaskError",
]

# Cycles longer than this are shortened in the message; ``.cycle`` always stays whole.
_MAX_CYCLE_IN_MESSAGE = 12


class GraphError(ValueError):
    """Base class of every error raised by aegis-graph."""


class InvalidTaskError(GraphError):
    """A `Task` was built from invalid values.

    Attributes:
        task_id: The offending task's id, or ``None`` when the id itself is the problem.
    """

    def __init__(self, message: str, task_id: str | None = None) -> None:
        """Create the error; *message* names the culprit."""
        super().__init__(message)
        self.task_id = task_id


class DuplicateTaskError(GraphError):
    """Two tasks given to a `TaskQueue` share one id.

    Attributes:
        task_id: The id that appears more than once.
    """

    def __init__(self, task_id: str) -> None:
        """Create the error for the repeated *task_id*."""
        super().__init__(f"duplicate task id {task_id!r}")
        self.task_id = task_id


class UnknownDependencyError(GraphError):
    """A task depends on an id that no task of the queue has.

    Attributes:
        task_id: The task that declares the dependency.
        dependency: The missing id.
    """

    def __init__(self, task_id: str, dependency: str) -> None:
        """Create the error for *task_id* depending on the missing *dependency*."""
        super().__init__(f"task {task_id!r} depends on unknown task {dependency!r}")
        self.task_id = task_id
        self.dependency = dependency


class CyclicDependencyError(GraphError):
    """The dependencies form a cycle.

    Attributes:
        cycle: The ids of one cycle in ``depends_on`` order, first id repeated last:
            ``("a", "b", "c", "a")`` means a depends on b, b on c and c on a.
    """

    def __init__(self, cycle: tuple[str, ...]) -> None:
        """Create the error for *cycle* (first id repeated last)."""
        super().__init__(f"dependency cycle: {_format_cycle(cycle)}")
        self.cycle = cycle


def _format_cycle(cycle: tuple[str, ...]) -> str:
    if len(cycle) <= _MAX_CYCLE_IN_MESSAGE:
        return " -> ".join(cycle)
    head = " -> ".join(cycle[:5])
    tail = " -> ".join(cycle[-3:])
    return f"{head} -> ... -> {tail} ({len(cycle) - 1} tasks)"


class UnknownTaskError(GraphError):
    """A queue was asked about an id it does not hold.

    Attributes:
        task_id: The unknown id.
    """

    def __init__(self, task_id: str) -> None:
        """Create the error for the unknown *task_id*."""
        super().__init__(f"unknown task {task_id!r}")
        self.task_id = task_id


class TaskNotReadyError(GraphError):
    """A pending task was started or completed before all its dependencies were done.

    Attributes:
        task_id: The task that is not ready.
        waiting_on: Its dependencies that are not DONE, in ``depends_on`` order.
    """

    def __init__(self, task_id: str, waiting_on: tuple[str, ...]) -> None:
        """Create the error for *task_id*, still waiting on *waiting_on*."""
        waiting = ", ".join(repr(dep) for dep in waiting_on)
        super().__init__(f"task {task_id!r} is not ready: waiting on {waiting}")
        self.task_id = task_id
        self.waiting_on = waiting_on


class InvalidTransitionError(GraphError):
    """A task was started or completed from a state that does not allow it.

    Attributes:
        task_id: The task.
        state: Its current state, which the failed call left unchanged.
    """

    def __init__(self, task_id: str, state: TaskState, action: str) -> None:
        """Create the error for *action* ("start" or "complete") on *task_id* in *state*."""
        super().__init__(f"cannot {action} task {task_id!r}: it is {state.value}")
        self.task_id = task_id
        self.state = state


class InconsistentResumeError(GraphError):
    """A task given as already completed has dependencies that are not completed.

    Attributes:
        task_id: The task given as completed.
        waiting_on: Its dependencies missing from ``completed``, in ``depends_on`` order.
    """

    def __init__(self, task_id: str, waiting_on: tuple[str, ...]) -> None:
        """Create the error for *task_id*, whose *waiting_on* are not completed."""
        waiting = ", ".join(repr(dep) for dep in waiting_on)
        super().__init__(
            f"task {task_id!r} is given as completed but its dependencies {waiting} are not"
        )
        self.task_id = task_id
        self.waiting_on = waiting_on
