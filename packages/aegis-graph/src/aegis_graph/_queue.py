"""`TaskQueue`: a validated dependency graph that hands out ready tasks and cascades failures.

Over 400 lines on purpose: one class whose per-task and batch paths share its private state;
the construction-time checks live in `_build`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from heapq import heappop, heappush
from itertools import chain, compress, repeat
from operator import lt, not_
from typing import TypeVar, cast

import attrs

from aegis_graph import _build
from aegis_graph._errors import (
    GraphError,
    InconsistentResumeError,
    InvalidTaskError,
    InvalidTransitionError,
    TaskNotReadyError,
    UnknownTaskError,
)
from aegis_graph._mermaid import render_mermaid
from aegis_graph._state import SkipReason, TaskState
from aegis_graph._task import Task

__all__ = ["TaskQueue"]

_Item = TypeVar("_Item")

_PENDING = TaskState.PENDING
_RUNNING = TaskState.RUNNING
_DONE = TaskState.DONE
_FAILED = TaskState.FAILED
_SKIPPED = TaskState.SKIPPED


@attrs.define(init=False, eq=False, repr=False)
class TaskQueue:
    """A dependency graph of tasks that hands out ready work and cascades failures.

    The graph is validated once, at construction (O(V + E), iterative, so a 100k-task chain
    is fine); afterwards each call costs O(1) amortised per dependency edge it touches, plus
    O(log n) for each task it makes ready.
    Internally tasks are numbered in declaration order and every list this class returns
    follows that order.

    Each step has a per-task form (`ready`, `start`, `complete`) and a batch form
    (`ready_ids`, `start_many`, `start_ready`, `complete_many`) that takes the lock once per
    call; a batch call does exactly what the same single calls in a row would, or raises the
    error the first failing one would raise and changes nothing.

    Thread-safety: every method may be called from any number of threads at once; `start`
    (or `start_ready`) is how concurrent workers claim a task without duplicates (the loser
    of a race gets `InvalidTransitionError`). No user code runs under the internal lock.
    """

    _tasks: tuple[Task, ...]
    _ids: list[str]
    _index: dict[str, int]
    _dependents: list[list[int]]
    _remaining: list[int]
    _state: list[TaskState]
    _ready: dict[str, int]
    _heap: list[int]
    _running: dict[str, int]
    _skip_reason: dict[int, SkipReason]
    _blame: dict[int, int]
    _unfinished: int
    _stop_on_failure: bool
    _lock: threading.Lock
    _generations: tuple[tuple[int, ...], ...] | None

    def __init__(
        self,
        tasks: Iterable[Task],
        *,
        stop_on_failure: bool = False,
        completed: Iterable[str] = (),
    ) -> None:
        """Validate the graph and build the queue.

        Args:
            tasks: The tasks, in declaration order.
            stop_on_failure: When true, the first failure halts the queue: every PENDING
                task becomes SKIPPED with `SkipReason.STOPPED`.
            completed: Ids of tasks that start DONE, to resume an earlier run. Each one's
                dependencies must be completed too.

        Raises:
            InvalidTaskError: An element of *tasks* is not a `Task`.
            DuplicateTaskError: Two tasks share an id.
            UnknownDependencyError: A task depends on an id no task has.
            CyclicDependencyError: The dependencies form a cycle.
            UnknownTaskError: *completed* names an unknown id.
            InconsistentResumeError: A completed task has a dependency that is not completed.
        """
        task_tuple = tuple(tasks)
        if not set(map(type, task_tuple)) <= {Task}:
            for task in task_tuple:
                if not isinstance(task, Task):
                    raise InvalidTaskError(f"expected a Task, got {task!r}")
        ids = [task.id for task in task_tuple]
        n = len(ids)
        depends_on = [task.depends_on for task in task_tuple]
        if n and all(depends_on):  # stops at the first task without dependencies
            # No task is free of dependencies, so every task is on or after a cycle (or names
            # an unknown id): find one without numbering the tasks or building any edges.
            _build.raise_without_roots(task_tuple, ids, depends_on)
        counts = list(map(len, depends_on))
        index = dict(zip(ids, range(n), strict=True))
        if len(index) != n:
            _build.raise_duplicate(ids)
        # Edges are handled as two parallel int sequences (dependency, dependent) built with
        # C-level iteration: one dict lookup per edge and no per-edge Python bytecode. Every
        # sequence shares the index's int objects: the work is bound by memory traffic, and
        # fewer objects touched is measurably faster.
        try:
            targets = _build.resolve(index, depends_on, sum(counts))
        except KeyError:
            _build.raise_unknown_dependency(task_tuple, index)
        numbers = list(index.values())
        roots = list(compress(numbers, map(not_, counts)))
        owners = list(chain.from_iterable(map(repeat, numbers, counts)))
        dependents: list[list[int]] = [[] for _ in range(n)]
        # dependents[target].append(owner) for every edge, looping in C.
        deque(map(list.append, map(dependents.__getitem__, targets), owners), maxlen=0)
        # When every task only depends on earlier ones (the usual way to declare a pipeline),
        # declaration order is topological and there can be no cycle.
        if not all(map(lt, targets, owners)):
            _build.check_acyclic(ids, targets, counts, dependents, roots)

        self._tasks = task_tuple
        self._ids = ids
        self._index = index
        self._dependents = dependents
        self._remaining = counts
        self._state = [_PENDING] * n
        self._skip_reason = {}
        self._blame = {}
        self._unfinished = n
        self._stop_on_failure = stop_on_failure
        self._lock = threading.Lock()
        self._generations = None
        if self._resume(completed):
            state = self._state
            roots = [i for i in range(n) if not counts[i] and state[i] is _PENDING]
        self._ready = dict(zip(map(ids.__getitem__, roots), roots, strict=True))
        # The ready positions as a min-heap, so the first few ready tasks are found without
        # scanning them all. Entries are never removed when a task leaves the ready set; a
        # popped entry whose task is no longer PENDING is dropped (a PENDING task that was
        # ready stays ready). A task becomes ready once, so the heap never exceeds n entries.
        self._heap = roots  # ascending, so already a heap
        self._running = {}

    def _resume(self, completed: Iterable[str]) -> bool:
        """Mark *completed* DONE; whether there was any."""
        index = self._index
        wanted = list(completed)
        if not wanted:
            return False
        for task_id in wanted:
            if task_id not in index:
                raise UnknownTaskError(task_id)
        done = {index[task_id] for task_id in wanted}
        for i in sorted(done):
            missing = tuple(
                dep for dep in self._tasks[i].depends_on if self._index[dep] not in done
            )
            if missing:
                raise InconsistentResumeError(self._ids[i], missing)
        for i in done:
            self._state[i] = _DONE
            for j in self._dependents[i]:
                self._remaining[j] -= 1
        self._unfinished -= len(done)
        return True

    # ------------------------------------------------------------------ the graph

    @property
    def tasks(self) -> tuple[Task, ...]:
        """Every task, in declaration order."""
        return self._tasks

    @property
    def stop_on_failure(self) -> bool:
        """Whether the first failure halts the whole queue."""
        return self._stop_on_failure

    def __len__(self) -> int:
        """The number of tasks."""
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        """Whether a task with this id is in the queue."""
        return task_id in self._index

    def __iter__(self) -> Iterator[Task]:
        """Iterate over the tasks in declaration order."""
        return iter(self._tasks)

    def __repr__(self) -> str:
        """A short summary: the size and the state counts."""
        return f"TaskQueue({len(self._tasks)} tasks, {self.summary()})"

    def _position(self, task_id: str) -> int:
        try:
            return self._index[task_id]
        except (KeyError, TypeError):
            raise UnknownTaskError(task_id) from None

    def get(self, task_id: str) -> Task:
        """The task with this id.

        Raises:
            UnknownTaskError: No task has this id.
        """
        return self._tasks[self._position(task_id)]

    def dependencies(self, task_id: str) -> tuple[str, ...]:
        """The ids *task_id* depends on directly, in ``depends_on`` order.

        Raises:
            UnknownTaskError: No task has this id.
        """
        return self._tasks[self._position(task_id)].depends_on

    def dependents(self, task_id: str) -> tuple[str, ...]:
        """The ids that depend directly on *task_id*, in declaration order.

        Raises:
            UnknownTaskError: No task has this id.
        """
        ids = self._ids
        return tuple(ids[j] for j in self._dependents[self._position(task_id)])

    def generations(self) -> list[list[str]]:
        """The tasks in layers: each depends only on tasks of earlier layers.

        The first layer holds the tasks without dependencies; each layer is in declaration
        order. Tasks of one layer may run in parallel.
        """
        ids = self._ids
        return [[ids[i] for i in layer] for layer in self._layers()]

    def topological_order(self) -> list[str]:
        """Every id, each after all its dependencies: the `generations`, flattened."""
        ids = self._ids
        return [ids[i] for layer in self._layers() for i in layer]

    def _remaining_at_start(self) -> list[int]:
        return [len(task.depends_on) for task in self._tasks]

    def _layers(self) -> tuple[tuple[int, ...], ...]:
        # The graph never changes, so the layers are computed once (racing threads would
        # compute the same value).
        if self._generations is None:
            self._generations = _build.layers(self._remaining_at_start(), self._dependents)
        return self._generations

    def to_mermaid(self, *, with_state: bool = False) -> str:
        """A Mermaid flowchart (``flowchart TD``) of the graph, arrows from dependency to dependent.

        Args:
            with_state: Colour each task by its current state (one ``classDef`` per state).
        """
        with self._lock:
            states = list(self._state) if with_state else None
        index = self._index
        edges = [(index[dep], i) for i, task in enumerate(self._tasks) for dep in task.depends_on]
        return render_mermaid(self._ids, edges, states)

    # ------------------------------------------------------------------ the run

    def ready(self, limit: int | None = None) -> list[Task]:
        """The PENDING tasks whose dependencies are all DONE, in declaration order.

        With ``limit``, only the first ``limit`` of them (what a scheduler with that many free
        slots needs). A pure query: nothing changes. Costs O(k log k) for k ready tasks, or
        O(limit log n) with a small limit, never a graph scan.
        """
        return self._first_ready(limit, self._tasks)

    def ready_ids(self, limit: int | None = None) -> list[str]:
        """The ids of `ready` (same order, same ``limit``), without building a list of tasks."""
        return self._first_ready(limit, self._ids)

    def _first_ready(self, limit: int | None, pick: Sequence[_Item]) -> list[_Item]:
        lock = self._lock
        lock.acquire()
        try:
            return list(map(pick.__getitem__, self._first_positions(limit, claim=False)))
        finally:
            lock.release()

    def _first_positions(self, limit: int | None, *, claim: bool) -> list[int]:
        """The first *limit* ready positions (all of them for ``None``), ascending.

        With *claim* they also leave the heap (the caller starts them). Call under the lock.
        """
        ready = self._ready
        if limit is None or limit * 4 >= len(ready):
            # A full sort is cheaper than the heap when the limit covers a good part of the
            # ready tasks, and it rebuilds the heap without stale entries: a sorted list is
            # a heap.
            order = sorted(ready.values())
            k = len(order) if limit is None else max(limit, 0)
            self._heap = order[k:] if claim else order
            return order[:k] if k < len(order) else order
        if limit <= 0:
            return []
        # Pop the first `limit` ready positions (O(limit log n)) and, for a query, put them
        # back; the entries of tasks no longer ready are dropped for good.
        heap = self._heap
        state = self._state
        first: list[int] = []
        while len(first) < limit:
            i = heappop(heap)
            if state[i] is _PENDING:
                first.append(i)
        if not claim:
            for i in first:
                heappush(heap, i)
        return first

    def start(self, task_id: str | Task) -> Task:
        """Claim a ready PENDING task, by id or as a `Task` (from `ready`): it becomes RUNNING.

        A `Task` stands for its id: ``start(task)`` is ``start(task.id)``.

        Returns:
            The task.

        Raises:
            UnknownTaskError: No task has this id.
            TaskNotReadyError: The task is PENDING but a dependency is not DONE.
            InvalidTransitionError: The task is not PENDING (already claimed or finished).
        """
        # The hot paths take the lock with acquire/release: about half the cost of ``with``.
        # They look ids up in the small dicts of ready and running tasks rather than in the
        # index of every task: on a big graph those few entries stay in the CPU's cache.
        # A Task misses the dict of ids (its hash and equality are its own), so it costs
        # the id path nothing: it is looked at only once the lookup has failed.
        lock = self._lock
        lock.acquire()
        try:
            i = self._ready.pop(task_id)  # type: ignore[arg-type]  # only ready PENDING ids
            self._running[task_id] = i  # type: ignore[index]  # an id: a Task is in no dict
            self._state[i] = _RUNNING
            return self._tasks[i]
        except (KeyError, TypeError):
            if not isinstance(task_id, Task):
                raise self._not_startable(task_id, "start") from None
        finally:
            lock.release()
        return self.start(task_id.id)

    def start_many(self, task_ids: Iterable[str | Task]) -> None:
        """Claim several ready PENDING tasks at once: `start` for each id (or `Task`), in order.

        Either every task becomes RUNNING or, when one of the calls would fail, nothing
        changes and the error that call would raise is raised (an id given twice fails the
        second time, with `InvalidTransitionError`). ``start_many(queue.ready())`` claims
        every ready task.

        Raises:
            TypeError: *task_ids* is a string (pass a list of ids).
            UnknownTaskError: No task has one of the ids.
            TaskNotReadyError: A task is PENDING but a dependency is not DONE.
            InvalidTransitionError: A task is not PENDING, or its id is repeated.
        """
        given: list[str | Task] = task_ids if type(task_ids) is list else _batch(task_ids)
        # Looked up as ids: a Task misses the dicts of ids and is dealt with on the failure
        # path, so it costs the ids nothing.
        batch: list[str] = given  # type: ignore[assignment]
        ids: list[str] | None = None
        lock = self._lock
        lock.acquire()
        try:
            # Plain loops, inline: cheaper than C-level map/zip pipelines or helper calls
            # at any batch size, and a batch of one costs little more than `start`.
            ready = self._ready
            running = self._running
            state = self._state
            started = 0
            try:
                for task_id in batch:
                    i = ready.pop(task_id, None)
                    if i is None:
                        break
                    running[task_id] = i
                    state[i] = _RUNNING
                    started += 1
            except TypeError:  # an unhashable id: undone and reported below
                pass
            if started != len(batch):
                for task_id in batch[:started]:
                    i = running.pop(task_id)
                    ready[task_id] = i
                    state[i] = _PENDING
                ids = _ids_of_tasks(batch)
                if ids is None:
                    self._check_batch(batch, "start")
                    raise AssertionError  # pragma: no cover  # unreachable: the check raised
        finally:
            lock.release()
        if ids is not None:  # the batch held tasks: nothing changed, claim their ids
            self.start_many(ids)

    def start_ready(self, limit: int | None = None) -> list[Task]:
        """Claim the first ``limit`` ready tasks (all for ``None``): they become RUNNING.

        What ``start_many(ready_ids(limit))`` would do, in one step: no other thread can
        claim a task in between. With a limit it costs O(limit log n), never a scan of the
        ready tasks.

        Returns:
            The claimed tasks, in declaration order (empty when none is ready).
        """
        lock = self._lock
        lock.acquire()
        try:
            positions = self._first_positions(limit, claim=True)
            ready = self._ready
            running = self._running
            state = self._state
            ids = self._ids
            for i in positions:
                task_id = ids[i]
                del ready[task_id]
                running[task_id] = i
                state[i] = _RUNNING
            tasks = self._tasks
            return [tasks[i] for i in positions]
        finally:
            lock.release()

    def complete(self, task_id: str, *, success: bool = True) -> list[str]:
        """Finish a RUNNING task, or a ready PENDING one, as DONE or FAILED.

        On failure, every PENDING task that depends on it, directly or transitively, becomes
        SKIPPED (`SkipReason.UPSTREAM_FAILED`, blamed on this task); independent branches go
        on. With ``stop_on_failure`` every PENDING task becomes SKIPPED (`SkipReason.STOPPED`)
        instead.

        Returns:
            The ids this call turned SKIPPED, in declaration order.

        Raises:
            UnknownTaskError: No task has this id.
            TaskNotReadyError: The task is PENDING but a dependency is not DONE.
            InvalidTransitionError: The task is already finished.
        """
        lock = self._lock
        lock.acquire()
        try:
            try:
                i = self._running.pop(task_id, None)
                if i is None:
                    i = self._ready.pop(task_id)  # only ready PENDING tasks are in it
            except (KeyError, TypeError):
                raise self._not_startable(task_id, "complete") from None
            state = self._state
            self._unfinished -= 1
            if success:
                state[i] = _DONE
                remaining = self._remaining
                ready = self._ready
                heap = self._heap
                ids = self._ids
                for j in self._dependents[i]:
                    left = remaining[j] - 1
                    remaining[j] = left
                    if not left and state[j] is _PENDING:
                        ready[ids[j]] = j
                        heappush(heap, j)
                return []
            state[i] = _FAILED
            if self._stop_on_failure:
                return self._halt(SkipReason.STOPPED)
            return self._skip_descendants(i)
        finally:
            lock.release()

    def complete_many(self, task_ids: Iterable[str]) -> None:
        """Finish several tasks as DONE at once: ``complete(id)`` for each id, in order.

        Each task must be RUNNING, or ready and PENDING, or made ready by the ids before it
        (``complete_many(["a", "b"])`` where b depends only on a is fine). Either every task
        becomes DONE or, when one of the calls would fail, nothing changes and the error
        that call would raise is raised. A batch only succeeds: report a failure with
        ``complete(id, success=False)``, which cascades it.

        Raises:
            TypeError: *task_ids* is a string (pass a list of ids).
            UnknownTaskError: No task has one of the ids.
            TaskNotReadyError: A task is PENDING and waits on a task that is not DONE and
                not earlier in the batch.
            InvalidTransitionError: A task is already finished, or its id is repeated.
        """
        batch = task_ids if type(task_ids) is list else _batch(task_ids)
        lock = self._lock
        lock.acquire()
        try:
            # The common case, every task RUNNING: take them off the running set, and put
            # them back if one was not there.
            running = self._running
            taken: list[int] = []
            append = taken.append
            try:
                for task_id in batch:
                    i = running.pop(task_id, None)
                    if i is None:
                        break
                    append(i)
            except TypeError:  # an unhashable id: put back and reported below
                pass
            if len(taken) == len(batch):
                self._mark_done(taken)
                return
            for task_id, i in zip(batch, taken):  # noqa: B905  # a prefix of the batch
                running[task_id] = i
            positions = self._check_batch(batch, "complete")
            ready = self._ready
            for task_id in batch:
                running.pop(task_id, None)
                ready.pop(task_id, None)
            self._mark_done(positions)
            # Tasks of the batch that earlier ones made ready are DONE, not ready.
            for task_id in batch:
                ready.pop(task_id, None)
        finally:
            lock.release()

    def _mark_done(self, positions: list[int]) -> None:
        """Mark the tasks at *positions*, taken off the ready and running sets, DONE."""
        state = self._state
        remaining = self._remaining
        dependents = self._dependents
        ready = self._ready
        heap = self._heap
        ids = self._ids
        for i in positions:
            state[i] = _DONE
            for j in dependents[i]:
                left = remaining[j] - 1
                remaining[j] = left
                if not left and state[j] is _PENDING:
                    ready[ids[j]] = j
                    heappush(heap, j)
        self._unfinished -= len(positions)

    def _check_batch(self, batch: list[str], action: str) -> list[int]:
        """The positions of *batch* if the single calls would all succeed, in order.

        Otherwise raise what the first failing single call would. Changes nothing. Call
        under the lock.
        """
        state = self._state
        index = self._index
        seen: set[int] = set()
        positions: list[int] = []
        for task_id in batch:
            i = self._position(task_id)
            if i in seen:
                raise InvalidTransitionError(
                    task_id, _RUNNING if action == "start" else _DONE, action
                )
            current = state[i]
            if current is _PENDING:
                # Completing earlier ids of the batch makes their dependents ready.
                waiting = tuple(
                    dep
                    for dep in self._tasks[i].depends_on
                    if state[index[dep]] is not _DONE
                    and (action == "start" or index[dep] not in seen)
                )
                if waiting:
                    raise TaskNotReadyError(task_id, waiting)
            elif current is not _RUNNING or action == "start":
                raise InvalidTransitionError(task_id, current, action)
            seen.add(i)
            positions.append(i)
        return positions

    def halt(self, reason: SkipReason = SkipReason.CANCELLED) -> list[str]:
        """Stop handing out work: every PENDING task becomes SKIPPED with *reason*.

        RUNNING tasks may still be completed; `ready` returns ``[]`` from now on.

        Returns:
            The ids this call turned SKIPPED, in declaration order.
        """
        with self._lock:
            return self._halt(reason)

    def _halt(self, reason: SkipReason) -> list[str]:
        state = self._state
        skipped = [i for i, s in enumerate(state) if s is _PENDING]
        skip_reason = self._skip_reason
        for i in skipped:
            state[i] = _SKIPPED
            skip_reason[i] = reason
        self._ready.clear()
        self._heap = []
        self._unfinished -= len(skipped)
        ids = self._ids
        return [ids[i] for i in skipped]

    def _skip_descendants(self, root: int) -> list[str]:
        state = self._state
        dependents = self._dependents
        skip_reason = self._skip_reason
        blame = self._blame
        skipped: list[int] = []
        stack = [root]
        # Each task is skipped once and only a newly skipped task's edges are followed, so
        # every edge is walked at most once over the whole run.
        while stack:
            for j in dependents[stack.pop()]:
                if state[j] is _PENDING:
                    state[j] = _SKIPPED
                    skip_reason[j] = SkipReason.UPSTREAM_FAILED
                    blame[j] = root
                    skipped.append(j)
                    stack.append(j)
        self._unfinished -= len(skipped)
        skipped.sort()
        ids = self._ids
        return [ids[i] for i in skipped]

    def _not_startable(self, task_id: str, action: str) -> GraphError:
        i = self._position(task_id)
        state = self._state[i]
        if state is _PENDING:
            ids = self._ids
            index = self._index
            waiting = tuple(
                dep for dep in self._tasks[i].depends_on if self._state[index[dep]] is not _DONE
            )
            return TaskNotReadyError(ids[i], waiting)
        return InvalidTransitionError(self._ids[i], state, action)

    # ------------------------------------------------------------------ queries

    def state(self, task_id: str) -> TaskState:
        """The current state of a task.

        Raises:
            UnknownTaskError: No task has this id.
        """
        return self._state[self._position(task_id)]

    def skip_reason(self, task_id: str) -> SkipReason | None:
        """Why a SKIPPED task was skipped; ``None`` for a task that is not SKIPPED.

        Raises:
            UnknownTaskError: No task has this id.
        """
        i = self._position(task_id)
        with self._lock:
            return self._skip_reason.get(i)

    def blame(self, task_id: str) -> str | None:
        """The root cause of an `SkipReason.UPSTREAM_FAILED` skip: the FAILED task it traces to.

        Always a task that FAILED (never an intermediate skipped task). ``None`` for a task
        that is not SKIPPED because of a failure.

        Raises:
            UnknownTaskError: No task has this id.
        """
        i = self._position(task_id)
        with self._lock:
            root = self._blame.get(i)
        return None if root is None else self._ids[root]

    def _with_state(self, wanted: TaskState) -> list[str]:
        ids = self._ids
        with self._lock:
            return [ids[i] for i, s in enumerate(self._state) if s is wanted]

    def pending_tasks(self) -> list[str]:
        """Ids of PENDING tasks, in declaration order."""
        return self._with_state(_PENDING)

    def running_tasks(self) -> list[str]:
        """Ids of RUNNING tasks, in declaration order."""
        return self._with_state(_RUNNING)

    def done_tasks(self) -> list[str]:
        """Ids of DONE tasks, in declaration order."""
        return self._with_state(_DONE)

    def failed_tasks(self) -> list[str]:
        """Ids of FAILED tasks, in declaration order."""
        return self._with_state(_FAILED)

    def skipped_tasks(self) -> list[str]:
        """Ids of SKIPPED tasks, in declaration order."""
        return self._with_state(_SKIPPED)

    @property
    def is_finished(self) -> bool:
        """Whether no task is PENDING or RUNNING."""
        return not self._unfinished

    def summary(self) -> dict[str, int]:
        """State value -> number of tasks in that state, omitting zero counts.

        Keys follow the `TaskState` order (pending, running, done, failed, skipped).
        """
        with self._lock:
            states = list(self._state)
        counts = dict.fromkeys(TaskState, 0)
        for s in states:
            counts[s] += 1
        return {s.value: c for s, c in counts.items() if c}


def _ids_of_tasks(batch: Sequence[object]) -> list[str] | None:
    """*batch* with each `Task` replaced by its id, or None when it holds no `Task`."""
    if not any(isinstance(item, Task) for item in batch):
        return None
    return [item.id if isinstance(item, Task) else cast("str", item) for item in batch]


def _batch(task_ids: Iterable[_Item]) -> list[_Item]:
    """The ids of a batch call as a list; a bare string is a mistake, not a list of letters.

    Batch calls pass a list through as it is: they only read it, under the lock.
    """
    if isinstance(task_ids, str):
        msg = f"expected an iterable of task ids, got the string {task_ids!r}"
        raise TypeError(f"{msg} (write [{task_ids!r}])")
    return list(task_ids)
