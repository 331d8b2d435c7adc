"""`TaskQueue.start` and `start_many` take the `Task` objects `ready` returns, as well as ids.

A `Task` stands for its id: driving one queue with tasks and another with their ids gives
the same states, the same returned tasks and the same errors, on any graph.
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from aegis_graph import (
    GraphError,
    InvalidTransitionError,
    Task,
    TaskNotReadyError,
    TaskQueue,
    TaskState,
    UnknownTaskError,
)
from hypothesis import given

from tests.graph.test_graph_batch import error_of, snapshot
from tests.graph.test_graph_properties import Graph, build, dags


def _queue() -> TaskQueue:
    return TaskQueue([Task("a"), Task("b", depends_on=["a"]), Task("c")])


def test_start_takes_a_task_from_ready() -> None:
    q = _queue()
    first = q.ready()[0]
    assert q.start(first) is first
    assert q.state("a") is TaskState.RUNNING
    assert q.running_tasks() == ["a"]
    q.complete("a")
    assert q.start(q.ready()[0]).id == "b"


def test_a_task_stands_for_its_id() -> None:
    q = _queue()
    # An equal task made elsewhere claims the queue's own task.
    assert q.start(Task("c")) is q.get("c")
    with pytest.raises(InvalidTransitionError, match="'c'"):
        q.start(Task("c"))
    with pytest.raises(TaskNotReadyError, match="'b'"):
        q.start(q.get("b"))
    with pytest.raises(UnknownTaskError, match="'ghost'"):
        q.start(Task("ghost"))
    assert q.state("b") is TaskState.PENDING


def test_start_many_takes_tasks_and_ids_mixed() -> None:
    q = TaskQueue([Task("a"), Task("b"), Task("c"), Task("d", depends_on=["a"])])
    q.start_many(q.ready(2))
    assert q.running_tasks() == ["a", "b"]
    q.start_many(iter([Task("c")]))  # any iterable, as for ids
    assert q.running_tasks() == ["a", "b", "c"]
    q.complete("a")
    q.start_many(["d"])
    assert q.running_tasks() == ["b", "c", "d"]


def test_start_many_with_a_bad_task_changes_nothing() -> None:
    q = TaskQueue([Task("a"), Task("b"), Task("c", depends_on=["a"])])
    before = snapshot(q)
    with pytest.raises(TaskNotReadyError, match="'c'"):
        q.start_many(["a", q.get("b"), q.get("c")])
    assert snapshot(q) == before
    with pytest.raises(InvalidTransitionError, match="'a'"):
        q.start_many([q.get("a"), "a"])  # the same task twice
    assert snapshot(q) == before
    with pytest.raises(TypeError, match="the string"):
        q.start_many("ab")  # still refused, tasks or not


def _step(q: TaskQueue, item: str | Task, action: str) -> object:
    """One call on *q* with *item* (an id or a task); what it returned, or its error."""
    task_id = item.id if isinstance(item, Task) else item
    try:
        if action == "start":
            return q.start(item).id
        if action == "many":
            ready = q.ready(2)
            if isinstance(item, Task):
                q.start_many([*ready, item])
            else:
                q.start_many([*(t.id for t in ready), item])
            return None
        return q.complete(task_id, success=action == "complete")
    except GraphError as error:
        return error_of(error)


@given(
    dag=dags(10),
    steps=st.lists(
        st.tuples(st.integers(0, 11), st.sampled_from(["start", "many", "complete", "fail"])),
        max_size=30,
    ),
)
def test_tasks_and_ids_drive_a_queue_the_same_way(
    dag: tuple[list[str], Graph], steps: list[tuple[int, str]]
) -> None:
    declared, graph = dag
    by_id, by_task = TaskQueue(build(declared, graph)), TaskQueue(build(declared, graph))
    names = [*declared, "ghost"]
    for pick, action in steps:
        task_id = names[pick % len(names)]
        # A fresh Task with the id: equal to the queue's own one, not the same object.
        task = Task(task_id, depends_on=graph.get(task_id, []))
        assert _step(by_id, task_id, action) == _step(by_task, task, action)
        assert snapshot(by_id) == snapshot(by_task)
