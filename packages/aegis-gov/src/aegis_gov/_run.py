"""The scheduling core of a run, written once, and its thread and asyncio drivers.

:class:`RunState` is sans-I/O: it wraps a :class:`~aegis_graph.TaskQueue`, turns ready tasks
into :class:`Work` (a prompt for an agent), records outcomes and cascades failures. The
drivers only decide *how* work runs — a thread pool or asyncio tasks — and feed outcomes back.

Over 400 lines on purpose: RunState and the two drivers share _Flight and the deadline heap;
splitting them would only move private names across modules.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import logging
import math
import queue
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Hashable, Iterable, Iterator, Mapping
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Final, Generic, Protocol, TypeVar, cast

import attrs
from aegis_adapters import Usage
from aegis_graph import SkipReason, Task, TaskQueue, TaskState

from aegis_gov._agents import AgentConfig, Team
from aegis_gov._budget import BudgetMeter
from aegis_gov._errors import (
    DeadlineExceededError,
    RunCancelledTaskError,
    UnknownAgentError,
)
from aegis_gov._events import (
    EventHandler,
    TaskFailed,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from aegis_gov._outcome import Failure, Outcome
from aegis_gov._prompt import build_prompt
from aegis_gov._results import AgentResult, RunCancelledError, RunResult, TaskResult
from aegis_gov._resume import ResumePlan, definition, digest, fingerprint, plan_resume
from aegis_gov._slots import Slot, Slots

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "RunLimits",
    "RunState",
    "Work",
    "Workers",
    "build_prompt",
    "run_async",
    "run_threads",
]

logger = logging.getLogger(__name__)


@attrs.frozen
class Work:
    """A task handed to its agent, with the prompt it gets."""

    task: Task
    agent: AgentConfig
    prompt: str


@attrs.define
class RunState:
    """Everything a run knows, guarded by one lock; drivers call it from any thread."""

    queue: TaskQueue
    team: Team
    emit: EventHandler
    clock: Callable[[], float] = time.monotonic
    results: dict[str, TaskResult] = attrs.Factory(dict)
    _outputs: dict[str, str] = attrs.Factory(dict)
    _started_at: dict[str, float] = attrs.Factory(dict)
    _records: dict[str, tuple[str, Mapping[str, str], str]] = attrs.Factory(dict)
    """Running tasks' fingerprint, definition and input digest, worked out ahead (see
    :meth:`record_ahead`)."""
    _lock: threading.Lock = attrs.Factory(threading.Lock)
    cancelled: bool = False
    stopped: bool = False
    budget: BudgetMeter | None = None
    definitions: Mapping[str, Mapping[str, str]] = attrs.Factory(dict)
    plan: ResumePlan | None = None
    record: Callable[[list[TaskResult]], None] | None = None
    """Commits finished tasks' results (a checkpoint store), called in finishing order."""
    run_id: str | None = None
    _emitting: bool = attrs.field(init=False, default=True)
    _agents: dict[str, AgentConfig] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        # An Emitter without a handler says so: then no event object is built at all.
        self._emitting = getattr(self.emit, "active", True)
        self._agents = dict(self.team.items())  # (a dict: `team[name]` is a Python call)

    @classmethod
    def create(
        cls,
        tasks: Iterable[Task],
        team: Team,
        *,
        stop_on_failure: bool,
        emit: EventHandler,
        clock: Callable[[], float],
        resume: RunResult | ResumePlan | None = None,
        definitions: Mapping[str, Mapping[str, str]] | None = None,
    ) -> RunState:
        """Validate the graph and its agents, before any call is made.

        ``definitions`` are each task's :func:`~aegis_gov._resume.definition` digests
        (recorded with its result, compared on resume); by default from the task and its
        agent's system prompt and tool names.
        """
        tasks = list(tasks)
        if definitions is None:
            definitions = {task.id: _basic_definition(task, team) for task in tasks}
        plan = resume if isinstance(resume, ResumePlan) else None
        if isinstance(resume, RunResult):
            plan = plan_resume(tasks, resume, definitions)
        elif plan is not None:
            plan.check_covers(tasks, definitions)
        kept = plan.kept_results() if plan is not None else {}
        queue = TaskQueue(tasks, stop_on_failure=stop_on_failure, completed=kept)
        names = set(team)  # (a set: `in team` is two Python calls a task)
        for task in queue.tasks:
            if task.agent is None or task.agent not in names:
                raise UnknownAgentError(task.id, task.agent, team.name, list(team))
        state = cls(
            queue=queue, team=team, emit=emit, clock=clock, definitions=definitions, plan=plan
        )
        for task_id, result in kept.items():
            state.results[task_id] = result
            state._outputs[task_id] = result.output or ""
        return state

    @property
    def finished(self) -> bool:
        """True when no task is pending or running."""
        return self.queue.is_finished

    def take_ready(self, limit: int) -> list[Work]:
        """Claim up to ``limit`` ready tasks and build their prompts."""
        if limit <= 0 or self.stopped:
            return []
        work: list[Work] = []
        reused: list[TaskResult] = []
        with self._lock:
            while len(work) < limit and (batch := self.queue.start_ready(limit - len(work))):
                now = self.clock()
                for task in batch:
                    self._started_at[task.id] = now
                    prompt = build_prompt(task, self._outputs)
                    if self.plan is not None and self._reuse(task, prompt):
                        reused.append(self.results[task.id])
                        continue
                    work.append(Work(task, self._agents[task.agent or ""], prompt))
        if reused:
            self._commit(reused)
        if not self._emitting:
            return work
        for result in reused:
            self.emit(
                TaskSucceeded(
                    result.task_id,
                    result.agent or "",
                    result.output or "",
                    result.usage,
                    result.attempts,
                    result.duration_s,
                    reused=True,
                )
            )
        for item in work:
            self.emit(TaskStarted(item.task.id, item.agent.name, 1))
        return work

    def _reuse(self, task: Task, prompt: str) -> bool:
        """Keep a waiting task's earlier result when its prompt came out the same (locked)."""
        plan = self.plan
        if plan is None or task.id not in plan.waiting:
            return False
        previous = plan.previous[task.id]
        if previous.input_digest is None or previous.input_digest != digest(prompt):
            return False
        self.queue.complete(task.id, success=True)
        del self._started_at[task.id]
        self.results[task.id] = previous
        self._outputs[task.id] = previous.output or ""
        return True

    def _commit(self, results: list[TaskResult]) -> None:
        """Hand finished results to the checkpoint store; a failure is logged, not fatal."""
        if self.record is None or not results:
            return
        try:
            self.record(results)
        except Exception:  # the run goes on; its result still comes back in memory
            logger.exception(
                "checkpoint: could not record %s", ", ".join(r.task_id for r in results)
            )

    def record_ahead(self, work: Iterable[Work]) -> None:
        """Work out what a DONE result of each running task records beside its answer.

        Its fingerprint, definition and input digest depend on the task and its prompt
        alone: a driver hands them here while the calls are in flight (an asyncio run, once
        they are sent), so that :meth:`finish` does not hash them as each answer lands.
        Optional: :meth:`finish` works them out itself for a task not seen here.
        """
        with self._lock:
            records, running = self._records, self._started_at
            for item in work:
                task_id = item.task.id
                if task_id in running and task_id not in records:
                    records[task_id] = (
                        fingerprint(item.task),
                        self.definitions.get(task_id, {}),
                        digest(item.prompt),
                    )

    def finish(self, work: Work, outcome: Outcome) -> None:
        """Record a task's outcome and cascade a failure to its dependents."""
        task_id, agent = work.task.id, work.agent.name
        with self._lock:
            now = self.clock()
            duration = now - self._started_at.pop(task_id, now)
            record = self._records.pop(task_id, None)
            success = isinstance(outcome, AgentResult)
            skipped = self.queue.complete(task_id, success=success)
            if isinstance(outcome, AgentResult):
                self._outputs[task_id] = outcome.output
                if record is None:
                    record = (
                        fingerprint(work.task),
                        self.definitions.get(task_id, {}),
                        digest(work.prompt),
                    )
                result = TaskResult(
                    task_id=task_id,
                    status=TaskState.DONE,
                    agent=agent,
                    output=outcome.output,
                    usage=outcome.usage,
                    attempts=outcome.attempts,
                    duration_s=duration,
                    tool_calls=outcome.tool_calls,
                    fingerprint=record[0],
                    endpoint=outcome.endpoint or None,
                    definition=record[1],
                    input_digest=record[2],
                    value=outcome.value if work.agent.output_type is not None else None,
                )
            else:
                error = outcome.error
                result = TaskResult(
                    task_id=task_id,
                    status=TaskState.FAILED,
                    agent=agent,
                    error=str(error),
                    error_type=type(error).__name__,
                    usage=outcome.usage,
                    attempts=outcome.attempts,
                    duration_s=duration,
                    tool_calls=outcome.tool_calls,
                )
                logger.warning("task %r failed: %s: %s", task_id, type(error).__name__, error)
            self.results[task_id] = result
            skips = self._record_skips(skipped) if skipped else []
        if self.record is not None:
            self._commit([result, *skips])
        if self._emitting:
            self.emit(_finished_event(result))
            self._emit_skips(skips)

    def cancel(self) -> None:
        """Start nothing new; every pending task ends SKIPPED with reason ``cancelled``."""
        with self._lock:
            self.cancelled = True
        self.stop(SkipReason.CANCELLED)

    def stop(self, reason: SkipReason) -> None:
        """Start nothing new; every pending task ends SKIPPED with *reason*."""
        with self._lock:
            self.stopped = True
            skips = self._record_skips(self.queue.halt(reason))
        self._commit(skips)
        if self._emitting:
            self._emit_skips(skips)

    def _record_skips(self, task_ids: Iterable[str]) -> list[TaskResult]:
        """Record each of *task_ids* SKIPPED (locked); return their results."""
        skips = []
        for task_id in task_ids:
            reason = self.queue.skip_reason(task_id) or SkipReason.UPSTREAM_FAILED
            result = TaskResult(
                task_id=task_id,
                status=TaskState.SKIPPED,
                agent=self.queue.get(task_id).agent,
                blamed=self.queue.blame(task_id),
                skip_reason=reason,
            )
            self.results[task_id] = result
            skips.append(result)
        return skips

    def _emit_skips(self, skips: list[TaskResult]) -> None:
        for skip in skips:
            reason = skip.skip_reason or SkipReason.UPSTREAM_FAILED
            self.emit(TaskSkipped(skip.task_id, reason, skip.blamed))

    def result(self) -> RunResult:
        """The run's result so far, in declaration order."""
        with self._lock:
            ordered = {t.id: self.results[t.id] for t in self.queue.tasks if t.id in self.results}
        spent = self.budget.spent() if self.budget is not None else None
        return RunResult(
            results=ordered,
            team=self.team.name,
            cancelled=self.cancelled,
            spent=spent,
            run_id=self.run_id,
        )


