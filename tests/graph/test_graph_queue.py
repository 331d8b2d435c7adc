from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable

import pytest
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


def snapshot(q: TaskQueue) -> tuple[object, ...]:
    return (
        [q.state(t.id) for t in q.tasks],
        [q.skip_reason(t.id) for t in q.tasks],
        [q.blame(t.id) for t in q.tasks],
        [t.id for t in q.ready()],
        q.is_finished,
    )


def finished(q: TaskQueue) -> bool:
    # A function, not the property, so mypy does not narrow it across state changes.
    return q.is_finished


def diamond(*, stop_on_failure: bool = False) -> TaskQueue:
    return TaskQueue(
        [
            Task("research", agent="researcher"),
            Task("draft", depends_on=["research"]),
            Task("translate", depends_on=["draft"]),
            Task("publish", depends_on=["draft"]),
            Task("other"),
        ],
        stop_on_failure=stop_on_failure,
    )


def test_article_example_verbatim() -> None:
    q = TaskQueue(
        [
            Task(id="fetch", description="Fetch data"),
            Task(id="process", description="Process data", depends_on=["fetch"]),
            Task(id="report", description="Write report", depends_on=["process"]),
        ],
        stop_on_failure=False,
    )
    q.complete("fetch", success=False)
    assert q.skipped_tasks() == ["process", "report"]
    assert q.summary() == {"failed": 1, "skipped": 2}
    assert q.blame("report") == "fetch"
    assert q.blame("process") == "fetch"
    assert q.skip_reason("report") is SkipReason.UPSTREAM_FAILED
    assert finished(q)


def test_happy_path_runs_in_dependency_order() -> None:
    q = diamond()
    assert [t.id for t in q.ready()] == ["research", "other"]
    assert q.start("research").agent == "researcher"
    assert q.state("research") is TaskState.RUNNING
    assert q.running_tasks() == ["research"]
    assert [t.id for t in q.ready()] == ["other"]
    assert q.complete("research") == []
    assert [t.id for t in q.ready()] == ["draft", "other"]
    q.complete("draft")  # a ready PENDING task may be completed directly, as in the article
    assert [t.id for t in q.ready()] == ["translate", "publish", "other"]
    for task_id in ("translate", "publish", "other"):
        q.start(task_id)
        q.complete(task_id)
    assert finished(q)
    assert q.done_tasks() == ["research", "draft", "translate", "publish", "other"]
    assert q.summary() == {"done": 5}
    assert q.ready() == []


def test_failure_skips_only_descendants_and_independent_branch_goes_on() -> None:
    q = diamond()
    q.complete("research")
    q.start("draft")
    assert q.complete("draft", success=False) == ["translate", "publish"]
    assert q.failed_tasks() == ["draft"]
    assert [t.id for t in q.ready()] == ["other"]
    assert not finished(q)
    q.complete("other")
    assert finished(q)
    assert q.summary() == {"done": 2, "failed": 1, "skipped": 2}
    assert q.blame("publish") == "draft"
    assert q.blame("other") is None
    assert q.skip_reason("other") is None


def test_blame_points_at_root_failure_not_intermediate_skip() -> None:
    q = TaskQueue(
        [
            Task("a"),
            Task("b"),
            Task("c", depends_on=["a"]),
            Task("d", depends_on=["c", "b"]),
            Task("e", depends_on=["d"]),
        ]
    )
    assert q.complete("a", success=False) == ["c", "d", "e"]
    assert q.blame("e") == "a"
    # A later failure upstream of an already skipped task does not re-blame it.
    assert q.complete("b", success=False) == []
    assert q.blame("d") == "a"
    assert q.summary() == {"failed": 2, "skipped": 3}


def test_stop_on_failure_halts_everything_pending() -> None:
    q = diamond(stop_on_failure=True)
    assert q.stop_on_failure
    q.start("research")
    q.start("other")
    assert q.complete("research", success=False) == ["draft", "translate", "publish"]
    assert all(q.skip_reason(t) is SkipReason.STOPPED for t in q.skipped_tasks())
    assert q.blame("draft") is None
    assert q.ready() == []
    assert not finished(q)
    assert q.complete("other") == []  # a running task may still finish
    assert finished(q)
    assert q.summary() == {"done": 1, "failed": 1, "skipped": 3}


def test_halt_cancels_pending_and_lets_running_finish() -> None:
    q = diamond()
    q.start("research")
    assert q.halt() == ["draft", "translate", "publish", "other"]
    assert q.skip_reason("other") is SkipReason.CANCELLED
    assert q.ready() == []
    assert q.pending_tasks() == []
    assert q.halt(SkipReason.STOPPED) == []
    assert q.complete("research") == []
    assert q.ready() == []  # a skipped dependent never becomes ready
    assert finished(q)
    assert q.summary() == {"done": 1, "skipped": 4}


def test_resume_with_completed_tasks() -> None:
    q = TaskQueue(diamond().tasks, completed=["research", "draft"])
    assert q.done_tasks() == ["research", "draft"]
    assert [t.id for t in q.ready()] == ["translate", "publish", "other"]
    assert q.summary() == {"pending": 3, "done": 2}
    done = TaskQueue(diamond().tasks, completed=[t.id for t in diamond().tasks])
    assert done.is_finished
    assert done.ready() == []


