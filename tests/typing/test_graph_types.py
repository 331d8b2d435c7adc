"""The aegis-graph public API as a strict user sees it: checked by mypy and pyright, never run.

Everything sits under ``if TYPE_CHECKING:`` so pytest may import this module harmlessly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import assert_type

    from aegis_graph import (
        CyclicDependencyError,
        DuplicateTaskError,
        GraphError,
        InconsistentResumeError,
        InvalidTaskError,
        InvalidTransitionError,
        SkipReason,
        Task,
        TaskNotReadyError,
        TaskQueue,
        TaskState,
        UnknownDependencyError,
        UnknownTaskError,
    )

    task = Task("b", description="d", agent=None, depends_on=["a"])
    assert_type(task.id, str)
    assert_type(task.agent, str | None)
    assert_type(task.depends_on, tuple[str, ...])
    Task("c", depends_on=("a", "b"))

    q = TaskQueue([Task("a"), task], stop_on_failure=False, completed=["a"])
    assert_type(q.tasks, tuple[Task, ...])
    assert_type(q.ready(), list[Task])
    assert_type(q.start("b"), Task)
    assert_type(q.start(task), Task)  # a Task stands for its id
    assert_type(q.complete("b", success=False), list[str])
    assert_type(q.ready(2), list[Task])
    assert_type(q.ready_ids(), list[str])
    assert_type(q.ready_ids(None), list[str])
    assert_type(q.start_ready(4), list[Task])
    q.start_many(["b"])  # returns None
    q.start_many(q.ready())  # tasks too, or ids and tasks mixed
    q.start_many(["a", task])
    q.complete_many(("b",))  # any iterable of ids
    assert_type(q.halt(), list[str])
    assert_type(q.halt(SkipReason.STOPPED), list[str])
    assert_type(q.state("a"), TaskState)
    assert_type(q.state("a").is_terminal, bool)
    assert_type(q.blame("b"), str | None)
    assert_type(q.skip_reason("b"), SkipReason | None)
    assert_type(q.skipped_tasks(), list[str])
    assert_type(q.failed_tasks(), list[str])
    assert_type(q.done_tasks(), list[str])
    assert_type(q.running_tasks(), list[str])
    assert_type(q.pending_tasks(), list[str])
    assert_type(q.is_finished, bool)
    assert_type(q.stop_on_failure, bool)
    assert_type(q.summary(), dict[str, int])
    assert_type(q.get("a"), Task)
    assert_type(len(q), int)
    assert_type("a" in q, bool)
    assert_type(q.dependencies("b"), tuple[str, ...])
    assert_type(q.dependents("a"), tuple[str, ...])
    assert_type(q.topological_order(), list[str])
    assert_type(q.generations(), list[list[str]])
    assert_type(q.to_mermaid(with_state=True), str)

    def errors(exc: GraphError) -> None:
        as_value_error: ValueError = exc  # every aegis-graph error is a ValueError
        del as_value_error
        if isinstance(exc, CyclicDependencyError):
            assert_type(exc.cycle, tuple[str, ...])
        elif isinstance(exc, DuplicateTaskError | UnknownTaskError):
            assert_type(exc.task_id, str)
        elif isinstance(exc, UnknownDependencyError):
            assert_type(exc.dependency, str)
        elif isinstance(exc, TaskNotReadyError | InconsistentResumeError):
            assert_type(exc.waiting_on, tuple[str, ...])
        elif isinstance(exc, InvalidTransitionError):
            assert_type(exc.state, TaskState)
        elif isinstance(exc, InvalidTaskError):
            assert_type(exc.task_id, str | None)

    Task(1)  # type: ignore[arg-type]
    Task("a", depends_on=[1])  # type: ignore[list-item]