def _finished_event(result: TaskResult) -> TaskSucceeded | TaskFailed:
    """The event of a task that ran to its end (DONE or FAILED)."""
    if result.status is TaskState.DONE:
        return TaskSucceeded(
            result.task_id,
            result.agent or "",
            result.output or "",
            result.usage,
            result.attempts,
            result.duration_s,
        )
    return TaskFailed(
        result.task_id,
        result.agent or "",
        result.error or "",
        result.error_type or "",
        result.attempts,
        result.duration_s,
    )


def _basic_definition(task: Task, team: Team) -> dict[str, str]:
    """A task's definition digests from what the team alone says (no adapters resolved)."""
    agent = team.get(task.agent or "")
    if agent is None:
        return definition(task)
    return definition(task, system_prompt=agent.system_prompt, tools=agent.tools)


@attrs.frozen
class RunLimits:
    """A run's deadlines and cancellation handle (wall-clock seconds).

    ``cancel`` is anything with ``is_set()`` (a :class:`threading.Event` or an
    :class:`asyncio.Event`). Once it is set, or ``run_timeout_s`` has passed, no task
    starts, pending tasks are skipped as cancelled and calls in flight get ``grace_s`` to
    finish before they are abandoned (threads) or cancelled (asyncio) and recorded FAILED.
    A task waiting without a call (to retry, for a circuit or a turn) is recorded at once.
    """

    task_timeout_s: float | None = None
    run_timeout_s: float | None = None
    cancel: _Flag | None = None
    grace_s: float = 10.0
    budget: BudgetMeter | None = None


