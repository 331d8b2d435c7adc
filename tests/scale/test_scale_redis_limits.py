"""Declared limits shared through Redis: facades and processes draw on one budget per model."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import uuid
from collections.abc import Awaitable, Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import pytest
from aegis_gov import (
    AgentConfig,
    Limits,
    OpenMultiAgent,
    RedisRateStore,
    RetryPolicy,
    ScriptedAdapter,
    Task,
    TaskState,
    connect_redis,
)

from tests.scale.conftest import RedisServer

pytestmark = pytest.mark.timeout(60)

ctx = multiprocessing.get_context("fork")
MODEL = "shared-model"
SPACING_S = 60.0  # one request a minute: the waits are whole minutes, real time is noise


def _facade(url: str, prefix: str, waits: list[float]) -> OpenMultiAgent:
    """A facade limited to one request a minute on MODEL, its buckets in Redis.

    Its sleeps are recorded, not slept: the shared bucket (on the server's clock) queues the
    reservations all the same, so the waits say who got which turn.
    """
    return OpenMultiAgent(
        default_adapter=ScriptedAdapter(lambda _messages: "ok", name=MODEL),
        limits={MODEL: Limits(requests_per_minute=60.0 / SPACING_S)},
        rate_store=RedisRateStore(connect_redis(url, timeout_s=2.0), key_prefix=prefix),
        retry=RetryPolicy(max_total_delay_s=10_000.0),
        sleep=waits.append,
        async_sleep=_recorder(waits),
    )


def _recorder(waits: list[float]) -> Callable[[float], Awaitable[None]]:
    async def record(seconds: float) -> None:
        waits.append(seconds)

    return record


def _tasks(count: int) -> list[Task]:
    return [Task(f"t{i}", agent="w") for i in range(count)]


TEAM = OpenMultiAgent.create_team("t", AgentConfig(name="w"))


def _turns(waits: list[float]) -> list[int]:
    """Which turns (in minutes from the first) the waits were."""
    return sorted(round(w / SPACING_S) for w in waits)


def run_in_process(
    url: str, prefix: str, count: int, barrier: Barrier, out: Queue[tuple[int, list[float]]]
) -> None:
    """Run *count* tasks through a facade sharing the budget; report (done, waits)."""
    waits: list[float] = []
    oma = _facade(url, prefix, waits)
    barrier.wait()
    result = oma.run_tasks(_tasks(count), TEAM)
    out.put((result.summary().get("done", 0), waits))


@pytest.fixture
def prefix() -> str:
    return f"test-limits-{uuid.uuid4().hex}"


def test_two_processes_share_one_budget_per_model(redis_server: RedisServer, prefix: str) -> None:
    processes, each = 2, 3
    barrier = ctx.Barrier(processes)
    out: multiprocessing.Queue[tuple[int, list[float]]] = ctx.Queue()
    procs = [
        ctx.Process(target=run_in_process, args=(redis_server.url, prefix, each, barrier, out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    reports = [out.get(timeout=50) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    assert [done for done, _ in reports] == [each, each]
    # One line for both: six requests took turns 0..5 (the first went at once, unrecorded).
    # With a bucket per process each would have taken turns 0..2.
    assert _turns([w for _, waits in reports for w in waits]) == [1, 2, 3, 4, 5]


def test_a_sync_and_an_async_facade_queue_in_one_line(
    redis_server: RedisServer, prefix: str
) -> None:
    first: list[float] = []
    second: list[float] = []
    result = asyncio.run(_facade(redis_server.url, prefix, first).arun_tasks(_tasks(2), TEAM))
    assert {r.status for r in result.values()} == {TaskState.DONE}
    result = _facade(redis_server.url, prefix, second).run_tasks(_tasks(2), TEAM)
    assert {r.status for r in result.values()} == {TaskState.DONE}
    assert _turns(first) == [1]
    assert _turns(second) == [2, 3]  # after the first facade's turns, not from zero


def test_while_redis_is_down_each_process_paces_itself(
    own_redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = own_redis_server.url
    own_redis_server.stop()
    waits: list[float] = []
    with caplog.at_level(logging.WARNING):
        result = _facade(url, prefix, waits).run_tasks(_tasks(3), TEAM)
    assert {r.status for r in result.values()} == {TaskState.DONE}  # never refused for it
    assert _turns(waits) == [1, 2]  # the local bucket, with the same settings
    assert "using a local bucket" in caplog.text


def test_the_store_is_validated(redis_server: RedisServer) -> None:
    client = connect_redis(redis_server.url)
    with pytest.raises(TypeError, match="client must be a Redis client"):
        RedisRateStore("redis://localhost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key_prefix"):
        RedisRateStore(client, key_prefix="")
    with pytest.raises(ValueError, match="reconnect_interval_s"):
        RedisRateStore(client, reconnect_interval_s=-1.0)
    with pytest.raises(TypeError, match="rate_store must be a RedisRateStore"):
        OpenMultiAgent(rate_store=client)  # type: ignore[arg-type]
