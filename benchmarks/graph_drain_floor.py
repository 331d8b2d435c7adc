"""Where the time of graph_vs_graphlib's random DAG goes, and the floor under it.

Splits ``TaskQueue``'s build + drain of the 100k-task, ~300k-edge random DAG into build and
drain, times graphlib's own phases, and measures two floors in the drain's real order (the
generations, each in declaration order):

* *calls*: what the benchmark's loop costs when ``start`` and ``complete`` do nothing but
  take a lock and move the id between small dicts of ready and running tasks (as TaskQueue
  does), the least a thread-safe per-task API can do;
* *edges*: the bare loop that counts down each dependent's unfinished dependencies, the
  least any per-edge readiness bookkeeping can do;
* *lookups*: numbering the ids and looking every dependency up once, the least validation
  can do (no reverse edges, no cycle check).

It prints the budget that 2x graphlib's throughput (its batched ``done(*nodes)`` drain)
leaves and what the floors already use of it. Every measurement runs ROUNDS times,
interleaved with the others; the script prints the median and range of each, and of the
floors' share of the budget taken round by round. It also splits the batched drain
(``ready_ids``/``start_many``/``complete_many``) out of the build.

Run: ``python benchmarks/graph_drain_floor.py [--rounds N] [--clock cpu]``
"""

from __future__ import annotations

import argparse
import graphlib
import statistics
import threading
from collections.abc import Callable
from itertools import chain

import graph_vs_graphlib as bench
from aegis_graph import Task, TaskQueue
from graph_vs_graphlib import N, random_dag, spread, timed

ROUNDS = 5


class HandOffOnly:
    """``start``/``complete`` reduced to a locked hand-off of the id; ``ready`` replays the order.

    ``ready`` also puts the generation's ids in the dict of ready tasks, which TaskQueue does
    in ``complete`` instead.
    """

    def __init__(self, generations: list[list[Task]]) -> None:
        self._lock = threading.Lock()
        self._generations = iter([(g, {t.id: k for k, t in enumerate(g)}) for g in generations])
        self._ready: dict[str, int] = {}
        self._running: dict[str, int] = {}

    def ready(self) -> list[Task]:
        tasks, ids = next(self._generations, ([], {}))
        self._ready.update(ids)
        return tasks

    def start(self, task_id: str) -> int:
        lock = self._lock  # acquire/release, as TaskQueue does: cheaper than ``with``
        lock.acquire()
        try:
            i = self._ready.pop(task_id)
            self._running[task_id] = i
            return i
        finally:
            lock.release()

    def complete(self, task_id: str) -> int:
        lock = self._lock
        lock.acquire()
        try:
            return self._running.pop(task_id)
        finally:
            lock.release()


def drain_order(tasks: list[Task]) -> list[list[Task]]:
    """The lists ``ready()`` returns while the benchmark's loop drains a queue of *tasks*."""
    generations: list[list[Task]] = []
    q = TaskQueue(tasks)
    while not q.is_finished:
        generations.append(q.ready())
        for t in generations[-1]:
            q.start(t.id)
            q.complete(t.id)
    return generations


Setup = Callable[[], object]
Timed = Callable[[object], object]


def drain(q: object) -> None:
    assert isinstance(q, TaskQueue)
    while not q.is_finished:
        for t in q.ready():
            q.start(t.id)
            q.complete(t.id)


def drain_batched(q: object) -> None:
    assert isinstance(q, TaskQueue)
    while not q.is_finished:
        ids = q.ready_ids()
        q.start_many(ids)
        q.complete_many(ids)


def graphlib_all(graph: object) -> None:
    ts = graphlib.TopologicalSorter(graph)
    ts.prepare()
    while ts.is_active():
        ts.done(*ts.get_ready())