class _Flag(Protocol):
    def is_set(self) -> bool: ...


_POLL_S = 0.05
_WAKE_S = 0.25  # the longest the thread driver blocks without looking at its flags
_SETTLE_S = 0.5  # the longest a threaded run waits for tasks it gave up mid-wait to leave


@attrs.define
class _Deadlines:
    """When each in-flight task must be given up, and when the whole run must stop.

    A heap keeps the next deadline at hand, so checking costs O(log n), not O(in flight).
    """

    limits: RunLimits
    started: float
    per_task: dict[object, float] = attrs.Factory(dict)
    """Each tracked call's deadline, by key (empty with no task timeout and no cancel)."""
    _heap: list[tuple[float, int, object]] = attrs.Factory(list)
    _seq: Iterator[int] = attrs.Factory(itertools.count)

    def run_over(self, now: float) -> bool:
        limit = self.limits.run_timeout_s
        return limit is not None and now - self.started >= limit

    def cancel_requested(self) -> bool:
        return self.limits.cancel is not None and self.limits.cancel.is_set()

    def _set(self, key: object, deadline: float) -> None:
        self.per_task[key] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), key))

    def track(self, key: object, now: float) -> None:
        if self.limits.task_timeout_s is not None:
            self._set(key, now + self.limits.task_timeout_s)

    def forget(self, key: object) -> None:
        self.per_task.pop(key, None)

    def cut_all(self, keys: Iterable[object], until: float) -> None:
        for key in keys:
            if until < self.per_task.get(key, math.inf):
                self._set(key, until)

    def _next(self) -> float | None:
        # Drop heap entries that were forgotten or superseded by an earlier deadline.
        heap = self._heap
        while heap and self.per_task.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expired(self, now: float) -> list[object]:
        """Keys whose deadline has passed (the caller forgets them)."""
        keys = []
        while (deadline := self._next()) is not None and deadline <= now:
            keys.append(heapq.heappop(self._heap)[2])
        return keys

    def wait_s(self, now: float) -> float | None:
        """How long the driver may block before something needs checking."""
        candidates = []
        deadline = self._next()
        if deadline is not None:
            candidates.append(deadline - now)
        if self.limits.run_timeout_s is not None:
            candidates.append(self.started + self.limits.run_timeout_s - now)
        if self.limits.cancel is not None:
            candidates.append(_POLL_S)
        return max(min(candidates), 0.0) if candidates else None