def test_resume_errors() -> None:
    with pytest.raises(InconsistentResumeError, match=r"'translate'.*'draft'") as info:
        TaskQueue(diamond().tasks, completed=["research", "translate"])
    assert info.value.task_id == "translate"
    assert info.value.waiting_on == ("draft",)
    with pytest.raises(UnknownTaskError, match="'nope'") as unknown:
        TaskQueue(diamond().tasks, completed=["nope"])
    assert unknown.value.task_id == "nope"


def test_graph_queries() -> None:
    q = diamond()
    assert len(q) == 5
    assert "draft" in q
    assert "nope" not in q
    assert [t.id for t in q] == [t.id for t in q.tasks]
    assert q.get("draft").depends_on == ("research",)
    assert q.dependencies("draft") == ("research",)
    assert q.dependents("draft") == ("translate", "publish")
    assert q.dependents("other") == ()
    assert q.generations() == [["research", "other"], ["draft"], ["translate", "publish"]]
    assert q.topological_order() == ["research", "other", "draft", "translate", "publish"]
    assert repr(q) == "TaskQueue(5 tasks, {'pending': 5})"


def test_generations_of_out_of_order_declaration() -> None:
    q = TaskQueue([Task("c", depends_on=["b"]), Task("b", depends_on=["a"]), Task("a")])
    assert q.generations() == [["a"], ["b"], ["c"]]
    assert q.topological_order() == ["a", "b", "c"]


def test_task_state_values_and_terminality() -> None:
    assert [s.value for s in TaskState] == ["pending", "running", "done", "failed", "skipped"]
    assert [s.is_terminal for s in TaskState] == [False, False, True, True, True]
    assert [r.value for r in SkipReason] == [
        "upstream_failed",
        "stopped",
        "cancelled",
        "budget_spent",
    ]


def test_task_is_a_frozen_value() -> None:
    task = Task("b", "desc", "agent", ["a"])
    assert task.depends_on == ("a",)
    assert task == Task(id="b", description="desc", agent="agent", depends_on=("a",))
    assert hash(task) == hash(Task("b", "desc", "agent", ("a",)))
    with pytest.raises(AttributeError):
        task.id = "c"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match", "task_id"),
    [
        ({"id": ""}, "task id must be a non-empty string, got ''", None),
        ({"id": 3}, "task id must be a non-empty string, got 3", None),
        ({"id": "a", "depends_on": "b"}, r"'a': depends_on must be a sequence .* 'b'", "a"),
        ({"id": "a", "depends_on": ["a"]}, "task 'a' depends on itself", "a"),
        ({"id": "a", "depends_on": ["b", "b"]}, "task 'a' depends on 'b' twice", "a"),
        ({"id": "a", "depends_on": [""]}, "every dependency must be a non-empty string", "a"),
        ({"id": "a", "depends_on": [None]}, "got None", "a"),
        ({"id": "a", "description": None}, "'a': description must be a string", "a"),
        ({"id": "a", "agent": 1}, "'a': agent must be a string or None, got 1", "a"),
    ],
)
def test_invalid_task(kwargs: dict[str, object], match: str, task_id: str | None) -> None:
    with pytest.raises(InvalidTaskError, match=match) as info:
        Task(**kwargs)  # type: ignore[arg-type]
    assert info.value.task_id == task_id
    assert isinstance(info.value, GraphError)
    assert isinstance(info.value, ValueError)


def test_queue_rejects_non_tasks() -> None:
    with pytest.raises(InvalidTaskError, match="expected a Task, got 'a'"):
        TaskQueue(["a"])  # type: ignore[list-item]


def test_duplicate_task() -> None:
    with pytest.raises(DuplicateTaskError, match="duplicate task id 'b'") as info:
        TaskQueue([Task("a"), Task("b"), Task("c"), Task("b")])
    assert info.value.task_id == "b"


def test_unknown_dependency() -> None:
    with pytest.raises(
        UnknownDependencyError, match="task 'c' depends on unknown task 'x'"
    ) as info:
        TaskQueue([Task("a"), Task("c", depends_on=["a", "x"])])
    assert (info.value.task_id, info.value.dependency) == ("c", "x")


def test_cycle_is_reported_in_depends_on_order() -> None:
    tasks = [
        Task("ok"),
        Task("a", depends_on=["ok", "b"]),
        Task("b", depends_on=["c"]),
        Task("c", depends_on=["a"]),
    ]
    with pytest.raises(CyclicDependencyError) as info:
        TaskQueue(tasks)
    assert info.value.cycle == ("a", "b", "c", "a")
    assert str(info.value) == "dependency cycle: a -> b -> c -> a"


