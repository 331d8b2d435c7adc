"""aegis_graph.TaskQueue against graphlib.TopologicalSorter, in one run.

Three workloads, 100k tasks each:

* a random DAG with ~300k edges (each task depends on up to 6 earlier tasks), declared in
  topological order and again shuffled (which takes our full Kahn cycle check, not the
  declared-in-order fast path);
* a 100k-task chain;
* a 100k-node cycle: our construction-time detection against graphlib's ``prepare``.

"build + validate + drain" means: construct from prebuilt inputs, validate (cycles, and for
us also duplicates and unknown ids), then hand out and complete every task. Four drains:

* aegis per task: ``ready()``, then ``start()`` and ``complete()`` for each task (each call
  takes the lock);
* aegis batched: ``ready_ids()``, ``start_many(ids)``, ``complete_many(ids)`` per step;
* graphlib one at a time: ``get_ready()``, then ``done(node)`` for each node;
* graphlib batched: ``get_ready()``, then ``done(*nodes)``.

Every contender runs ROUNDS times, interleaved (one run of each per round, so the noise of a
shared machine falls on all of them); the script prints each one's median and range, and the
range and median of the ratios taken within each round. Building the 100k ``Task`` values is
timed on its own.

Run: ``python benchmarks/graph_vs_graphlib.py [--rounds N] [--clock cpu]``
"""

from __future__ import annotations

import argparse
import gc
import graphlib
import random
import statistics
import time
from collections.abc import Callable

from aegis_graph import CyclicDependencyError, Task, TaskQueue

N = 100_000
ROUNDS = 5


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def timed(fn: Callable[[], object]) -> float:
    """Time of one run (wall clock, or this process's CPU time), the collector off as in timeit.

    On a machine other jobs share, CPU time is the steadier measure of single-threaded work.
    """
    gc.collect()
    gc.disable()
    try:
        start = clock()
        fn()
        return clock() - start
    finally:
        gc.enable()


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Wall times of every contender, one run of each per round."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            times[name].append(timed(fn))
    return times


def spread(xs: list[float], scale: float = 1.0, fmt: str = ".1f") -> str:
    """Median and range, as ``median [min-max]``."""
    return (
        f"{statistics.median(xs) * scale:{fmt}} [{min(xs) * scale:{fmt}}-{max(xs) * scale:{fmt}}]"
    )


def ratios(times: dict[str, list[float]], slower: str, faster: str) -> list[float]:
    """How many times *faster* beat *slower*, round by round."""
    return [b / a for a, b in zip(times[faster], times[slower], strict=True)]


def random_dag(n: int, seed: int = 42) -> list[list[int]]:
    rng = random.Random(seed)
    deps: list[list[int]] = [[]]
    for i in range(1, n):
        k = min(i, rng.randint(0, 6))
        deps.append(rng.sample(range(max(0, i - 1000), i), k) if k else [])
    return deps


def ours_drain(tasks: list[Task]) -> None:
    q = TaskQueue(tasks)
    while not q.is_finished:
        for t in q.ready():
            q.start(t.id)
            q.complete(t.id)


def ours_batched(tasks: list[Task]) -> None:
    q = TaskQueue(tasks)
    while not q.is_finished:
        ids = q.ready_ids()
        q.start_many(ids)
        q.complete_many(ids)


def graphlib_one_at_a_time(graph: dict[str, list[str]]) -> None:
    ts = graphlib.TopologicalSorter(graph)
    ts.prepare()
    while ts.is_active():
        for node in ts.get_ready():
            ts.done(node)


def graphlib_batched(graph: dict[str, list[str]]) -> None:
    ts = graphlib.TopologicalSorter(graph)
    ts.prepare()
    while ts.is_active():
        nodes = ts.get_ready()
        ts.done(*nodes)


def compare(name: str, tasks: list[Task], rounds: int) -> None:
    graph = {t.id: list(t.depends_on) for t in tasks}
    times = interleaved(
        {
            "aegis per task": lambda: ours_drain(tasks),
            "aegis batched": lambda: ours_batched(tasks),
            "graphlib one at a time": lambda: graphlib_one_at_a_time(graph),
            "graphlib batched": lambda: graphlib_batched(graph),
        },
        rounds,
    )
    edges = sum(len(t.depends_on) for t in tasks)
    print(f"{name}: {len(tasks)} tasks, {edges} edges; ms, median [min-max]")
    for contender, xs in times.items():
        print(f"  {contender:<24} {spread(xs, 1e3)}")
    for faster, slower in (
        ("aegis batched", "graphlib batched"),
        ("aegis per task", "graphlib batched"),
        ("aegis per task", "graphlib one at a time"),
    ):
        print(f"  {faster} vs {slower}: x{spread(ratios(times, slower, faster), fmt='.2f')}")


def cycle(rounds: int) -> None:
    ids = [f"t{i}" for i in range(N)]
    tasks = [Task(ids[i], depends_on=[ids[(i + 1) % N]]) for i in range(N)]
    graph = {t.id: list(t.depends_on) for t in tasks}

    def ours() -> None:
        try:
            TaskQueue(tasks)
        except CyclicDependencyError as err:
            if len(err.cycle) != N + 1:
                raise AssertionError("wrong cycle") from err
        else:
            raise AssertionError("no cycle found")

    def theirs() -> None:
        try:
            graphlib.TopologicalSorter(graph).prepare()
        except graphlib.CycleError as err:
            if len(err.args[1]) != N + 1:
                raise AssertionError("wrong cycle") from err
        else:
            raise AssertionError("no cycle found")

    times = interleaved({"aegis": ours, "graphlib": theirs}, rounds)
    print(f"cycle detection: {N} tasks, {N} edges; ms, median [min-max]")
    print(f"  aegis {spread(times['aegis'], 1e3)}   graphlib {spread(times['graphlib'], 1e3)}")
    speedups = ratios(times, "graphlib", "aegis")
    every = " ".join(f"{x:.2f}" for x in speedups)
    print(f"  aegis vs graphlib: x{spread(speedups, fmt='.2f')}  (round by round: {every})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="runs of each contender")
    parser.add_argument("--only", choices=["dag", "shuffled", "chain", "cycle"], action="append")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="what to time")
    args = parser.parse_args()
    global clock  # noqa: PLW0603  # the one setting timed() reads
    clock = CLOCKS[args.clock]
    only = set(args.only or ["dag", "shuffled", "chain", "cycle"])
    ids = [f"task-{i}" for i in range(N)]
    dag = random_dag(N)
    start = time.perf_counter()
    dag_tasks = [Task(ids[i], depends_on=[ids[d] for d in ds]) for i, ds in enumerate(dag)]
    built = time.perf_counter() - start
    print(f"building {N} Task values (validated, not timed below): {built * 1e3:.1f} ms")
    print(f"{args.rounds} rounds, interleaved, {args.clock} clock; build + validate + drain")
    if "dag" in only:
        compare("random DAG, declared order", dag_tasks, args.rounds)
    if "shuffled" in only:
        shuffled = dag_tasks[:]
        random.Random(7).shuffle(shuffled)
        compare("random DAG, shuffled", shuffled, args.rounds)
    if "chain" in only:
        chain = [Task(ids[0])] + [Task(ids[i], depends_on=[ids[i - 1]]) for i in range(1, N)]
        compare("chain", chain, args.rounds)
    if "cycle" in only:
        cycle(args.rounds)


if __name__ == "__main__":
    main()