def _given_up(slot: Slot | None, error: Exception) -> Failure:
    """The failure of a task the run gave up, with what it did so far if it had started."""
    progress = None if slot is None else slot.progress
    return Failure(error, 0, Usage(), ()) if progress is None else progress(error)


def _overrun(
    work: Work, limits: RunLimits, *, cancelled: bool, slot: Slot | None = None
) -> Failure:
    if cancelled or limits.task_timeout_s is None:
        error: Exception = (
            DeadlineExceededError(work.task.id, limits.run_timeout_s, scope="run")
            if limits.run_timeout_s is not None and not cancelled
            else RunCancelledTaskError(work.task.id)
        )
    else:
        error = DeadlineExceededError(work.task.id, limits.task_timeout_s, scope="task")
    return _given_up(slot, error)


H = TypeVar("H", bound=Hashable)


class _Flight(Generic[H]):
    """The calls a driver has in flight, keyed by its handle (a future or an asyncio task).

    Everything the two drivers share lives here: starting work, recording outcomes,
    deadlines, cancellation and the run's slots. The drivers only decide how to wait.
    """

    def __init__(
        self,
        state: RunState,
        limits: RunLimits,
        slots: Slots,
        *,
        started: float,
        gate: Callable[[Work], bool] | None = None,
    ) -> None:
        self.state = state
        self.limits = limits
        self.slots = slots
        self.inflight: dict[H, tuple[Work, Slot]] = {}
        self.deadlines = _Deadlines(limits, started)
        self.gate = gate
        """Whether a task's endpoint would take its call now (threads only; see ``held``)."""
        self.held: dict[str, collections.deque[tuple[Work, float]]] = {}
        """Started tasks kept back without a thread, by agent, with when each started.

        With ``max_parked`` tasks already parked (each in its thread), a new task whose
        endpoints would all turn it away (held by a Retry-After, circuit open, at their
        concurrency limit) is not given a thread to park in: it waits here, and tasks of
        other endpoints start meanwhile. Without this, a run whose first hundreds of tasks
        were on a sick endpoint started nothing else until they came back.
        """
        self._since: dict[int, float] = {}  # held tasks let go: when each started, by id()
        self._spent = False  # the run's budget ran out
        self.left_waiting: list[H] = []
        """Tasks given up while they waited without a call: they wake at once to leave."""
        self._cut_by_budget: set[H] = set()

    def ready(self, now: float) -> list[tuple[Work, Slot]]:
        """Apply cancellation and the run deadline, then claim work for the free slots."""
        deadlines = self.deadlines
        if not self.state.cancelled and (deadlines.cancel_requested() or deadlines.run_over(now)):
            self.state.cancel()
            grace = self.limits.grace_s if deadlines.cancel_requested() else 0.0
            deadlines.cut_all(self.inflight, now + grace)
        if self.state.cancelled and self.inflight:
            # The grace is for calls in flight: a task waiting to retry (now, or once its
            # call ended: parking wakes the driver) ends at once.
            deadlines.cut_all((h for h, (_, s) in self.inflight.items() if s.parked), now)
        budget = self.limits.budget
        if budget is not None and not self._spent and budget.spent_out:
            self._spent = True
            if not self.state.stopped:
                self.state.stop(SkipReason.BUDGET_SPENT)  # no new task; calls in flight finish
        if self._spent and not self.state.cancelled:
            # A task waiting without a call (to retry, for its turn, a circuit) would only
            # find the budget spent when its wait is over: it ends now.
            self._end_waiting(now)
        if self.gate is None or not (self.held or self.slots.lot_full):
            work = self.state.take_ready(self.slots.claimable())  # the common case
        else:
            work = self._gated(now)
        return list(zip(work, self.slots.claim_many(len(work)), strict=True))

    def _gated(self, now: float) -> list[Work]:
        """Held tasks the endpoint takes now first, then new work (held back if need be)."""
        if self.held:
            self._drop_held(now)
        free = self.slots.claimable(past_lot=True)
        gate = cast("Callable[[Work], bool]", self.gate)
        work = self._release_held(free, gate) if self.held else []
        free -= len(work)
        verdicts: dict[str, bool] = {}
        while free > 0 and (batch := self.state.take_ready(free)):
            for item in batch:
                name = item.agent.name
                if self.slots.lot_full or name in self.held:
                    takes = verdicts.get(name)
                    if takes is None:
                        takes = verdicts[name] = name not in self.held and gate(item)
                    if not takes:
                        self.held.setdefault(name, collections.deque()).append((item, now))
                        continue
                work.append(item)
                free -= 1
        return work

    def _release_held(self, free: int, gate: Callable[[Work], bool]) -> list[Work]:
        """Up to *free* held tasks, oldest first by agent, whose endpoint takes them now."""
        work: list[Work] = []
        for name, group in list(self.held.items()):
            if len(work) >= free:
                break
            if self.slots.lot_full and not gate(group[0][0]):
                continue
            while group and len(work) < free:
                item, since = group.popleft()
                self._since[id(item)] = since
                work.append(item)
            if not group:
                del self.held[name]
        return work

    def _end_waiting(self, now: float) -> None:
        """End the tasks waiting without a call, the budget being spent (see ``ready``)."""
        budget = cast("BudgetMeter", self.limits.budget)
        waiting = [h for h, (_, slot) in self.inflight.items() if slot.parked]
        fresh = [h for h in waiting if h not in self._cut_by_budget]
        if fresh:
            self._cut_by_budget.update(fresh)
            self.deadlines.cut_all(fresh, now)
        for group in self.held.values():
            for item, _since in group:
                self.state.finish(item, Failure(budget.spent_error(), 0, Usage(), ()))
        self.held.clear()

    def _drop_held(self, now: float) -> None:
        """End held tasks the run gave up (cancelled, past its deadline) or past their own."""
        if self.state.cancelled:
            for group in self.held.values():
                for item, _since in group:
                    self.state.finish(item, _overrun(item, self.limits, cancelled=True))
            self.held.clear()
            return
        timeout = self.limits.task_timeout_s
        if timeout is None:
            return
        for name, group in list(self.held.items()):
            while group and group[0][1] + timeout <= now:
                item, _since = group.popleft()
                self.state.finish(item, _overrun(item, self.limits, cancelled=False))
            if not group:
                del self.held[name]

    def launched(self, handle: H, work: Work, slot: Slot, now: float) -> None:
        self.inflight[handle] = (work, slot)
        since = self._since.pop(id(work), now) if self._since else now
        if self.limits.task_timeout_s is not None:  # (no call for a run without one)
            self.deadlines.track(handle, since)

    def landed(self, handle: H, outcome: Callable[[], Outcome]) -> None:
        """A call finished; ignore it if it was already given up on."""
        entry = self.inflight.pop(handle, None)
        if entry is not None:
            work, slot = entry
            if self.deadlines.per_task:  # (nothing to forget without deadlines: no call)
                self.deadlines.forget(handle)
            slot.leave()
            try:
                result = outcome()
            except Exception as exc:  # a bug below; the run still accounts for it
                logger.exception("task %r crashed", work.task.id)
                result = Failure(exc)
            except BaseException:  # Ctrl-C raised inside the call: the task ends cancelled
                self.state.finish(work, _overrun(work, self.limits, cancelled=True, slot=slot))
                raise
            self.state.finish(work, result)

    def expire(self, now: float) -> list[H]:
        """Give up on calls past their deadline; return their handles."""
        expired = cast("list[H]", self.deadlines.expired(now))
        for handle in expired:
            self.deadlines.forget(handle)
            work, slot = self.inflight.pop(handle)
            if slot.parked:
                self.left_waiting.append(handle)
            slot.leave()
            if handle in self._cut_by_budget and not self.state.cancelled:
                budget = cast("BudgetMeter", self.limits.budget)
                self.state.finish(work, _given_up(slot, budget.spent_error()))
                continue
            cancelled = self.state.cancelled
            self.state.finish(work, _overrun(work, self.limits, cancelled=cancelled, slot=slot))
        return expired

    def abort(self) -> list[H]:
        """Cancel the run and give up on every call in flight; return their handles."""
        self.state.cancel()
        handles = list(self.inflight)
        for handle in handles:
            work, slot = self.inflight.pop(handle)
            if slot.parked:
                self.left_waiting.append(handle)
            slot.leave()
            self.state.finish(work, _overrun(work, self.limits, cancelled=True, slot=slot))
        self._drop_held(math.inf)
        return handles


