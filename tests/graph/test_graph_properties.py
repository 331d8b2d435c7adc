from __future__ import annotations

from collections import deque
from itertools import pairwise

import hypothesis.strategies as st
import pytest
from aegis_graph import (
    CyclicDependencyError,
    GraphError,
    InvalidTransitionError,
    SkipReason,
    Task,
    TaskNotReadyError,
    TaskQueue,
    TaskState,
    UnknownDependencyError,
    UnknownTaskError,
)
from hypothesis import assume, given
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

Graph = dict[str, list[str]]


@st.composite
def dags(draw: st.DrawFn, max_tasks: int = 12) -> tuple[list[str], Graph]:
    """A random DAG; ids are declared in a random order (so not always topologically)."""
    n = draw(st.integers(1, max_tasks))
    topo = [f"t{i}" for i in range(n)]
    graph: Graph = {
        topo[i]: draw(st.lists(st.sampled_from(topo[:i]), unique=True)) if i else []
        for i in range(n)
    }
    declared = draw(st.permutations(topo))
    return list(declared), graph


def build(declared: list[str], graph: Graph) -> list[Task]:
    return [Task(task_id, depends_on=graph[task_id]) for task_id in declared]


def ancestors(graph: Graph, task_id: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[task_id])
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(graph[dep])
    return seen


@given(dags(), st.data())
def test_random_runs_respect_dependencies_and_cascade(
    dag: tuple[list[str], Graph], data: st.DataObject
) -> None:
    declared, graph = dag
    q = TaskQueue(build(declared, graph))
    failed: list[str] = []
    while not q.is_finished:
        ready = [t.id for t in q.ready()]
        assert ready == [t for t in declared if t in set(ready)]  # declaration order
        task_id = data.draw(st.sampled_from(ready))
        assert all(q.state(dep) is TaskState.DONE for dep in graph[task_id])
        if data.draw(st.booleans()):
            q.start(task_id)
        success = data.draw(st.booleans())
        skipped = q.complete(task_id, success=success)
        if not success:
            failed.append(task_id)
        assert skipped == [t for t in declared if t in set(skipped)]
        assert all(q.blame(t) == task_id for t in skipped)

    states = [q.state(t) for t in declared]
    assert all(s.is_terminal for s in states)
    assert sum(q.summary().values()) == len(declared)
    assert sorted(q.done_tasks() + q.failed_tasks() + q.skipped_tasks()) == sorted(declared)
    assert set(q.failed_tasks()) == set(failed)
    # Skipped exactly when some ancestor failed (they were pending at that moment).
    expected_skipped = {t for t in declared if ancestors(graph, t) & set(failed)}
    assert set(q.skipped_tasks()) == expected_skipped
    for task_id in expected_skipped:
        root = q.blame(task_id)
        assert root in ancestors(graph, task_id)
        assert q.state(root) is TaskState.FAILED
        assert q.skip_reason(task_id) is SkipReason.UPSTREAM_FAILED


@given(dags(), st.data())
def test_stop_on_failure_leaves_nothing_pending(
    dag: tuple[list[str], Graph], data: st.DataObject
) -> None:
    declared, graph = dag
    q = TaskQueue(build(declared, graph), stop_on_failure=True)
    while not q.is_finished:
        task_id = data.draw(st.sampled_from([t.id for t in q.ready()]))
        success = data.draw(st.booleans())
        q.complete(task_id, success=success)
        if not success:
            assert q.ready() == []
            assert q.pending_tasks() == []
            assert all(q.skip_reason(t) is SkipReason.STOPPED for t in q.skipped_tasks())
    assert len(q.failed_tasks()) <= 1


@given(dags(), st.data())
def test_generations_are_a_valid_layering(
    dag: tuple[list[str], Graph], data: st.DataObject
) -> None:
    declared, graph = dag
    q = TaskQueue(build(declared, graph))
    layer_of = {t: k for k, layer in enumerate(q.generations()) for t in layer}
    assert sorted(layer_of) == sorted(declared)
    for task_id, deps in graph.items():
        assert all(layer_of[d] < layer_of[task_id] for d in deps)
        assert q.dependencies(task_id) == tuple(deps)
        for dep in deps:
            assert task_id in q.dependents(dep)
    order = q.topological_order()
    assert all(order.index(d) < order.index(t) for t, deps in graph.items() for d in deps)


@given(dags(), st.data())
def test_injected_back_edge_raises_a_real_cycle(
    dag: tuple[list[str], Graph], data: st.DataObject
) -> None:
    declared, graph = dag
    pairs = [(t, a) for t in declared for a in ancestors(graph, t)]
    assume(pairs)
    descendant, ancestor = data.draw(st.sampled_from(pairs))
    cyclic = {k: list(v) for k, v in graph.items()}
    cyclic[ancestor].insert(data.draw(st.integers(0, len(cyclic[ancestor]))), descendant)
    try:
        TaskQueue(build(declared, cyclic))
    except CyclicDependencyError as err:
        cycle, message = err.cycle, str(err)
    else:  # pragma: no cover
        raise AssertionError("cycle not detected")
    assert len(cycle) >= 3
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    for task_id, dep in pairwise(cycle):
        assert dep in cyclic[task_id]  # task_id depends on dep
    if len(cycle) <= 12:
        assert message == "dependency cycle: " + " -> ".join(cycle)


