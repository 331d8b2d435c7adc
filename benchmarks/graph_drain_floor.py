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

It prints the budget that 2x graphlib's throughput leaves and what the two floors already
use of it. Run: ``python benchmarks/graph_drain_floor.py``
"""

from __future__ import annotations

import graphlib
import threading
from collections.abc import Callable
from itertools import chain

from aegis_graph import Task, TaskQueue
from graph_vs_graphlib import N, random_dag, timed

REPEATS = 5


def best(fn: Callable[[], object]) -> float:
    return min(timed(fn) for _ in range(REPEATS))


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


def ours(tasks: list[Task]) -> tuple[float, float]:
    """Best build and best drain of a TaskQueue."""
    queues = [TaskQueue(tasks) for _ in range(REPEATS)]

    def drain() -> None:
        q = queues.pop()
        while not q.is_finished:
            for t in q.ready():
                q.start(t.id)
                q.complete(t.id)

    return best(lambda: TaskQueue(tasks)), best(drain)


def theirs(graph: dict[str, list[str]]) -> tuple[float, float]:
    """Best build (with prepare) and best build + drain of a graphlib.TopologicalSorter."""

    def build() -> None:
        graphlib.TopologicalSorter(graph).prepare()

    def everything() -> None:
        ts = graphlib.TopologicalSorter(graph)
        ts.prepare()
        while ts.is_active():
            ts.done(*ts.get_ready())

    return best(build), best(everything)


def floors(tasks: list[Task], generations: list[list[Task]]) -> tuple[float, float, float]:
    """The calls, edges and lookups floors, the first two in the drain's order."""
    position = {t.id: i for i, t in enumerate(tasks)}
    order = [position[t.id] for layer in generations for t in layer]
    dependents: list[list[int]] = [[] for _ in tasks]
    for i, t in enumerate(tasks):
        for dep in t.depends_on:
            dependents[position[dep]].append(i)

    def calls() -> None:
        stub = HandOffOnly(generations)
        for _ in generations:
            for t in stub.ready():
                stub.start(t.id)
                stub.complete(t.id)

    def edges() -> None:
        remaining = [len(t.depends_on) for t in tasks]
        for i in order:
            for j in dependents[i]:
                remaining[j] -= 1

    def lookups() -> None:
        index = {t.id: i for i, t in enumerate(tasks)}
        list(map(index.__getitem__, chain.from_iterable(t.depends_on for t in tasks)))

    return best(calls), best(edges), best(lookups)


def main() -> None:
    ids = [f"task-{i}" for i in range(N)]
    tasks = [Task(ids[i], depends_on=[ids[d] for d in ds]) for i, ds in enumerate(random_dag(N))]
    graph = {t.id: list(t.depends_on) for t in tasks}
    build, drain = ours(tasks)
    theirs_build, theirs_all = theirs(graph)
    calls, edges, lookups = floors(tasks, drain_order(tasks))
    budget = theirs_all / 2
    print(f"best of {REPEATS}; {N} tasks, {sum(map(len, graph.values()))} edges, random DAG")
    print(f"aegis    build {build * 1e3:6.1f} ms   drain {drain * 1e3:6.1f} ms")
    print(f"graphlib build {theirs_build * 1e3:6.1f} ms   all   {theirs_all * 1e3:6.1f} ms")
    print(f"2x graphlib leaves {budget * 1e3:.1f} ms for build + drain")
    floor = calls + edges + lookups
    print(
        f"floors: calls {calls * 1e3:.1f} ms + edges {edges * 1e3:.1f} ms + lookups "
        f"{lookups * 1e3:.1f} ms = {floor * 1e3:.1f} ms, {floor / budget:.0%} of that budget"
    )


if __name__ == "__main__":
    main()
