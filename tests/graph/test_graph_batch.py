"""The batch API and the ready heap: each batch call equals the same single calls in a row.

A state machine drives two queues over one graph: one through the batch calls
(`start_many`, `complete_many`, `start_ready`), the other through the single calls they
stand for. After every step both agree, and `ready`/`ready_ids` (with and without a limit)
list exactly the ready tasks in declaration order, recomputed from scratch from the states.
A batch that would fail raises what the first failing single call raises and leaves its
queue as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.graph.test_graph_properties import Graph, build, dags

if TYPE_CHECKING:
    from collections.abc import Callable

Snapshot = tuple[object, ...]


def snapshot(q: TaskQueue) -> Snapshot:
    """Everything observable about a queue's run."""
    ids = [t.id for t in q.tasks]
    return (
        [q.state(t) for t in ids],
        [q.skip_reason(t) for t in ids],
        [q.blame(t) for t in ids],
        q.ready_ids(),
        q.running_tasks(),
        q.summary(),
        q.is_finished,
    )


def error_of(error: GraphError) -> tuple[object, ...]:
    """An error's type and the data it carries."""
    return (type(error), str(error), *sorted(vars(error).items()))


def apply_singles(call: Callable[[str], object], batch: list[str]) -> GraphError | None:
    """Make the single calls in a row; the first error, if any (the calls before it stay)."""
    try:
        for task_id in batch:
            call(task_id)
    except GraphError as error:
        return error
    return None


class BatchMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.declared: list[str] = []
        self.graph: Graph = {}
        self.stop = False
        self.batched: TaskQueue
        self.single: TaskQueue
        self.history: list[tuple[str, str, bool]] = []  # single calls that succeeded

    @initialize(dag=dags(10), stop=st.booleans())
    def setup(self, dag: tuple[list[str], Graph], stop: bool) -> None:
        self.declared, self.graph = dag
        self.stop = stop
        self.batched = TaskQueue(build(*dag), stop_on_failure=stop)
        self.single = TaskQueue(build(*dag), stop_on_failure=stop)

    def rebuild_single(self) -> None:
        """The single-call queue as it was before a failed batch: replay what succeeded."""
        self.single = TaskQueue(build(self.declared, self.graph), stop_on_failure=self.stop)
        for action, task_id, success in self.history:
            if action == "start":
                self.single.start(task_id)
            elif action == "complete":
                self.single.complete(task_id, success=success)
            else:
                self.single.halt()

    def single_start(self, task_id: str) -> None:
        self.single.start(task_id)
        self.history.append(("start", task_id, True))

    def single_complete(self, task_id: str) -> None:
        self.single.complete(task_id)
        self.history.append(("complete", task_id, True))

    def batches(self) -> st.SearchStrategy[list[str]]:
        return st.lists(st.sampled_from([*self.declared, "ghost"]), max_size=6)

    @rule(data=st.data(), success=st.booleans(), start_first=st.booleans())
    def one_task(self, data: st.DataObject, success: bool, start_first: bool) -> None:
        """The same single calls on both queues, so failures and skips happen too."""
        task_id = data.draw(st.sampled_from(self.declared))
        outcomes = []
        for q in (self.batched, self.single):
            steps: list[tuple[str, str, bool]] = []
            try:
                if start_first:
                    q.start(task_id)
                    steps.append(("start", task_id, True))
                q.complete(task_id, success=success)
                steps.append(("complete", task_id, success))
            except GraphError as error:
                steps.append(("error", type(error).__name__, False))
            outcomes.append(steps)
        assert outcomes[0] == outcomes[1]
        self.history += [step for step in outcomes[1] if step[0] != "error"]

    @rule(data=st.data())
    def start_many(self, data: st.DataObject) -> None:
        self.check_batch(data.draw(self.batches()), "start")

    @rule(data=st.data())
    def complete_many(self, data: st.DataObject) -> None:
        self.check_batch(data.draw(self.batches()), "complete")

    def check_batch(self, batch: list[str], action: str) -> None:
        before = snapshot(self.batched)
        logged = len(self.history)
        single_call = self.single_start if action == "start" else self.single_complete
        expected = apply_singles(single_call, batch)
        batch_call = self.batched.start_many if action == "start" else self.batched.complete_many
        if expected is None:
            batch_call(batch)
            return
        with pytest.raises(GraphError) as info:
            batch_call(batch)
        assert error_of(info.value) == error_of(expected)
        assert snapshot(self.batched) == before  # nothing changed
        del self.history[logged:]
        self.rebuild_single()

    @rule(limit=st.one_of(st.none(), st.integers(-1, 12)))
    def start_ready(self, limit: int | None) -> None:
        expected = self.single.ready_ids(limit)
        for task_id in expected:
            self.single_start(task_id)
        assert [t.id for t in self.batched.start_ready(limit)] == expected

    @rule()
    def halt(self) -> None:
        assert self.batched.halt() == self.single.halt()
        self.history.append(("halt", "", True))

    @invariant()
    def queues_agree(self) -> None:
        if not self.declared:
            return
        assert snapshot(self.batched) == snapshot(self.single)

    @invariant()
    def ready_is_the_reference_order(self) -> None:
        if not self.declared:
            return
        q = self.batched
        state = {t: q.state(t) for t in self.declared}
        reference = [
            t
            for t in self.declared
            if state[t] is TaskState.PENDING
            and all(state[d] is TaskState.DONE for d in self.graph[t])
        ]
        for limit in (None, -1, 0, 1, 2, 3, len(reference), len(reference) + 1):
            wanted = reference if limit is None else reference[: max(limit, 0)]
            assert q.ready_ids(limit) == wanted
            assert [t.id for t in q.ready(limit)] == wanted