class Model:
    """The obvious, slow reference: recompute everything from scratch."""

    def __init__(self, graph: Graph, declared: list[str], *, stop: bool) -> None:
        self.graph = graph
        self.declared = declared
        self.stop = stop
        self.state = dict.fromkeys(declared, TaskState.PENDING)

    def waiting(self, task_id: str) -> list[str]:
        return [d for d in self.graph[task_id] if self.state[d] is not TaskState.DONE]

    def ready(self) -> list[str]:
        return [
            t for t in self.declared if self.state[t] is TaskState.PENDING and not self.waiting(t)
        ]

    def check(self, task_id: str, action: str) -> type[GraphError] | None:
        state = self.state[task_id]
        if state is TaskState.PENDING:
            return TaskNotReadyError if self.waiting(task_id) else None
        if action == "complete" and state is TaskState.RUNNING:
            return None
        return InvalidTransitionError

    def skip_all_pending(self) -> list[str]:
        skipped = [t for t in self.declared if self.state[t] is TaskState.PENDING]
        for t in skipped:
            self.state[t] = TaskState.SKIPPED
        return skipped

    def fail(self, task_id: str) -> list[str]:
        self.state[task_id] = TaskState.FAILED
        if self.stop:
            return self.skip_all_pending()
        skipped = []
        for t in self.declared:
            todo, seen = deque(self.graph[t]), set()
            while todo:
                d = todo.popleft()
                if d == task_id and self.state[t] is TaskState.PENDING:
                    skipped.append(t)
                    break
                if d not in seen:
                    seen.add(d)
                    todo.extend(self.graph[d])
        for t in skipped:
            self.state[t] = TaskState.SKIPPED
        return skipped


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.q: TaskQueue
        self.model: Model

    @initialize(dag=dags(8), stop=st.booleans())
    def setup(self, dag: tuple[list[str], Graph], stop: bool) -> None:
        declared, graph = dag
        self.q = TaskQueue(build(declared, graph), stop_on_failure=stop)
        self.model = Model(graph, declared, stop=stop)

    def ids(self) -> list[str]:
        return self.model.declared

    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from([*self.ids(), "unknown"]))
        if task_id == "unknown":
            expected: type[GraphError] | None = UnknownTaskError
        else:
            expected = self.model.check(task_id, "start")
        if expected is None:
            assert self.q.start(task_id).id == task_id
            self.model.state[task_id] = TaskState.RUNNING
        else:
            with pytest.raises(expected):
                self.q.start(task_id)

    @rule(data=st.data(), success=st.booleans())
    def complete(self, data: st.DataObject, success: bool) -> None:
        task_id = data.draw(st.sampled_from(self.ids()))
        expected = self.model.check(task_id, "complete")
        if expected is not None:
            with pytest.raises(expected):
                self.q.complete(task_id, success=success)
            return
        skipped = self.q.complete(task_id, success=success)
        if success:
            self.model.state[task_id] = TaskState.DONE
            assert skipped == []
        else:
            assert skipped == self.model.fail(task_id)

    @rule()
    def halt(self) -> None:
        assert self.q.halt() == self.model.skip_all_pending()

    @invariant()
    def agrees_with_model(self) -> None:
        if not hasattr(self, "model"):
            return
        assert [t.id for t in self.q.ready()] == self.model.ready()
        assert {t: self.q.state(t) for t in self.ids()} == self.model.state
        unfinished = any(not s.is_terminal for s in self.model.state.values())
        assert self.q.is_finished is not unfinished


TestQueueMachine = QueueMachine.TestCase


@st.composite
def graphs_with_unknown_ids(draw: st.DrawFn) -> list[Task]:
    """Any graph over a few ids, cycles allowed, where dependencies may name missing ids.

    Graphs in which every task has a dependency are drawn often on purpose: they take the
    construction path that has no dependency-free task to start from.
    """
    n = draw(st.integers(1, 6))
    ids = [f"t{i}" for i in range(n)]
    every_task_has_one = draw(st.booleans())
    tasks = []
    for task_id in ids:
        others = st.sampled_from([*(i for i in ids if i != task_id), "ghost", "phantom"])
        depends_on = draw(
            st.lists(others, min_size=int(every_task_has_one), max_size=3, unique=True)
        )
        tasks.append(Task(task_id, depends_on=depends_on))
    return tasks


@given(graphs_with_unknown_ids())
def test_an_unknown_dependency_is_always_reported_as_such(tasks: list[Task]) -> None:
    known = {task.id for task in tasks}
    unknown = [(t.id, dep) for t in tasks for dep in t.depends_on if dep not in known]
    if unknown:
        with pytest.raises(UnknownDependencyError) as unknown_info:
            TaskQueue(tasks)
        # The first unknown id in declaration order is the one named.
        assert (unknown_info.value.task_id, unknown_info.value.dependency) == unknown[0]
        return
    try:
        TaskQueue(tasks)
    except CyclicDependencyError as err:
        cycle = err.cycle
    else:
        return
    assert cycle[0] == cycle[-1]
    deps = {task.id: task.depends_on for task in tasks}
    assert all(b in deps[a] for a, b in pairwise(cycle))
