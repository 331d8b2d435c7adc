"""Does a run's per-task cost stay flat from 1k to 100k tasks? (issue 19)

``OpenMultiAgent.run_tasks`` (threads) and ``arun_tasks`` (asyncio) on an instant
``ScriptedAdapter``, for three graph shapes:

* *layered*: a root, then layers of 100 tasks, each depending on one task of the layer above
  (the ``wide`` graph of ``run_overhead.py``);
* *independent*: no dependencies at all, every task ready at once;
* *fan-out*: one root that every other task depends on.

Each case runs several times, the sizes and drivers interleaved; the script prints the
per-task cost (median and range, µs) and its growth from the smallest to the largest size
(target: at most 20%). ``--profile SHAPE DRIVER N`` prints the top cProfile entries of one
run instead, to see where the time goes.

Run: ``python benchmarks/run_scaling.py`` (a few minutes on 2 cores; ``--quick`` stops at
20k tasks; ``--clock cpu`` times the process's CPU time, steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import time
from collections.abc import Callable, Sequence

from aegis_gov import (
    AgentConfig,
    AgentPool,
    Message,
    OpenMultiAgent,
    RunResult,
    ScriptedAdapter,
    Task,
    Team,
)

WORKERS = 8
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def reply(messages: Sequence[Message]) -> str:  # noqa: ARG001  # an instant model
    return "ok"


def layered(n: int) -> list[Task]:
    tasks = [Task(id="t0", description="root", agent="w")]
    for i in range(1, n):
        parent = 0 if i <= 100 else i - 100
        tasks.append(Task(id=f"t{i}", description="work", agent="w", depends_on=[f"t{parent}"]))
    return tasks


def independent(n: int) -> list[Task]:
    return [Task(id=f"t{i}", description="work", agent="w") for i in range(n)]


def fan_out(n: int) -> list[Task]:
    root = Task(id="t0", description="root", agent="w")
    return [root] + [
        Task(id=f"t{i}", description="work", agent="w", depends_on=["t0"]) for i in range(1, n)
    ]


SHAPES: dict[str, Callable[[int], list[Task]]] = {
    "layered": layered,
    "independent": independent,
    "fan-out": fan_out,
}


def run_once(tasks: list[Task], driver: str) -> float:
    """Wall time of one run over fresh facade, pool and adapter (built outside the timing)."""
    oma = OpenMultiAgent(AgentPool(max_concurrent=WORKERS), default_adapter=ScriptedAdapter(reply))
    team = OpenMultiAgent.create_team("bench", AgentConfig(name="w"))
    gc.collect()
    if driver == "threads":
        start = clock()
        result = oma.run_tasks(tasks, team)
        elapsed = clock() - start
    else:
        results: list[RunResult] = []
        elapsed = asyncio.run(timed_arun(oma, tasks, team, results))
        result = results[0]
    assert result.summary() == {"done": len(tasks)}, result.summary()
    return elapsed


async def timed_arun(
    oma: OpenMultiAgent, tasks: list[Task], team: Team, results: list[RunResult]
) -> float:
    """Time ``arun_tasks`` inside the loop; the result goes to *results*, not to the loop.

    On exit, Python 3.11's ``asyncio.run`` calls ``signal.getsignal``, which formats the repr
    of its SIGINT handler: a partial holding the main task, whose repr includes the task's
    result. Were that a RunResult of 100k tasks, the exit would take about a second.
    """
    start = clock()
    results.append(await oma.arun_tasks(tasks, team))
    return clock() - start


def measure(sizes: list[int], repeats: dict[int, int]) -> None:
    drivers = ("threads", "asyncio")
    print(f"{WORKERS} workers, instant ScriptedAdapter; per-task µs: median [min-max]")
    for shape, build in SHAPES.items():
        graphs = {n: build(n) for n in sizes}
        per_task: dict[tuple[str, int], list[float]] = {(d, n): [] for d in drivers for n in sizes}
        for round_ in range(max(repeats.values())):
            for n in sizes:
                if round_ >= repeats[n]:
                    continue
                for driver in drivers:  # interleaved: each round runs every case once
                    per_task[driver, n].append(run_once(graphs[n], driver) / n * 1e6)
        for driver in drivers:
            cells = []
            for n in sizes:
                xs = per_task[driver, n]
                cells.append(f"{n:>6}: {statistics.median(xs):6.1f} [{min(xs):.1f}-{max(xs):.1f}]")
            first = statistics.median(per_task[driver, sizes[0]])
            last = statistics.median(per_task[driver, sizes[-1]])
            print(
                f"{shape:<12}{driver:<8} "
                + "  ".join(cells)
                + f"   growth {sizes[0]}->{sizes[-1]}: {last / first - 1:+.0%}"
            )


def profile(shape: str, driver: str, n: int, top: int) -> None:
    tasks = SHAPES[shape](n)
    profiler = cProfile.Profile()
    profiler.enable()
    elapsed = run_once(tasks, driver)
    profiler.disable()
    print(f"{shape} {driver} {n} tasks: {elapsed / n * 1e6:.1f} µs/task under the profiler")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k, 5k and 20k tasks")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each case (1k, 10k)")
    parser.add_argument(
        "--profile", nargs=3, metavar=("SHAPE", "DRIVER", "N"), help="profile one run"
    )
    parser.add_argument("--top", type=int, default=25, help="profile entries to print")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="cpu: the process's CPU time"
    )
    args = parser.parse_args()
    global clock  # noqa: PLW0603  # the one setting run_once reads
    clock = CLOCKS[args.clock]
    print(f"{args.clock} clock")
    if args.profile:
        shape, driver, n = args.profile
        profile(shape, driver, int(n), args.top)
        return
    sizes = [1_000, 5_000, 20_000] if args.quick else [1_000, 10_000, 100_000]
    # The largest size takes seconds per run: fewer repeats there.
    repeats = {n: args.repeats if n < 50_000 else max(3, args.repeats // 2) for n in sizes}
    measure(sizes, repeats)


if __name__ == "__main__":
    main()
