"""Checkpoint stores and resume plans: commit on finish, crash-safe files, per-task decisions."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest
from aegis_gov import (
    AgentConfig,
    AuthenticationError,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    EchoAdapter,
    IncompatibleResumeError,
    Message,
    OllamaAdapter,
    OpenMultiAgent,
    ResumePlan,
    RunCancelledError,
    RunEvent,
    RunResult,
    ScriptedAdapter,
    Task,
    TaskResult,
    TaskState,
    TaskSucceeded,
    Team,
    ToolRegistry,
    UnknownRunError,
)
from hypothesis import given
from hypothesis import strategies as st


def _answer(messages: Sequence[Message]) -> str:
    prompt = next(m.content for m in reversed(messages) if m.role == "user")
    return f"{prompt.splitlines()[0]}!"


TASKS = [
    Task(id="research", description="research", agent="a"),
    Task(id="draft", description="draft", agent="a", depends_on=["research"]),
    Task(id="facts", description="facts", agent="b", depends_on=["research"]),
    Task(id="publish", description="publish", agent="a", depends_on=["draft", "facts"]),
]


def _team(adapter: ScriptedAdapter, *, system: str = "", tools: Sequence[str] = ()) -> Team:
    return OpenMultiAgent.create_team(
        "t",
        AgentConfig(name="a", adapter=adapter, system_prompt=system),
        AgentConfig(name="b", adapter=adapter, tools=tools),
    )


def _asked(adapter: ScriptedAdapter) -> list[str]:
    return [call.messages[-1].content.splitlines()[0] for call in adapter.calls]


# -- the store ---------------------------------------------------------------------------------


def test_each_task_is_committed_before_its_success_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    seen_in_store: dict[str, bool] = {}

    def on_event(event: RunEvent) -> None:
        if isinstance(event, TaskSucceeded):
            with Checkpoint(path) as other:  # another connection, as another process would
                run = other.load(other.runs()[0].run_id)
            seen_in_store[event.task_id] = event.task_id in run

    adapter = ScriptedAdapter(_answer)
    with Checkpoint(path) as store:
        result = OpenMultiAgent().run_tasks(
            TASKS, _team(adapter), on_event=on_event, checkpoint=store
        )
        assert seen_in_store == dict.fromkeys(("research", "draft", "facts", "publish"), True)
        assert result.run_id is not None
        stored = store.load(result.run_id)
        assert stored == result
        [info] = store.runs()
    assert info.run_id == result.run_id
    assert info.status == "finished"
    assert dict(info.counts) == {"done": 4}
    assert info.tasks == 4
    assert info.name == "t"
    assert info.input_tokens == result.usage.input_tokens
    assert info.finished_at is not None
    assert not info.killed


def test_a_stored_run_round_trips_failures_skips_and_unfinished_tasks(tmp_path: Path) -> None:
    def reply(messages: Sequence[Message]) -> str:
        if messages[-1].content.startswith("draft"):
            raise AuthenticationError("s", "bad key", status_code=401)
        return _answer(messages)

    with Checkpoint(tmp_path / "runs.db", label="my pipeline") as store:
        result = OpenMultiAgent().run_tasks(TASKS, _team(ScriptedAdapter(reply)), checkpoint=store)
        assert result.summary() == {"done": 2, "failed": 1, "skipped": 1}
        stored = store.load(result.run_id or "")
        assert stored == result
        assert stored["publish"].blamed == "draft"
        assert RunResult.from_json(stored.to_json()) == stored
        assert store.runs()[0].name == "my pipeline"


def test_a_run_cancelled_by_ctrl_c_is_recorded_cancelled(tmp_path: Path) -> None:
    def reply(messages: Sequence[Message]) -> str:
        if messages[-1].content.startswith("draft"):
            raise KeyboardInterrupt
        return _answer(messages)

    with Checkpoint(tmp_path / "runs.db") as store:
        with pytest.raises(RunCancelledError) as info:
            OpenMultiAgent().run_tasks(TASKS[:2], _team(ScriptedAdapter(reply)), checkpoint=store)
        [run] = store.runs()
        assert run.status == "cancelled"
        assert store.load(run.run_id) == info.value.result


def test_a_failing_store_is_logged_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Checkpoint):
        def record(self, run_id: str, results: Sequence[object]) -> None:
            raise CheckpointError("disk full (simulated)")

    with Broken(tmp_path / "runs.db") as store, caplog.at_level(logging.ERROR):
        result = OpenMultiAgent().run_tasks(
            TASKS, _team(ScriptedAdapter(_answer)), checkpoint=store
        )
    assert result.summary() == {"done": 4}
    assert "checkpoint: could not record research" in caplog.text


def test_async_runs_checkpoint_too(tmp_path: Path) -> None:
    with Checkpoint(tmp_path / "runs.db") as store:
        result = asyncio.run(
            OpenMultiAgent().arun_tasks(TASKS, _team(ScriptedAdapter(_answer)), checkpoint=store)
        )
        assert store.load(result.run_id or "") == result


def test_two_runs_write_to_one_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    both_running = threading.Barrier(2)

    def reply(messages: Sequence[Message]) -> str:
        if messages[-1].content.startswith("draft"):
            both_running.wait(timeout=10)  # each run is mid-way when the other commits
        return _answer(messages)

    results: list[RunResult] = []

    def run() -> None:
        with Checkpoint(path) as store:  # a handle each, as two processes would have
            results.append(
                OpenMultiAgent().run_tasks(TASKS, _team(ScriptedAdapter(reply)), checkpoint=store)
            )

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2
    with Checkpoint(path) as store:
        runs = store.runs()
        assert {run.run_id for run in runs} == {r.run_id for r in results}
        assert runs[0].fingerprint == runs[1].fingerprint != ""  # the same pipeline
        for result in results:
            assert store.load(result.run_id or "") == result


def test_bad_store_files_give_one_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database, just some text" * 200)
    with pytest.raises(CheckpointError, match=r"garbage\.db: not an aegis checkpoint store"):
        Checkpoint(garbage)

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(CheckpointError, match=r"foreign\.db: an SQLite database of something"):
        Checkpoint(foreign)

    newer = tmp_path / "newer.db"
    Checkpoint(newer).close()
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE aegis_meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(CheckpointError, match="version 99 was written by a newer aegis"):
        Checkpoint(newer)

    with pytest.raises(CheckpointError, match="cannot open"):
        Checkpoint(tmp_path / "no" / "such" / "dir" / "runs.db")


def test_an_unreadable_stored_result_names_its_task(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with Checkpoint(path) as store:
        run_id = (
            OpenMultiAgent()
            .run_tasks(TASKS, _team(ScriptedAdapter(_answer)), checkpoint=store)
            .run_id
        )
    with sqlite3.connect(path) as db:
        db.execute("UPDATE aegis_tasks SET result = '{\"x\": 1' WHERE task_id = '\"draft\"'")
    with Checkpoint(path) as store, pytest.raises(CheckpointError, match="task 'draft'"):
        store.load(run_id or "")


def test_an_unknown_run_id_lists_the_latest(tmp_path: Path) -> None:
    with Checkpoint(tmp_path / "runs.db") as store:
        with pytest.raises(UnknownRunError, match="the store has no runs"):
            store.load("nope")
        run_id = (
            OpenMultiAgent()
            .run_tasks(TASKS[:1], _team(ScriptedAdapter(_answer)), checkpoint=store)
            .run_id
        )
        with pytest.raises(UnknownRunError, match=f"no run with id 'nope'; latest: {run_id}"):
            store.load("nope")


def test_checkpoint_satisfies_the_protocol(tmp_path: Path) -> None:
    with Checkpoint(tmp_path / "runs.db") as store:
        assert isinstance(store, CheckpointStore)


# -- resuming from a store ------------------------------------------------------------------


def test_resuming_a_stored_run_asks_only_for_what_had_not_finished(tmp_path: Path) -> None:
    def reply(messages: Sequence[Message]) -> str:
        if messages[-1].content.startswith("facts"):
            raise KeyboardInterrupt  # the run dies after research and draft
        return _answer(messages)

    with Checkpoint(tmp_path / "runs.db") as store:
        with pytest.raises(RunCancelledError):
            OpenMultiAgent().run_tasks(TASKS, _team(ScriptedAdapter(reply)), checkpoint=store)
        first = store.runs()[0].run_id
        adapter = ScriptedAdapter(_answer)
        result = OpenMultiAgent().run_tasks(
            TASKS, _team(adapter), resume=store.load(first), checkpoint=store
        )
        assert result.summary() == {"done": 4}
        assert sorted(_asked(adapter)) == ["facts", "publish"]
        second = store.runs()[0]
        assert second.run_id == result.run_id
        assert second.resumed_from == first
        assert second.fingerprint == store.runs()[1].fingerprint
        edited = [*TASKS[:3], Task(id="publish", description="other", agent="a")]
        third = OpenMultiAgent().run_tasks(edited, _team(adapter), checkpoint=store)
        assert store.runs()[0].run_id == third.run_id
        assert store.runs()[0].fingerprint != second.fingerprint
        assert store.load(second.run_id) == result  # the kept results are in the new run too


# -- resume plans -------------------------------------------------------------------------------


def _first_run() -> RunResult:
    return OpenMultiAgent().run_tasks(TASKS, _team(ScriptedAdapter(_answer)))


def _plan(tasks: Sequence[Task], team: Team, previous: RunResult) -> ResumePlan:
    return OpenMultiAgent().plan_resume(tasks, team, previous)


def test_an_unchanged_pipeline_keeps_everything_even_reordered() -> None:
    first = _first_run()
    plan = _plan(list(reversed(TASKS)), _team(ScriptedAdapter(_answer)), first)
    assert plan.kept == ("publish", "facts", "draft", "research")  # the new declaration order
    assert dict(plan.rerun) == {}
    adapter = ScriptedAdapter(_answer)
    assert OpenMultiAgent().run_tasks(TASKS, _team(adapter), resume=first) == first.__class__(
        results=dict(first.items()), team="t"
    )
    assert adapter.calls == []


def test_a_changed_description_reruns_the_task_and_waits_downstream() -> None:
    first = _first_run()
    edited = [
        TASKS[0],
        Task(id="draft", description="draft v2", agent="a", depends_on=["research"]),
        *TASKS[2:],
    ]
    adapter = ScriptedAdapter(_answer)
    plan = _plan(edited, _team(adapter), first)
    assert plan.kept == ("research", "facts")
    assert plan.rerun["draft"] == "its description changed"
    assert plan.rerun["publish"].startswith("upstream 'draft' runs again")
    result = OpenMultiAgent().run_tasks(edited, _team(adapter), resume=plan)
    assert _asked(adapter) == ["draft v2", "publish"]  # draft's output changed: publish re-ran
    assert result["draft"].output == "draft v2!"


def test_a_changed_system_prompt_or_tools_reruns_that_agents_tasks() -> None:
    first = _first_run()
    plan = _plan(TASKS, _team(ScriptedAdapter(_answer), system="Be terse."), first)
    assert set(plan.rerun) == {"research", "draft", "publish", "facts"}
    assert plan.rerun["research"] == "its agent's system prompt changed"
    assert plan.rerun["facts"].startswith("upstream 'research'")


def test_a_changed_model_reruns_the_task() -> None:
    first = _first_run()
    team = OpenMultiAgent.create_team(
        "t",
        AgentConfig(name="a", adapter=ScriptedAdapter(_answer)),
        AgentConfig(name="b", adapter=EchoAdapter()),
    )
    plan = _plan(TASKS, team, first)
    assert plan.kept == ("research", "draft")
    assert plan.rerun["facts"] == "its agent's model or endpoint changed"


def test_removed_and_added_tasks() -> None:
    first = _first_run()
    edited = [
        *TASKS[:3],
        Task(id="summary", description="summary", agent="a", depends_on=["draft"]),
    ]
    plan = _plan(edited, _team(ScriptedAdapter(_answer)), first)
    assert plan.kept == ("research", "draft", "facts")
    assert dict(plan.rerun) == {"summary": "new task"}
    assert plan.dropped == ("publish",)
    assert "drop publish: no longer in the pipeline" in plan.explain()


def test_a_plan_for_other_tasks_is_refused() -> None:
    first = _first_run()
    plan = _plan(TASKS, _team(ScriptedAdapter(_answer)), first)
    with pytest.raises(ValueError, match="made for other tasks"):
        OpenMultiAgent().run_tasks(TASKS[:2], _team(ScriptedAdapter(_answer)), resume=plan)


def test_a_done_task_without_output_cannot_be_resumed() -> None:
    data = _first_run().to_dict()
    tasks = data["tasks"]
    assert isinstance(tasks, list)
    tasks[0]["output"] = None
    with pytest.raises(IncompatibleResumeError, match="'research' is recorded DONE but has no"):
        _plan(TASKS, _team(ScriptedAdapter(_answer)), RunResult.from_dict(data))


@given(
    deps=st.lists(st.sets(st.integers(0, 7), max_size=3), min_size=1, max_size=8),
    done=st.sets(st.integers(0, 7)),
    edited=st.sets(st.integers(0, 7)),
)
def test_a_kept_task_only_ever_depends_on_kept_tasks(
    deps: list[set[int]], done: set[int], edited: set[int]
) -> None:
    tasks = [
        Task(id=f"t{i}", agent="a", depends_on=[f"t{d}" for d in sorted(ds) if d < i])
        for i, ds in enumerate(deps)
    ]
    team = _team(ScriptedAdapter(_answer))
    base = OpenMultiAgent().run_tasks(tasks, team)
    previous = RunResult(
        results={
            t: (r if int(t[1:]) in done else r.__class__(task_id=t, status=TaskState.FAILED))
            for t, r in base.items()
        },
        team="t",
    )
    now = [
        Task(
            id=t.id, description="edited" if i in edited else "", agent="a", depends_on=t.depends_on
        )
        for i, t in enumerate(tasks)
    ]
    plan = _plan(now, team, previous)
    kept = set(plan.kept)
    by_id = {t.id: t for t in now}
    assert kept | set(plan.rerun) == set(by_id)
    assert not kept & set(plan.rerun)
    for task_id in kept:
        assert set(by_id[task_id].depends_on) <= kept
        assert int(task_id[1:]) in done
        assert int(task_id[1:]) not in edited
    # Nothing edited and everything done: everything is kept.
    if not edited and done >= set(range(len(tasks))):
        assert kept == set(by_id)


def test_a_changed_output_type_reruns_the_task() -> None:
    @dataclasses.dataclass
    class Report:
        title: str

    @dataclasses.dataclass
    class Longer:
        title: str
        body: str

    def answer(messages: Sequence[Message]) -> str:
        return '{"title": "t", "body": "b"}'

    tasks = [Task(id="r", description="report", agent="w")]

    def team(output_type: object) -> Team:
        agent = AgentConfig(name="w", adapter=ScriptedAdapter(answer), output_type=output_type)  # type: ignore[arg-type]
        return OpenMultiAgent.create_team("t", agent)

    first = OpenMultiAgent().run_tasks(tasks, team(Report))
    assert first.ok
    assert _plan(tasks, team(Report), first).kept == ("r",)
    plan = _plan(tasks, team(Longer), first)
    assert dict(plan.rerun) == {"r": "its agent's output settings changed"}


# -- what an adversarial pass found ---------------------------------------------------------


def test_a_store_from_before_runs_had_a_fingerprint_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Checkpoint(path) as store:
        OpenMultiAgent().run_tasks(TASKS[:1], _team(ScriptedAdapter(_answer)), checkpoint=store)
    with sqlite3.connect(path) as db:  # the layout of the first store version, as shipped
        db.execute("ALTER TABLE aegis_runs DROP COLUMN fingerprint")
    with Checkpoint(path) as store:
        [old] = store.runs()
        assert old.fingerprint == ""
        OpenMultiAgent().run_tasks(TASKS[:1], _team(ScriptedAdapter(_answer)), checkpoint=store)
        assert len(store.runs()) == 2


def test_generation_settings_and_the_tool_root_are_part_of_a_definition(tmp_path: Path) -> None:
    def team(adapter: OllamaAdapter) -> Team:
        return OpenMultiAgent.create_team(
            "t", AgentConfig(name="a", adapter=adapter), AgentConfig(name="b", tools=["file_read"])
        )

    tasks = [Task(id="x", agent="a"), Task(id="y", agent="b")]
    short = OllamaAdapter(model="m", max_tokens=3)
    longer = OllamaAdapter(model="m", max_tokens=4000)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    oma_one = OpenMultiAgent(tools=ToolRegistry(root=tmp_path / "one"))
    oma_two = OpenMultiAgent(tools=ToolRegistry(root=tmp_path / "two"))
    done = RunResult(
        results={
            "x": TaskResult(task_id="x", status=TaskState.DONE, output="o"),
            "y": TaskResult(task_id="y", status=TaskState.DONE, output="o"),
        }
    )
    base = oma_one.plan_resume(tasks, team(short), done)
    recorded = RunResult(
        results={
            task_id: attrs.evolve(result, definition=base.definitions[task_id])
            for task_id, result in done.items()
        }
    )
    assert oma_one.plan_resume(tasks, team(short), recorded).kept == ("x", "y")
    plan = oma_two.plan_resume(tasks, team(longer), recorded)
    assert dict(plan.rerun) == {
        "x": "its agent's model or endpoint changed",
        "y": "its agent's tools changed",
    }


def test_a_plan_made_before_an_edit_is_refused() -> None:
    first = _first_run()
    adapter = ScriptedAdapter(_answer)
    plan = _plan(TASKS, _team(adapter), first)
    edited = [Task(id="research", description="CHANGED", agent="a"), *TASKS[1:]]
    with pytest.raises(ValueError, match="differs on 'research'"):
        OpenMultiAgent().run_tasks(edited, _team(adapter), resume=plan)


def test_an_edited_upstream_output_reruns_what_was_built_from_it() -> None:
    data = _first_run().to_dict()
    tasks = data["tasks"]
    assert isinstance(tasks, list)
    tasks[0]["output"] = "TAMPERED"
    plan = _plan(TASKS, _team(ScriptedAdapter(_answer)), RunResult.from_dict(data))
    assert plan.kept == ("research",)
    assert plan.rerun["draft"].startswith("the outputs it was given differ")
    assert plan.rerun["publish"].startswith("upstream 'draft', 'facts' runs again")


def test_a_task_id_with_a_lone_surrogate_is_stored(tmp_path: Path) -> None:
    odd = [Task(id="s\udc80", description="odd", agent="a")]
    with Checkpoint(tmp_path / "runs.db") as store:
        result = OpenMultiAgent().run_tasks(odd, _team(ScriptedAdapter(_answer)), checkpoint=store)
        assert store.load(result.run_id or "") == result


@pytest.mark.parametrize("wrong", ["runs.db", Path("runs.db"), 5, True])
def test_a_checkpoint_that_is_not_a_store_is_a_type_error(wrong: object) -> None:
    with pytest.raises(TypeError, match="checkpoint must be a CheckpointStore"):
        OpenMultiAgent().run_tasks(TASKS, _team(ScriptedAdapter(_answer)), checkpoint=wrong)  # type: ignore[arg-type]


def test_another_programs_database_is_refused_before_it_is_changed(tmp_path: Path) -> None:
    foreign = tmp_path / "app.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE precious (x)")
    db.execute("INSERT INTO precious VALUES (1)")
    db.commit()
    db.close()
    before = foreign.read_bytes()
    with pytest.raises(CheckpointError, match="something else"):
        Checkpoint(foreign)
    assert foreign.read_bytes() == before  # not switched to WAL: its header is as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # no -wal or -shm left