def max_parked(max_concurrent: int) -> int:
    """How many tasks of a threaded run may wait without a slot (each keeps a thread).

    Threads start only as they are needed, so the cap costs nothing until a run parks that
    many; past it, a new task starts only if one of its endpoints would take its call now
    (the others wait without a thread until one would, or until parked tasks come back).
    """
    return max(64, 16 * max_concurrent)


MAX_PARKED_ASYNC: Final = 1 << 30
"""Parked tasks of an asyncio run keep no thread: any number may wait without a slot."""


class Workers:
    """Worker threads kept between runs, so a run does not pay for starting a pool.

    One run borrows them at a time; a run that finds them busy (another thread's run) gets
    a pool of its own for its duration. A run that gives up on a thread (a deadline, Ctrl-C)
    retires the pool, since that thread may never come back. ``close`` shuts them down.
    """

    def __init__(self, size: int) -> None:
        """Keep up to *size* threads."""
        self.size = size
        self._lock = threading.Lock()
        self._idle: ThreadPoolExecutor | None = None
        self._closed = False

    @contextlib.contextmanager
    def borrow(self) -> Iterator[tuple[ThreadPoolExecutor, Callable[[], None]]]:
        """A pool for one run, and a callback that retires it (a thread was given up)."""
        with self._lock:
            pool, self._idle = self._idle, None
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="aegis")
        retired = False

        def retire() -> None:
            nonlocal retired
            retired = True

        try:
            yield pool, retire
        finally:
            with self._lock:
                keep = not retired and not self._closed and self._idle is None
                if keep:
                    self._idle = pool
            if not keep:
                pool.shutdown(wait=not retired, cancel_futures=True)

    def close(self) -> None:
        """Shut the idle threads down; a run still going keeps its own until it ends."""
        with self._lock:
            self._closed = True
            pool, self._idle = self._idle, None
        if pool is not None:
            pool.shutdown(wait=True)


