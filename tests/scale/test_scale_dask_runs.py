"""run_tasks on a real dask.distributed LocalCluster with worker processes."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from aegis_gov import (
    AgentConfig,
    DaskExecutor,
    EchoAdapter,
    Message,
    OpenMultiAgent,
    RetryableError,
    RetryPolicy,
    ScriptedAdapter,
    Task,
    TaskState,
    Team,
    connect_redis,
    dask_executor,
    redis_agent_pool,
)
from distributed import Client, LocalCluster

from tests.scale import _workers
from tests.scale.conftest import RedisServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Client]:
    # Two worker processes, as in production: everything submitted must really pickle.
    cluster = LocalCluster(  # type: ignore[no-untyped-call]  # distributed leaves it unannotated
        n_workers=2, processes=True, threads_per_worker=4, dashboard_address=None
    )
    with cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]  # (same)
        yield client


def test_identical_calls_are_never_merged(dask_client: Client) -> None:
    executor = dask_executor(dask_client)
    adapter = ScriptedAdapter(_workers.unique_reply)
    request = [Message("user", "the same prompt")]
    futures = [executor.submit(adapter.chat, request) for _ in range(8)]
    assert all(isinstance(f, Future) for f in futures)
    replies = [f.result(timeout=30).text for f in futures]
    assert len(set(replies)) == 8  # eight calls, eight answers
    # Dask's default would have given them one key, hence one call:
    assert (
        dask_client.submit(adapter.chat, request).key
        == dask_client.submit(adapter.chat, request).key
    )


def test_calls_run_in_worker_processes_with_pickled_adapters(dask_client: Client) -> None:
    executor = DaskExecutor(dask_client)
    assert executor.client is dask_client
    pids = {executor.submit(_workers.worker_pid).result(timeout=30) for _ in range(8)}
    assert os.getpid() not in pids
    agent = AgentConfig("writer", "be brief", adapter=ScriptedAdapter(_workers.flaky_reply))
    copy = pickle.loads(pickle.dumps(agent))
    assert copy.name == "writer"
    assert copy.adapter is not None


def test_keyword_arguments_never_clash_with_dask_options(dask_client: Client) -> None:
    executor = dask_executor(dask_client)
    future = executor.submit(_workers.keyword_echo, "t", key="k", pure="p")
    assert future.result(timeout=30) == "t/k/p"


def test_dask_futures_are_refused(dask_client: Client) -> None:
    executor = dask_executor(dask_client)
    upstream = dask_client.submit(_workers.worker_pid)
    with pytest.raises(TypeError, match="is a Dask future"):
        executor.submit(_workers.keyword_echo, upstream, key="k", pure="p")  # type: ignore[arg-type]  # the mistake under test
    upstream.result(timeout=30)
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(_workers.worker_pid)


def test_a_small_run_matches_the_thread_runner(dask_client: Client) -> None:
    team = Team("t", [AgentConfig("echo", adapter=EchoAdapter())])
    tasks = [Task("a", "alpha", "echo"), Task("b", "beta", "echo", depends_on=("a",))]
    oma = OpenMultiAgent()
    local = oma.run_tasks(tasks, team)
    remote = oma.run_tasks(tasks, team, executor=dask_executor(dask_client))
    assert remote.outputs == local.outputs
    assert remote.summary() == {"done": 2}


def _graph(n: int) -> list[Task]:
    """Chains of four; every 25th task fails permanently, so the rest of its chain is skipped."""
    tasks = []
    for i in range(n):
        kind = "permanent" if i % 25 == 7 else "normal"
        depends = (f"t{i - 1}",) if i % 4 else ()
        tasks.append(Task(f"t{i}", f"t{i} {kind} work", "flaky", depends_on=depends))
    return tasks


def _expected(n: int) -> dict[str, TaskState]:
    expected: dict[str, TaskState] = {}
    for i in range(n):
        upstream = expected.get(f"t{i - 1}") if i % 4 else None
        if upstream in {TaskState.FAILED, TaskState.SKIPPED}:
            expected[f"t{i}"] = TaskState.SKIPPED
        elif i % 25 == 7:
            expected[f"t{i}"] = TaskState.FAILED
        else:
            expected[f"t{i}"] = TaskState.DONE
    return expected


@pytest.mark.timeout(240)  # ~17 s here on an idle machine; four times that when it is busy
def test_a_thousand_tasks_with_random_failures_each_end_in_one_state(
    dask_client: Client, redis_server: RedisServer
) -> None:
    n = 1000
    pool = redis_agent_pool(
        connect_redis(redis_server.url),
        32,
        consecutive_failure_limit=10_000,  # the breaker must not turn faults into failures here
        is_failure=lambda exc: isinstance(exc, RetryableError),
        key_prefix=f"aegis:test:{os.getpid()}:dask",
    )
    oma = OpenMultiAgent(
        pool,
        retry=RetryPolicy(max_attempts=15, initial_delay_s=0.001, max_delay_s=0.001),
        sleep=lambda _s: None,
        seed=1,
    )
    flaky = ScriptedAdapter(_workers.flaky_reply)
    team = Team("t", [AgentConfig("flaky", adapter=flaky)])
    result = oma.run_tasks(_graph(n), team, executor=dask_executor(dask_client))
    expected = _expected(n)
    states = {task_id: result[task_id].status for task_id in result}
    assert len(states) == n
    assert states == expected  # every task in exactly the state its inputs dictate
    assert sum(result.summary().values()) == n
    # With 20% transient faults, tasks were retried: a 503 while other calls are in flight
    # is a wait for one to end (no attempt spent), so the endpoint's count of overloads is
    # what shows it (about 200 of some 1,000 requests).
    adaptive = oma.get_status().endpoints[flaky.endpoint.key].adaptive
    assert adaptive is not None
    assert adaptive.overloads >= 100, "with 20% transient faults tasks must have been retried"
    for task_id, state in expected.items():
        record = result[task_id]
        if state is TaskState.DONE:
            assert record.output == f"result:{task_id}"
        elif state is TaskState.FAILED:
            assert record.error_type == "InvalidRequestError"
        else:
            assert record.blamed is not None