TestBatchMachine = BatchMachine.TestCase


def wide(n: int) -> TaskQueue:
    """A root, then *n* tasks of which every third waits on the root."""
    return TaskQueue(
        [Task("root"), *(Task(f"t{i}", depends_on=["root"] if i % 3 else []) for i in range(n))]
    )


@given(
    n=st.integers(0, 60),
    taken=st.lists(st.integers(0, 59), max_size=30),
    limits=st.lists(st.one_of(st.none(), st.integers(-1, 20)), min_size=1, max_size=12),
    claim=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_heap_order_survives_tasks_leaving_out_of_order(
    n: int, taken: list[int], limits: list[int | None], claim: list[bool]
) -> None:
    # Tasks started and completed by id in any order leave stale heap entries behind, and
    # small limits take the heap path (a limit under a quarter of the ready tasks).
    q = wide(n)
    q.complete("root")
    for k in taken:
        task_id = f"t{k}"
        if task_id in q and q.state(task_id) is TaskState.PENDING:
            q.start(task_id)
            if k % 2:
                q.complete(task_id, success=k % 4 == 1)
    for limit, claiming in zip(limits, claim, strict=False):
        expected = [t for t in q.pending_tasks() if q.state(t) is TaskState.PENDING]
        expected = expected if limit is None else expected[: max(limit, 0)]
        if claiming:
            assert [t.id for t in q.start_ready(limit)] == expected
            assert all(q.state(t) is TaskState.RUNNING for t in expected)
        else:
            assert q.ready_ids(limit) == expected
            assert [t.id for t in q.ready(limit)] == expected


def test_start_ready_claims_the_first_tasks_and_leaves_the_rest() -> None:
    q = wide(30)
    assert [t.id for t in q.start_ready(2)] == ["root", "t0"]
    assert q.ready_ids(2) == ["t3", "t6"]
    q.complete_many(["root"])
    assert q.ready_ids(3) == ["t1", "t2", "t3"]
    assert [t.id for t in q.start_ready(1)] == ["t1"]
    assert q.running_tasks() == ["t0", "t1"]
    assert q.start_ready(0) == []
    assert q.start_ready(-3) == []
    assert len(q.start_ready()) == 28
    assert q.ready() == []
    assert q.start_ready() == []


def test_complete_many_completes_tasks_made_ready_by_earlier_ones() -> None:
    q = TaskQueue([Task("a"), Task("b", depends_on=["a"]), Task("c", depends_on=["b"]), Task("d")])
    q.start_many(["a"])
    q.complete_many(["a", "b", "c"])
    assert q.done_tasks() == ["a", "b", "c"]
    assert q.ready_ids() == ["d"]
    q.complete_many([])
    q.start_many([])
    assert q.summary() == {"pending": 1, "done": 3}


def test_complete_many_in_the_wrong_order_names_the_waiting_task() -> None:
    q = TaskQueue([Task("a"), Task("b", depends_on=["a"]), Task("c")])
    before = snapshot(q)
    with pytest.raises(TaskNotReadyError) as info:
        q.complete_many(["c", "b", "a"])
    assert (info.value.task_id, info.value.waiting_on) == ("b", ("a",))
    assert snapshot(q) == before


@pytest.mark.parametrize("action", ["start_many", "complete_many"])
def test_an_unknown_id_is_named_and_nothing_changes(action: str) -> None:
    q = TaskQueue([Task("a"), Task("b")])
    q.start("b")
    before = snapshot(q)
    call = getattr(q, action)
    for bad in ("ghost", ["not", "hashable"], 3):
        with pytest.raises(UnknownTaskError) as info:
            call(["a", "b", bad] if action == "complete_many" else ["a", bad])
        assert info.value.task_id == bad
        assert snapshot(q) == before


@pytest.mark.parametrize(
    ("action", "state"), [("start_many", TaskState.RUNNING), ("complete_many", TaskState.DONE)]
)
def test_a_repeated_id_fails_the_second_time(action: str, state: TaskState) -> None:
    q = TaskQueue([Task("a"), Task("b")])
    before = snapshot(q)
    with pytest.raises(InvalidTransitionError) as info:
        getattr(q, action)(["a", "b", "a"])
    assert (info.value.task_id, info.value.state) == ("a", state)
    assert f"cannot {action.removesuffix('_many')} task 'a': it is {state.value}" in str(info.value)
    assert snapshot(q) == before


def test_finished_and_running_tasks_cannot_be_claimed_again() -> None:
    q = TaskQueue([Task("a"), Task("b"), Task("c", depends_on=["a"])])
    q.start_many(["a", "b"])
    with pytest.raises(InvalidTransitionError) as started:
        q.start_many(["b"])
    assert started.value.state is TaskState.RUNNING
    with pytest.raises(TaskNotReadyError) as waiting:
        q.start_many(["c"])
    assert waiting.value.waiting_on == ("a",)
    q.complete_many(["b"])
    with pytest.raises(InvalidTransitionError) as done:
        q.complete_many(["a", "b"])
    assert (done.value.task_id, done.value.state) == ("b", TaskState.DONE)
    assert q.running_tasks() == ["a"]


@pytest.mark.parametrize("action", ["start_many", "complete_many"])
def test_a_bare_string_is_rejected(action: str) -> None:
    q = TaskQueue([Task("a")])
    with pytest.raises(TypeError, match=r"the string 'a' \(write \['a'\]\)"):
        getattr(q, action)("a")
    assert q.state("a") is TaskState.PENDING


def test_halt_empties_the_heap() -> None:
    q = wide(40)
    q.complete("root")
    assert q.ready_ids(2) == ["t0", "t1"]
    q.halt()
    assert q.ready_ids(2) == []
    assert q.start_ready(1) == []


def test_resumed_queue_orders_its_ready_tasks() -> None:
    tasks = [Task("a"), Task("b", depends_on=["a"]), Task("c"), Task("d", depends_on=["a"])]
    q = TaskQueue(tasks, completed=["a"])
    assert q.ready_ids() == ["b", "c", "d"]
    assert [t.id for t in q.start_ready(2)] == ["b", "c"]
