"""Construction-time checks of a `TaskQueue`: duplicates, unknown ids, cycles, and the layers.

Pure functions over ids and int edge lists; `TaskQueue.__init__` calls them.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from itertools import accumulate, chain, compress, count, islice
from operator import eq, itemgetter
from typing import NoReturn, TypeVar, cast

from aegis_graph._errors import (
    CyclicDependencyError,
    DuplicateTaskError,
    UnknownDependencyError,
)
from aegis_graph._task import Task

__all__ = [
    "check_acyclic",
    "layers",
    "raise_duplicate",
    "raise_unknown_dependency",
    "raise_without_roots",
    "resolve",
]

_T = TypeVar("_T")


def raise_duplicate(ids: Sequence[str]) -> NoReturn:
    """Raise `DuplicateTaskError` for the first repeated id of *ids* (one must exist)."""
    seen: set[str] = set()
    for task_id in ids:  # pragma: no branch  # a duplicate exists, so the loop raises
        if task_id in seen:
            raise DuplicateTaskError(task_id)
        seen.add(task_id)
    raise AssertionError  # pragma: no cover  # unreachable: the lengths differed


def raise_unknown_dependency(tasks: Sequence[Task], known: Container[str]) -> NoReturn:
    """Raise `UnknownDependencyError` for the first dependency not in *known* (one must exist)."""
    for task in tasks:  # pragma: no branch  # an unknown id exists, so the loop raises
        for dep in task.depends_on:
            if dep not in known:
                raise UnknownDependencyError(task.id, dep)
    raise AssertionError  # pragma: no cover  # unreachable: a KeyError had a cause


def check_acyclic(
    ids: list[str],
    targets: Sequence[int],
    counts: list[int],
    dependents: list[list[int]],
    roots: list[int],
) -> None:
    """Raise `CyclicDependencyError` if the graph has a cycle (Kahn's algorithm, O(V + E))."""
    remaining = counts.copy()
    order = roots.copy()
    append = order.append
    for i in order:  # the list grows while we walk it: a FIFO queue without a deque
        for j in dependents[i]:
            left = remaining[j] - 1
            remaining[j] = left
            if not left:
                append(j)
    if len(order) != len(counts):
        _raise_cycle(ids, targets, counts, remaining)


def resolve(index: dict[str, int], depends_on: list[tuple[str, ...]], edges: int) -> Sequence[int]:
    """The index of every dependency, task after task; `KeyError` for an unknown id."""
    if edges > 1:
        # One C call does every lookup (a little faster than mapping ``__getitem__``).
        return cast("tuple[int, ...]", itemgetter(*chain.from_iterable(depends_on))(index))
    return list(map(index.__getitem__, chain.from_iterable(depends_on)))


def raise_without_roots(
    tasks: Sequence[Task],
    ids: list[str],
    depends_on: list[tuple[str, ...]],
) -> NoReturn:
    """Raise the error of a graph in which every task has a dependency.

    Such a graph has a cycle unless it names an unknown id. The checks decide which error
    wins as the general path does: a duplicate id, then an unknown dependency, then the
    cycle, found by following each task's first dependency from the first task. O(V + E),
    with one dict keyed by id and no numbering of the tasks.
    """
    n = len(ids)
    following = dict(zip(ids, map(itemgetter(0), depends_on), strict=True))
    if len(following) != n:
        raise_duplicate(ids)
    # Check every dependency is known before walking: a walk of n steps may end on an unknown
    # id it never had to look up (a single task depending on a missing one does).
    if not all(map(following.__contains__, chain.from_iterable(depends_on))):
        raise_unknown_dependency(tasks, following)
    cycle = _walk_to_cycle([ids[0]], following.__getitem__, n)
    raise CyclicDependencyError(tuple(cycle))


def _raise_cycle(
    ids: list[str], targets: Sequence[int], counts: list[int], left_over: list[int]
) -> NoReturn:
    """Raise `CyclicDependencyError` for one cycle among the tasks Kahn's algorithm left over.

    Args:
        ids: The ids, in declaration order.
        targets: The dependencies of every task, as indices, task after task.
        counts: How many dependencies each task has.
        left_over: Positive exactly for the left-over tasks.

    Every left-over task waits on a left-over dependency: pick one for each (its *next*)
    and walk. O(V + E).
    """
    starts = list(accumulate(counts, initial=0))
    following = [-1] * len(counts)
    for i in compress(range(len(counts)), left_over):
        k = starts[i]
        while not left_over[targets[k]]:  # an ordered dependency: try the next one
            k += 1
        following[i] = targets[k]
    first = next(compress(range(len(counts)), left_over))
    cycle = _walk_to_cycle([first], following.__getitem__, sum(map(bool, left_over)))
    raise CyclicDependencyError(tuple(map(ids.__getitem__, cycle)))


def _walk_to_cycle(path: list[_T], step: Callable[[_T], _T], steps: int) -> list[_T]:
    """The cycle a walk of *steps* steps from ``path[0]`` ends on, first element repeated last.

    Every node the walk reaches can step again, so a walk as long as the number of nodes it
    may visit must end on a cycle, which it has gone round once just before its end. The
    walk runs in C: map reads the path list while extend appends to it.
    """
    path.extend(islice(map(step, path), steps))
    length = path[-2::-1].index(path[-1]) + 1
    # Report the cycle from where the walk entered it, as a walk that stops at the first
    # repeat would: the first position whose node comes back *length* steps later.
    entry = next(compress(count(), map(eq, path, islice(path, length, None))))
    return path[entry : entry + length + 1]


def layers(remaining: list[int], dependents: list[list[int]]) -> tuple[tuple[int, ...], ...]:
    """The generations of an acyclic graph, each in index order; consumes *remaining*."""
    layer = [i for i, r in enumerate(remaining) if not r]
    result: list[tuple[int, ...]] = []
    while layer:
        result.append(tuple(layer))
        nxt: list[int] = []
        for i in layer:
            for j in dependents[i]:
                remaining[j] -= 1
                if not remaining[j]:
                    nxt.append(j)
        nxt.sort()
        layer = nxt
    return tuple(result)