def run_threads(
    state: RunState,
    execute: Callable[[Work, Slot], Outcome],
    *,
    max_concurrent: int,
    limits: RunLimits,
    clock: Callable[[], float] = time.monotonic,
    workers: Workers | None = None,
    gate: Callable[[Work], bool] | None = None,
) -> None:
    """Drive a run with threads: start each task as soon as it is ready, up to the limit.

    Finished calls report through a completion queue, so each costs O(1) however many are
    in flight. A thread cannot be interrupted: a task past its deadline is recorded FAILED
    and its thread abandoned (its late result is ignored). Deadlines and the cancel grace
    are measured on *clock*.

    Ctrl-C: while the run lasts on the main thread with Python's default SIGINT handler, a
    SIGINT only *asks* the loop to stop, and the loop stops at a point of its choosing — the
    run is cancelled with no grace and :class:`RunCancelledError` carries the partial result,
    in which every task is DONE, FAILED or SKIPPED. (A KeyboardInterrupt raised at an
    arbitrary bytecode could land between claiming a task and tracking it.)

    *gate* tells whether a task's endpoint would take its call now: with it, once
    :func:`max_parked` tasks are parked, tasks it turns away wait without a thread while
    others start (without it, nothing starts until a parked task comes back).
    """
    parked = max_parked(max_concurrent)
    if workers is None or workers.size < max_concurrent + parked:
        workers = Workers(max_concurrent + parked)
        workers.close()  # used for this run only: shut down when it ends
    with workers.borrow() as (pool, retire):
        _drive_threads(state, execute, pool, retire, max_concurrent, limits, clock, gate)


