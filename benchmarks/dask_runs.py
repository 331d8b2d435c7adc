"""A 10,000-task run on a 2-worker dask.distributed LocalCluster against the thread runner.

Run: ``.venv/bin/python benchmarks/dask_runs.py`` (needs the ``aegis-gov[dask]`` extra). Both
runs use the same `OpenMultiAgent` (a pool of ``MAX_CONCURRENT``) and the offline `EchoAdapter`,
so what is timed is aegis's coordination plus, for Dask, shipping each request to a worker
process and its answer back (``pure=False``, one Dask task per provider request). A second
pair of runs gives each reply ``CPU_MS`` of pure-Python work, the case where worker processes
beat threads sharing one GIL. Cluster start-up is timed separately.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from aegis_gov import (
    AgentConfig,
    AgentPool,
    EchoAdapter,
    Message,
    OpenMultiAgent,
    RunResult,
    ScriptedAdapter,
    Task,
    Team,
    dask_executor,
)
from distributed import Client, LocalCluster

TASKS = 10_000
CPU_TASKS = 400
CPU_MS = 10.0
MAX_CONCURRENT = 32


def busy_reply(messages: Sequence[Message]) -> str:
    """Spin for CPU_MS of pure-Python work (holding the GIL), then answer."""
    deadline = time.thread_time() + CPU_MS / 1000
    n = 0
    while time.thread_time() < deadline:
        n += 1
    return messages[-1].content


def run(
    oma: OpenMultiAgent, team: Team, n: int, executor: object = None
) -> tuple[float, RunResult]:
    tasks = [Task(f"t{i}", f"task number {i}", "a") for i in range(n)]
    start = time.perf_counter()
    result = oma.run_tasks(tasks, team, executor=executor)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    assert result.summary() == {"done": n}, result.summary()
    return elapsed, result


def teams() -> tuple[Team, Team]:
    # Fresh adapters for each runner: offline adapters record their calls, and an adapter is
    # pickled with every request sent to a worker, recordings included.
    echo = Team("echo", [AgentConfig("a", adapter=EchoAdapter())])
    busy = Team("busy", [AgentConfig("a", adapter=ScriptedAdapter(busy_reply))])
    return echo, busy


def main() -> None:
    oma = OpenMultiAgent(AgentPool(MAX_CONCURRENT))
    echo, busy = teams()
    threads_s, _ = run(oma, echo, TASKS)
    busy_threads_s, _ = run(oma, busy, CPU_TASKS)
    echo, busy = teams()

    start = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2, processes=True, threads_per_worker=2, dashboard_address=None
    )
    client = Client(cluster)
    startup_s = time.perf_counter() - start
    try:
        executor = dask_executor(client)
        dask_s, _ = run(oma, echo, TASKS, executor)
        busy_dask_s, _ = run(oma, busy, CPU_TASKS, executor)
    finally:
        client.close()
        cluster.close()

    print(f"max_concurrent={MAX_CONCURRENT}; LocalCluster: 2 worker processes x 2 threads")
    print(f"cluster start-up: {startup_s:.2f} s")
    print(f"{TASKS} echo tasks:")
    print(f"  thread runner {threads_s:8.2f} s  ({threads_s / TASKS * 1e6:7.1f} us/task)")
    print(f"  dask          {dask_s:8.2f} s  ({dask_s / TASKS * 1e6:7.1f} us/task)")
    print(f"  dask / threads: {dask_s / threads_s:.2f}x the time")
    print(f"{CPU_TASKS} tasks of {CPU_MS:.0f} ms pure-Python CPU each:")
    print(f"  thread runner {busy_threads_s:8.2f} s")
    print(f"  dask          {busy_dask_s:8.2f} s")
    print(f"  dask / threads: {busy_dask_s / busy_threads_s:.2f}x the time")


if __name__ == "__main__":
    main()
