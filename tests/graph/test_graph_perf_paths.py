"""The fast paths of TaskQueue's construction: each gives the same answers as the slow one."""

from __future__ import annotations

from itertools import pairwise

import hypothesis.strategies as st
import pytest
from aegis_graph import (
    CyclicDependencyError,
    DuplicateTaskError,
    Task,
    TaskQueue,
    UnknownDependencyError,
)
from hypothesis import given

Graph = dict[str, list[str]]


def cycle_of(tasks: list[Task]) -> tuple[str, ...]:
    with pytest.raises(CyclicDependencyError) as info:
        TaskQueue(tasks)
    return info.value.cycle


def assert_real_cycle(graph: Graph, cycle: tuple[str, ...]) -> None:
    """*cycle* is a simple cycle of *graph* in depends_on order, first id repeated last."""
    assert len(cycle) >= 3
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    for task_id, dep in pairwise(cycle):
        assert dep in graph[task_id], (task_id, dep)


def has_cycle(graph: Graph) -> bool:
    """Reference check: repeatedly drop tasks whose dependencies are all dropped."""
    left = dict(graph)
    while True:
        free = [t for t, deps in left.items() if not any(d in left for d in deps)]
        if not free:
            return bool(left)
        for t in free:
            del left[t]


def build(graph: Graph) -> list[Task]:
    return [Task(t, depends_on=deps) for t, deps in graph.items()]


def test_leftovers_downstream_of_a_cycle_are_not_reported() -> None:
    # "down" and "down2" are declared first and wait on the cycle b -> c -> d -> b, so the
    # walk starts off the cycle and must still report only the cycle.
    graph: Graph = {
        "down": ["down2"],
        "down2": ["b", "root"],
        "root": [],
        "b": ["c"],
        "c": ["d"],
        "d": ["b"],
    }
    cycle = cycle_of(build(graph))
    assert_real_cycle(graph, cycle)
    assert set(cycle) == {"b", "c", "d"}


def test_walk_skips_dependencies_kahn_ordered() -> None:
    # c's first dependency (a) is a root Kahn's algorithm ordered; the cycle goes through b.
    graph: Graph = {"c": ["a", "b"], "b": ["c"], "a": []}
    cycle = cycle_of(build(graph))
    assert_real_cycle(graph, cycle)
    assert cycle in {("b", "c", "b"), ("c", "b", "c")}


def test_no_root_single_dependency_with_a_tail() -> None:
    # Every task has one dependency (no root): a and e lead into the cycle b -> c -> d -> b.
    graph: Graph = {"a": ["b"], "e": ["a"], "b": ["c"], "c": ["d"], "d": ["b"]}
    cycle = cycle_of(build(graph))
    assert_real_cycle(graph, cycle)
    assert cycle == ("b", "c", "d", "b")


def test_no_root_several_dependencies() -> None:
    graph: Graph = {"a": ["b", "c"], "b": ["c", "a"], "c": ["a"]}
    cycle = cycle_of(build(graph))
    assert_real_cycle(graph, cycle)


def test_two_task_cycle_without_roots() -> None:
    graph: Graph = {"a": ["b"], "b": ["a"]}
    assert cycle_of(build(graph)) == ("a", "b", "a")


def test_unknown_dependency_wins_over_a_cycle_without_roots() -> None:
    tasks = [Task("a", depends_on=["b"]), Task("b", depends_on=["a", "ghost"])]
    with pytest.raises(UnknownDependencyError) as info:
        TaskQueue(tasks)
    assert (info.value.task_id, info.value.dependency) == ("b", "ghost")


@pytest.mark.parametrize(
    ("tasks", "culprit"),
    [
        # Every task has one dependency; the walk from "a" meets the unknown id itself.
        ([Task("a", depends_on=["ghost"]), Task("b", depends_on=["a"])], ("a", "ghost")),
        # The walk closes the cycle a -> b -> a without visiting "c", whose id is unknown.
        (
            [
                Task("a", depends_on=["b"]),
                Task("b", depends_on=["a"]),
                Task("c", depends_on=["ghost"]),
            ],
            ("c", "ghost"),
        ),
    ],
)
def test_unknown_dependency_wins_when_every_task_has_one_dependency(
    tasks: list[Task], culprit: tuple[str, str]
) -> None:
    with pytest.raises(UnknownDependencyError) as info:
        TaskQueue(tasks)
    assert (info.value.task_id, info.value.dependency) == culprit


def test_duplicate_wins_over_a_cycle_without_roots() -> None:
    tasks = [Task("a", depends_on=["b"]), Task("b", depends_on=["a"]), Task("a", depends_on=["b"])]
    with pytest.raises(DuplicateTaskError, match="'a'"):
        TaskQueue(tasks)


def test_empty_queue_is_finished() -> None:
    q = TaskQueue([])
    assert q.is_finished
    assert q.ready() == []
    assert q.summary() == {}


def test_declared_out_of_order_runs_in_dependency_order() -> None:
    # Not in declaration order, so construction takes Kahn's check rather than the fast path.
    q = TaskQueue([Task("c", depends_on=["b"]), Task("b", depends_on=["a"]), Task("a")])
    order: list[str] = []
    while not q.is_finished:
        for task in q.ready():
            q.start(task.id)
            q.complete(task.id)
            order.append(task.id)
    assert order == ["a", "b", "c"]
    assert q.dependents("a") == ("b",)


@st.composite
def digraphs(draw: st.DrawFn) -> Graph:
    """Any dependency graph without self-loops, cyclic or not."""
    n = draw(st.integers(1, 9))
    ids = [f"t{i}" for i in range(n)]
    return {
        t: draw(st.lists(st.sampled_from([d for d in ids if d != t]), unique=True)) if n > 1 else []
        for t in ids
    }


@given(digraphs())
def test_any_graph_is_accepted_or_reports_a_real_cycle(graph: Graph) -> None:
    tasks = build(graph)
    if has_cycle(graph):
        assert_real_cycle(graph, cycle_of(tasks))
    else:
        q = TaskQueue(tasks)
        assert sorted(q.topological_order()) == sorted(graph)
        assert {t.id for t in q.ready()} == {t for t, deps in graph.items() if not deps}