def _drive_threads(  # noqa: PLR0917  # the driver's state, handed over once
    state: RunState,
    execute: Callable[[Work, Slot], Outcome],
    pool: ThreadPoolExecutor,
    retire: Callable[[], None],
    max_concurrent: int,
    limits: RunLimits,
    clock: Callable[[], float],
    gate: Callable[[Work], bool] | None,
) -> None:
    parked = max_parked(max_concurrent)
    finished: queue.SimpleQueue[Future[Outcome] | None] = queue.SimpleQueue()
    slots = Slots(max_concurrent, max_parked=parked, wake=lambda: finished.put(None))
    flight: _Flight[Future[Outcome]] = _Flight(state, limits, slots, started=clock(), gate=gate)
    interrupted = threading.Event()
    interrupt: KeyboardInterrupt | None = None
    abandoned = False
    try:
        with _sigint_as_request(interrupted, finished):
            while True:
                now = clock()
                for work, slot in flight.ready(now):
                    future = pool.submit(execute, work, slot)
                    flight.launched(future, work, slot, now)
                    future.add_done_callback(finished.put)
                if not flight.inflight and not flight.held:
                    break
                # (at most _WAKE_S: held tasks are looked at again at least that often)
                _land(flight, finished, flight.deadlines.wait_s(now))
                if interrupted.is_set():
                    interrupt = KeyboardInterrupt()
                    break
                abandoned = bool(flight.expire(clock())) or abandoned
    except KeyboardInterrupt as exc:  # raised where a handler of the application's runs
        interrupt = exc
    finally:
        if interrupt is not None:
            for future in flight.abort():
                future.cancel()
            abandoned = True
        _settle(flight.left_waiting)
        if abandoned:
            retire()
    if interrupt is not None:
        raise RunCancelledError(state.result()) from interrupt


def _settle(left_waiting: list[Future[Outcome]]) -> None:
    """Let tasks given up mid-wait leave before the run returns (at most ``_SETTLE_S``).

    They wake at once and give back what they held (a turn in a declared pace), so the next
    run does not queue behind turns no one will take (it waited up to 7 s). A wait that
    cannot be cut short (an injected sleep) is not waited for long.
    """
    if left_waiting:
        futures.wait(left_waiting, timeout=_SETTLE_S)


def _land(
    flight: _Flight[Future[Outcome]],
    finished: queue.SimpleQueue[Future[Outcome] | None],
    wait_s: float | None,
) -> None:
    """Wait up to *wait_s* for calls to finish; record every one that has."""
    with contextlib.suppress(queue.Empty):
        # Wake now and then even with nothing due: a signal received by another thread does
        # not interrupt this wait.
        done = finished.get(timeout=_WAKE_S if wait_s is None else min(wait_s, _WAKE_S))
        while True:  # take every call that finished meanwhile before looking again
            if done is not None:
                flight.landed(done, done.result)
            done = finished.get_nowait()


