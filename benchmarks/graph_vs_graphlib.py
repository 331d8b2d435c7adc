"""aegis_graph.TaskQueue against graphlib.TopologicalSorter, in one run.

Three workloads, 100k tasks each:

* a random DAG with ~300k edges (each task depends on up to 6 earlier tasks), declared in
  topological order and again shuffled (which takes our full Kahn cycle check, not the
  declared-in-order fast path);
* a 100k-task chain;
* a 100k-node cycle: our construction-time detection against graphlib's ``prepare``.

"build + validate + drain" means: construct from prebuilt inputs, validate (cycles, and for
us also duplicates and unknown ids), then hand out and complete every task. Our drain calls
``ready()``, ``start()`` and ``complete()`` (each under a lock); graphlib's calls
``get_ready()`` and ``done()``. Building the 100k ``Task`` values is timed on its own.

Run: ``python benchmarks/graph_vs_graphlib.py``
"""

from __future__ import annotations

import gc
import graphlib
import random
import time
from collections.abc import Callable

from aegis_graph import CyclicDependencyError, Task, TaskQueue

N = 100_000
REPEATS = 5


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one run, with the collector off as timeit does."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        gc.enable()


def best_of_each(ours: Callable[[], object], theirs: Callable[[], object]) -> tuple[float, float]:
    """Best wall time of each over REPEATS runs, alternating the two.

    Alternating spreads the noise of a shared machine evenly over both sides.
    """
    ours_times: list[float] = []
    theirs_times: list[float] = []
    for _ in range(REPEATS):
        ours_times.append(timed(ours))
        theirs_times.append(timed(theirs))
    return min(ours_times), min(theirs_times)


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


def graphlib_drain(graph: dict[str, list[str]]) -> None:
    ts = graphlib.TopologicalSorter(graph)
    ts.prepare()
    while ts.is_active():
        nodes = ts.get_ready()
        ts.done(*nodes)


def compare(name: str, tasks: list[Task]) -> None:
    graph = {t.id: list(t.depends_on) for t in tasks}
    ours, theirs = best_of_each(lambda: ours_drain(tasks), lambda: graphlib_drain(graph))
    edges = sum(len(t.depends_on) for t in tasks)
    print(
        f"{name:<28} {len(tasks):>7} tasks {edges:>7} edges   aegis {ours * 1e3:7.1f} ms   "
        f"graphlib {theirs * 1e3:7.1f} ms   speed-up x{theirs / ours:.2f}"
    )


def cycle() -> None:
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

    a, b = best_of_each(ours, theirs)
    print(
        f"{'cycle detection':<28} {N:>7} tasks {N:>7} edges   aegis {a * 1e3:7.1f} ms   "
        f"graphlib {b * 1e3:7.1f} ms   speed-up x{b / a:.2f}"
    )


def main() -> None:
    ids = [f"task-{i}" for i in range(N)]
    dag = random_dag(N)
    start = time.perf_counter()
    dag_tasks = [Task(ids[i], depends_on=[ids[d] for d in ds]) for i, ds in enumerate(dag)]
    built = time.perf_counter() - start
    print(f"building {N} Task values (validated, not timed below): {built * 1e3:.1f} ms")
    shuffled = dag_tasks[:]
    random.Random(7).shuffle(shuffled)
    chain = [Task(ids[0])] + [Task(ids[i], depends_on=[ids[i - 1]]) for i in range(1, N)]
    print(f"best of {REPEATS}; build + validate + drain every task")
    compare("random DAG, declared order", dag_tasks)
    compare("random DAG, shuffled", shuffled)
    compare("chain", chain)
    cycle()


if __name__ == "__main__":
    main()
