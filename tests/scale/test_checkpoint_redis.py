"""RedisCheckpoint against a real redis-server: the same store semantics as the SQLite one."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
import redis
from aegis_gov import (
    AgentConfig,
    CheckpointError,
    CheckpointStore,
    Message,
    OpenMultiAgent,
    RedisCheckpoint,
    RunCancelledError,
    RunResult,
    ScriptedAdapter,
    Task,
    Team,
    TimelineRecorder,
    UnknownRunError,
)

from tests.scale.conftest import RedisServer

TASKS = [
    Task(id="a", description="a", agent="w"),
    Task(id="b", description="b", agent="w", depends_on=["a"]),
    Task(id="c", description="c", agent="w", depends_on=["a"]),
]


def _answer(messages: Sequence[Message]) -> str:
    return messages[-1].content.splitlines()[0] + "!"


def _team(adapter: ScriptedAdapter) -> Team:
    return OpenMultiAgent.create_team("t", AgentConfig(name="w", adapter=adapter))


def test_a_run_is_stored_listed_and_loaded(redis_server: RedisServer) -> None:
    store = RedisCheckpoint(redis_server.url, prefix="ckpt-roundtrip", label="p.toml")
    assert isinstance(store, CheckpointStore)
    result = OpenMultiAgent().run_tasks(TASKS, _team(ScriptedAdapter(_answer)), checkpoint=store)
    assert result.run_id is not None
    assert store.load(result.run_id) == result
    [info] = store.runs()
    assert info.name == "p.toml"
    assert info.status == "finished"
    assert dict(info.counts) == {"done": 3}
    assert info.input_tokens == result.usage.input_tokens
    with pytest.raises(UnknownRunError, match=f"latest: {result.run_id}"):
        store.load("nope")


def test_the_redis_store_keeps_a_runs_timeline(redis_server: RedisServer) -> None:
    store = RedisCheckpoint(redis_server.url, prefix="ckpt-timeline")
    oma = OpenMultiAgent()
    recorder = TimelineRecorder(TASKS, clock=oma.clock)
    result = recorder.attach(
        oma.run_tasks(TASKS, _team(ScriptedAdapter(_answer)), on_event=recorder, checkpoint=store)
    )
    assert result.run_id is not None
    assert result.timeline is not None
    assert store.load(result.run_id).timeline is None
    store.save_timeline(result.run_id, result.timeline)
    loaded = store.load(result.run_id).timeline
    assert loaded == result.timeline
    assert next(e.subject for e in loaded.entries if e.kind == "started") == "a"


def test_resume_from_redis_asks_only_for_what_had_not_finished(redis_server: RedisServer) -> None:
    store = RedisCheckpoint(redis_server.url, prefix="ckpt-resume")

    def dies_at_c(messages: Sequence[Message]) -> str:
        if messages[-1].content.startswith("c"):
            raise KeyboardInterrupt
        return _answer(messages)

    with pytest.raises(RunCancelledError):
        OpenMultiAgent().run_tasks(TASKS, _team(ScriptedAdapter(dies_at_c)), checkpoint=store)
    [first] = store.runs()
    assert first.status == "cancelled"
    adapter = ScriptedAdapter(_answer)
    again = OpenMultiAgent().run_tasks(
        TASKS, _team(adapter), resume=store.load(first.run_id), checkpoint=store
    )
    assert again.ok
    asked = {call.messages[-1].content.splitlines()[0] for call in adapter.calls}
    assert "a" not in asked  # finished before: kept
    assert store.runs()[0].resumed_from == first.run_id


def test_two_machines_share_one_store(redis_server: RedisServer) -> None:
    barrier = threading.Barrier(2)
    results: list[RunResult] = []

    def reply(messages: Sequence[Message]) -> str:
        if messages[-1].content.startswith("b"):
            barrier.wait(timeout=10)
        return _answer(messages)

    def run() -> None:
        store = RedisCheckpoint(redis_server.url, prefix="ckpt-shared")  # a client each
        results.append(
            OpenMultiAgent().run_tasks(TASKS, _team(ScriptedAdapter(reply)), checkpoint=store)
        )

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    store = RedisCheckpoint(redis_server.url, prefix="ckpt-shared")
    assert {r.run_id for r in store.runs()} == {r.run_id for r in results}
    for result in results:
        assert store.load(result.run_id or "") == result


def test_a_newer_store_or_an_unreachable_server_is_one_clear_error(
    redis_server: RedisServer,
) -> None:
    redis.Redis.from_url(redis_server.url).set("ckpt-newer:version", "7")
    with pytest.raises(CheckpointError, match="version 7 was written by a newer aegis"):
        RedisCheckpoint(redis_server.url, prefix="ckpt-newer")
    with pytest.raises(CheckpointError, match="cannot read the store's version"):
        RedisCheckpoint("redis://127.0.0.1:1/0")