def floors(tasks: list[Task]) -> dict[str, tuple[Setup, Timed]]:
    """The calls, edges and lookups floors, the first two in the drain's order."""
    generations = drain_order(tasks)
    position = {t.id: i for i, t in enumerate(tasks)}
    order = [position[t.id] for layer in generations for t in layer]
    dependents: list[list[int]] = [[] for _ in tasks]
    for i, t in enumerate(tasks):
        for dep in t.depends_on:
            dependents[position[dep]].append(i)

    def calls(stub: object) -> None:
        assert isinstance(stub, HandOffOnly)
        for _ in generations:
            for t in stub.ready():
                stub.start(t.id)
                stub.complete(t.id)

    def edges(remaining: object) -> None:
        assert isinstance(remaining, list)
        for i in order:
            for j in dependents[i]:
                remaining[j] -= 1

    def lookups(_: object) -> None:
        index = {t.id: i for i, t in enumerate(tasks)}
        list(map(index.__getitem__, chain.from_iterable(t.depends_on for t in tasks)))

    return {
        "floor: calls": (lambda: HandOffOnly(generations), calls),
        "floor: edges": (lambda: [len(t.depends_on) for t in tasks], edges),
        "floor: lookups": (lambda: None, lookups),
    }


def measurements(tasks: list[Task]) -> dict[str, tuple[Setup, Timed]]:
    """Every measurement by name: an untimed setup, and the timed part given its result."""
    graph = {t.id: list(t.depends_on) for t in tasks}
    return {
        "aegis build": (lambda: tasks, TaskQueue),
        "aegis drain, per task": (lambda: TaskQueue(tasks), drain),
        "aegis drain, batched": (lambda: TaskQueue(tasks), drain_batched),
        "graphlib build": (
            lambda: graph,
            lambda g: graphlib.TopologicalSorter(g).prepare(),
        ),
        "graphlib build + drain": (lambda: graph, graphlib_all),
        **floors(tasks),
    }


def interleaved_runs(cases: dict[str, tuple[Setup, Timed]], rounds: int) -> dict[str, list[float]]:
    """Wall times of every case, one run of each per round, setups untimed."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (setup, run) in cases.items():
            arg = setup()
            times[name].append(timed(lambda run=run, arg=arg: run(arg)))
            del arg
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="runs of each measurement")
    parser.add_argument("--clock", choices=sorted(bench.CLOCKS), default="wall")
    args = parser.parse_args()
    bench.clock = bench.CLOCKS[args.clock]
    ids = [f"task-{i}" for i in range(N)]
    tasks = [Task(ids[i], depends_on=[ids[d] for d in ds]) for i, ds in enumerate(random_dag(N))]
    edges = sum(len(t.depends_on) for t in tasks)
    times = interleaved_runs(measurements(tasks), args.rounds)
    print(f"{args.rounds} rounds, interleaved, {args.clock} clock; {N} tasks, {edges} edges")
    print("ms, median [min-max]")
    for name, xs in times.items():
        print(f"  {name:<24} {spread(xs, 1e3)}")
    rounds = range(args.rounds)
    budget = [times["graphlib build + drain"][r] / 2 for r in rounds]
    floor = [
        times["floor: calls"][r] + times["floor: edges"][r] + times["floor: lookups"][r]
        for r in rounds
    ]
    per_task = [times["aegis build"][r] + times["aegis drain, per task"][r] for r in rounds]
    batched = [times["aegis build"][r] + times["aegis drain, batched"][r] for r in rounds]
    print(f"2x graphlib leaves {spread(budget, 1e3)} ms for build + drain")
    print(f"floors (calls + edges + lookups): {spread(floor, 1e3)} ms")
    share = [f / b for f, b in zip(floor, budget, strict=True)]
    print(f"  share of the budget: {spread(share, 100, '.0f')} %")
    print(f"aegis build + per-task drain: {spread(per_task, 1e3)} ms")
    print(f"aegis build + batched drain:  {spread(batched, 1e3)} ms")
    speedup = [2 * b / t for t, b in zip(batched, budget, strict=True)]
    print(f"  batched vs graphlib batched: x{spread(speedup, fmt='.2f')}")
    print(
        f"  (median build share of the batched total: "
        f"{statistics.median(times['aegis build']) / statistics.median(batched):.0%})"
    )


if __name__ == "__main__":
    main()