@contextlib.contextmanager
def _sigint_as_request(
    interrupted: threading.Event, wake: queue.SimpleQueue[Future[Outcome] | None]
) -> Iterator[None]:
    """Turn SIGINT into a flag (and a wake-up) while the block runs, when that is ours to do.

    Only on the main thread and only over Python's default handler: an application (or the
    ``aegis`` command) that installed its own keeps it.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    def request_stop(_signum: int, _frame: object) -> None:
        interrupted.set()
        wake.put(None)  # SimpleQueue.put is safe to call from a signal handler

    signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


async def run_async(
    state: RunState,
    execute: Callable[[Work, Slot], Coroutine[object, object, Outcome]],
    *,
    max_concurrent: int,
    limits: RunLimits,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Drive a run with asyncio tasks on the running loop, up to ``max_concurrent`` at once.

    Tasks past a deadline are cancelled and recorded FAILED. If the awaiting task itself is
    cancelled, calls in flight are cancelled, pending tasks skipped, and the cancellation
    propagates (events already reported everything that finished).
    """
    import asyncio  # noqa: PLC0415  # asyncio loads with the async API

    loop = asyncio.get_running_loop()
    finished = _Finished(loop)
    # Tasks park from the loop's own thread, so no thread-safe hand-off is needed.
    slots = Slots(max_concurrent, max_parked=MAX_PARKED_ASYNC, wake=finished.nudge)
    # In flight by slot (each task's own): a task hands its slot back as it ends.
    flight: _Flight[Slot] = _Flight(state, limits, slots, started=clock())
    ended, tasks = finished.ended, finished.tasks
    try:
        while True:
            now = clock()
            _launch(loop, flight, execute, now, finished)
            if not flight.inflight:
                break
            await finished.wait(flight.deadlines.wait_s(now))
            while ended:  # every call that finished meanwhile, before looking again
                slot = ended.popleft()
                task = tasks.pop(slot)
                if not task.cancelled():
                    flight.landed(slot, task.result)
            for slot in flight.expire(clock()):
                tasks[slot].cancel()
    except asyncio.CancelledError:
        handles = [tasks[slot] for slot in flight.abort()]
        for task in handles:
            task.cancel()
        await asyncio.gather(*handles, return_exceptions=True)
        raise


def _launch(
    loop: asyncio.AbstractEventLoop,
    flight: _Flight[Slot],
    execute: Callable[[Work, Slot], Coroutine[object, object, Outcome]],
    now: float,
    finished: _Finished,
) -> None:
    """Start a task for each piece of ready work; each tells *finished* when it ends."""
    ready = flight.ready(now)
    tasks = finished.tasks
    for work, slot in ready:
        # (create_task: ensure_future makes more checks)
        tasks[slot] = loop.create_task(_carry(execute(work, slot), slot, finished))
        flight.launched(slot, work, slot, now)
    if ready:  # runs after the new tasks' first steps, which send their requests
        loop.call_soon(flight.state.record_ahead, [work for work, _slot in ready])


async def _carry(
    call: Coroutine[object, object, Outcome], slot: Slot, finished: _Finished
) -> Outcome:
    """Run one task's call; then hand its slot to the driver, which records how it ended.

    The task is done (or raised, or was cancelled) by the time the driver looks: nothing is
    awaited after the hand-over. Cheaper than a done callback, a handle run by the loop.
    """
    try:
        return await call
    finally:
        finished.put(slot)


class _Finished:
    """An asyncio run's tasks by slot, those that ended, and the driver's wake-up.

    What ``asyncio.Queue`` did here, with a plain deque: a task's end costs an append and,
    for the first of a turn of the loop, setting the future the driver awaits.
    """

    __slots__ = ("_loop", "_nudged", "_waiter", "ended", "tasks")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.tasks: dict[Slot, asyncio.Task[Outcome]] = {}
        """Every task not yet recorded, by its slot."""
        self.ended: collections.deque[Slot] = collections.deque()
        """The slots of the tasks that ended, in the order they did."""
        self._waiter: asyncio.Future[None] | None = None
        self._nudged = False

    def put(self, slot: Slot) -> None:
        """The task holding *slot* is ending (see :func:`_carry`)."""
        self.ended.append(slot)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def nudge(self) -> None:
        """Wake the driver with no task ended (a slot came free)."""
        self._nudged = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout_s: float | None) -> None:
        """Until a task ends or a nudge comes (at once if one did), or *timeout_s* passes."""
        if not self.ended and not self._nudged:
            loop = self._loop
            waiter = self._waiter = loop.create_future()
            timer = None if timeout_s is None else loop.call_later(timeout_s, _resolve, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        self._nudged = False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
