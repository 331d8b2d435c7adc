"""How much does run_tasks cost over a bare ThreadPoolExecutor loop? (issue: runs)

1. 10,000 tasks over an instant ScriptedAdapter, one wide DAG (a root fanning out to
   everything, in layers) and one deep DAG (a chain): ``OpenMultiAgent.run_tasks`` against a
   hand-written ThreadPoolExecutor loop that only honours dependencies and calls the same
   adapter. Target: no more than 2x the bare loop's time.
2. A latency-bound run (50 ms adapter, max_concurrent 16) on a diamond and a wide DAG:
   makespan against the critical-path ideal. Target: within 10%.

3. Durable runs: the same runs with a SQLite ``Checkpoint`` (every finished task committed
   in its own transaction) against no checkpoint, interleaved. Targets: at most 2x the time
   of the run without it for 10,000 instant tasks, within 2% of makespan for 50 ms tasks.

Run: ``python benchmarks/run_overhead.py`` (about two minutes on 2 cores);
``--checkpoint`` runs only part 3.
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from aegis_gov import (
    AgentConfig,
    AgentPool,
    Checkpoint,
    Message,
    OpenMultiAgent,
    ScriptedAdapter,
    Task,
)


def reply(messages: Sequence[Message]) -> str:  # noqa: ARG001  # an instant model
    return "ok"


def wide(n: int) -> list[Task]:
    """A root, then everything else in layers of 100 depending on one task of the layer above."""
    tasks = [Task(id="t0", description="root", agent="w")]
    for i in range(1, n):
        parent = 0 if i <= 100 else i - 100
        tasks.append(Task(id=f"t{i}", description="work", agent="w", depends_on=[f"t{parent}"]))
    return tasks


def deep(n: int) -> list[Task]:
    return [
        Task(id=f"t{i}", description="step", agent="w", depends_on=[f"t{i - 1}"] if i else [])
        for i in range(n)
    ]


def diamond(width: int) -> list[Task]:
    tasks = [Task(id="top", description="top", agent="w")]
    tasks += [
        Task(id=f"m{i}", description="mid", agent="w", depends_on=["top"]) for i in range(width)
    ]
    tasks.append(
        Task(
            id="bottom", description="bottom", agent="w", depends_on=[f"m{i}" for i in range(width)]
        )
    )
    return tasks


def independent(n: int) -> list[Task]:
    return [Task(id=f"t{i}", description="work", agent="w") for i in range(n)]


def bare_loop(tasks: list[Task], adapter: ScriptedAdapter, workers: int) -> float:
    """Only honours dependencies: no prompts from upstream, no retries, no breakers, no events."""
    start = time.perf_counter()
    waiting = {t.id: len(t.depends_on) for t in tasks}
    dependents: dict[str, list[str]] = {t.id: [] for t in tasks}
    for t in tasks:
        for dep in t.depends_on:
            dependents[dep].append(t.id)
    ready = [t.id for t in tasks if not t.depends_on]
    with ThreadPoolExecutor(workers) as pool:
        inflight: dict[Future[object], str] = {}
        while ready or inflight:
            while ready and len(inflight) < workers:
                task_id = ready.pop()
                inflight[pool.submit(adapter.chat, [Message.user(task_id)])] = task_id
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
                for child in dependents[inflight.pop(future)]:
                    waiting[child] -= 1
                    if waiting[child] == 0:
                        ready.append(child)
    return time.perf_counter() - start


def aegis_run(
    tasks: list[Task], adapter: ScriptedAdapter, workers: int, checkpoint: Path | None = None
) -> float:
    oma = OpenMultiAgent(AgentPool(max_concurrent=workers), default_adapter=adapter)
    team = OpenMultiAgent.create_team("bench", AgentConfig(name="w"))
    store = Checkpoint(checkpoint) if checkpoint is not None else None
    start = time.perf_counter()
    result = oma.run_tasks(tasks, team, checkpoint=store)
    elapsed = time.perf_counter() - start
    if store is not None:
        store.close()
    assert result.summary() == {"done": len(tasks)}, result.summary()
    return elapsed


def best(fn: object, *args: object, repeat: int = 5) -> float:
    return min(fn(*args) for _ in range(repeat))  # type: ignore[operator]


def checkpoint_cost(repeat: int = 5) -> None:
    """Part 3: the same run with and without a SQLite checkpoint, interleaved."""
    print(f"3. durable runs: SQLite Checkpoint on vs off, interleaved, {repeat} rounds")
    with tempfile.TemporaryDirectory() as directory:
        for name, tasks, latency, workers, target in (
            ("10k instant", wide(10_000), 0.0, 8, "time <= 2x"),
            ("wide(160) 50ms", independent(160), 0.05, 16, "makespan within 2%"),
            ("deep(20) 50ms", deep(20), 0.05, 16, "makespan within 2%"),
        ):
            off: list[float] = []
            on: list[float] = []
            for round_ in range(repeat):
                adapter = ScriptedAdapter(reply, delay_s=latency)
                off.append(aegis_run(tasks, adapter, workers))
                path = Path(directory) / f"{name.replace(' ', '-')}-{round_}.db"
                on.append(aegis_run(tasks, adapter, workers, path))
            ratios = sorted(b / a for a, b in zip(off, on, strict=True))
            print(
                f"   {name:15} off median {statistics.median(off) * 1e3:8.1f} ms   "
                f"on median {statistics.median(on) * 1e3:8.1f} ms   "
                f"on/off {ratios[0]:.3f}-{ratios[-1]:.3f}x, median "
                f"{statistics.median(ratios):.3f}x ({target})"
            )


def main() -> None:
    if "--checkpoint" in sys.argv:
        checkpoint_cost()
        return
    n = 10_000
    workers = 8
    print(f"1. overhead: {n} tasks, instant ScriptedAdapter, {workers} workers, best of 5")
    for name, tasks in (("wide", wide(n)), ("deep", deep(n))):
        adapter = ScriptedAdapter(reply)
        bare = best(bare_loop, tasks, adapter, workers)
        ours = best(aegis_run, tasks, adapter, workers)
        print(
            f"   {name:5} bare loop {bare * 1e3:8.1f} ms   run_tasks {ours * 1e3:8.1f} ms   "
            f"ratio {ours / bare:5.2f}x (target <= 2x)   {ours / n * 1e6:6.1f} us/task"
        )

    latency = 0.05
    limit = 16
    print(f"\n2. latency-bound: {latency * 1e3:.0f} ms adapter, max_concurrent {limit}")
    for name, tasks, ideal in (
        ("diamond(16)", diamond(16), 3 * latency),
        ("wide(160)", independent(160), math.ceil(160 / limit) * latency),
        ("deep(20)", deep(20), 20 * latency),
    ):
        adapter = ScriptedAdapter(reply, delay_s=latency)
        makespan = best(aegis_run, tasks, adapter, limit)
        print(
            f"   {name:12} makespan {makespan * 1e3:7.1f} ms   ideal {ideal * 1e3:6.1f} ms   "
            f"{(makespan / ideal - 1) * 100:+5.1f}% (target within 10%)"
        )
    print()
    checkpoint_cost()


if __name__ == "__main__":
    main()