def test_huge_cycle_message_is_shortened_but_cycle_whole() -> None:
    n = 1000
    tasks = [Task(f"t{i}", depends_on=[f"t{(i + 1) % n}"]) for i in range(n)]
    with pytest.raises(CyclicDependencyError) as info:
        TaskQueue(tasks)
    cycle = info.value.cycle
    assert len(cycle) == n + 1
    assert cycle[0] == cycle[-1] == "t0"
    assert cycle[:3] == ("t0", "t1", "t2")
    assert str(info.value) == (
        "dependency cycle: t0 -> t1 -> t2 -> t3 -> t4 -> ... -> t998 -> t999 -> t0 (1000 tasks)"
    )


def test_unknown_task_everywhere() -> None:
    q = diamond()
    before = snapshot(q)
    calls: list[Callable[[str], object]] = [
        q.start,
        q.complete,
        q.state,
        q.get,
        q.blame,
        q.skip_reason,
        q.dependencies,
        q.dependents,
    ]
    for call in calls:
        with pytest.raises(UnknownTaskError, match="unknown task 'nope'") as info:
            call("nope")
        assert info.value.task_id == "nope"
    with pytest.raises(UnknownTaskError):
        q.start(["unhashable"])  # type: ignore[arg-type]
    assert snapshot(q) == before


def test_not_ready_and_invalid_transitions_change_nothing() -> None:
    q = diamond()
    before = snapshot(q)
    for call in (q.start, q.complete):
        with pytest.raises(
            TaskNotReadyError, match="'draft' is not ready: waiting on 'research'"
        ) as info:
            call("draft")
        assert info.value.task_id == "draft"
        assert info.value.waiting_on == ("research",)
    assert snapshot(q) == before

    q.start("research")
    running = snapshot(q)
    with pytest.raises(
        InvalidTransitionError, match="cannot start task 'research': it is running"
    ) as err:
        q.start("research")
    assert (err.value.task_id, err.value.state) == ("research", TaskState.RUNNING)
    assert snapshot(q) == running

    q.complete("research", success=False)
    finished = snapshot(q)
    for call, verb in ((q.start, "start"), (q.complete, "complete")):
        with pytest.raises(
            InvalidTransitionError, match=f"cannot {verb} task 'research': it is failed"
        ):
            call("research")
        with pytest.raises(
            InvalidTransitionError, match=f"cannot {verb} task 'draft': it is skipped"
        ) as skipped:
            call("draft")
        assert skipped.value.state is TaskState.SKIPPED
    assert snapshot(q) == finished


def test_mermaid() -> None:
    q = TaskQueue([Task('say "hi"'), Task("a#b <c>", depends_on=['say "hi"'])])
    assert q.to_mermaid() == (
        'flowchart TD\n    t0["say #quot;hi#quot;"]\n    t1["a#35;b #lt;c#gt;"]\n    t0 --> t1\n'
    )
    q.complete('say "hi"', success=False)
    coloured = q.to_mermaid(with_state=True)
    assert coloured.startswith(q.to_mermaid())
    for state in TaskState:
        assert f"    classDef {state.value} fill:" in coloured
    assert "    class t0 failed\n" in coloured
    assert "    class t1 skipped\n" in coloured
    assert "class t0 pending" not in coloured


def test_hundred_thousand_chain_has_no_recursion_problem() -> None:
    n = 100_000
    assert n > sys.getrecursionlimit()
    ids = [f"t{i}" for i in range(n)]
    # Declared backwards so construction takes the full cycle check, not the in-order fast path.
    tasks = [Task(ids[i], depends_on=[ids[i - 1]] if i else []) for i in reversed(range(n))]
    q = TaskQueue(tasks)
    assert q.topological_order()[:2] == ["t0", "t1"]
    assert len(q.generations()) == n
    skipped = q.complete("t0", success=False)
    assert len(skipped) == n - 1
    assert (skipped[0], skipped[-1]) == ("t99999", "t1")  # declaration order
    assert q.blame("t99999") == "t0"
    cyclic = [Task(ids[i], depends_on=[ids[(i + 1) % n]]) for i in range(n)]
    with pytest.raises(CyclicDependencyError) as info:
        TaskQueue(cyclic)
    assert len(info.value.cycle) == n + 1


def test_threads_start_every_task_exactly_once() -> None:
    width, depth, workers = 20, 10, 4
    tasks = [
        Task(
            f"{layer}-{k}",
            depends_on=[f"{layer - 1}-{j}" for j in range(width) if (j + k) % 3 == 0]
            if layer
            else [],
        )
        for layer in range(depth)
        for k in range(width)
    ]
    q = TaskQueue(tasks)
    barrier = threading.Barrier(workers)
    started: Counter[str] = Counter()
    order: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            while not q.is_finished:
                for task in q.ready():
                    try:
                        q.start(task.id)
                    except (InvalidTransitionError, TaskNotReadyError):
                        continue  # another worker claimed it first
                    with lock:
                        started[task.id] += 1
                        order.append(task.id)
                    assert all(q.state(dep) is TaskState.DONE for dep in task.depends_on)
                    q.complete(task.id)
        except BaseException as exc:  # pragma: no cover  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
    assert started == Counter({t.id: 1 for t in tasks})
    assert q.summary() == {"done": width * depth}
