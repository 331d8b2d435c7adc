"""The scheduling core of a run, written once, and its thread and asyncio drivers.

:class:`RunState` is sans-I/O: it wraps a :class:`~aegis_graph.TaskQueue`, turns ready tasks
into :class:`Work` (a prompt for an agent), records outcomes and cascades failures. The
drivers only decide *how* work runs — a thread pool or asyncio tasks — and feed outcomes back.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from typing import Protocol, cast

import attrs
from aegis_adapters import Usage
from aegis_graph import SkipReason, Task, TaskQueue, TaskState

from aegis_gov._agents import AgentConfig, Team
from aegis_gov._conversation import AgentFailedError
from aegis_gov._errors import (
    DeadlineExceededError,
    RunCancelledError,
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
from aegis_gov._results import AgentResult, RunResult, TaskResult
from aegis_gov._resume import fingerprint, reusable_results

logger = logging.getLogger(__name__)

Outcome = AgentResult | AgentFailedError


@attrs.frozen
class Work:
    """A task handed to its agent, with the prompt it gets."""

    task: Task
    agent: AgentConfig
    prompt: str


def build_prompt(task: Task, upstream: Mapping[str, str]) -> str:
    """The task's description followed by its direct dependencies' outputs, labelled by id."""
    description = task.description or task.id
    if not task.depends_on:
        return description
    parts = [description, "", "Results of the tasks this one depends on:"]
    for dep in task.depends_on:
        parts += ["", f"--- {dep} ---", upstream.get(dep, "")]
    return "\n".join(parts)


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
    _lock: threading.Lock = attrs.Factory(threading.Lock)
    cancelled: bool = False

    @classmethod
    def create(
        cls,
        tasks: Iterable[Task],
        team: Team,
        *,
        stop_on_failure: bool,
        emit: EventHandler,
        clock: Callable[[], float],
        resume: RunResult | None = None,
    ) -> RunState:
        """Validate the graph and its agents, before any call is made."""
        tasks = list(tasks)
        kept: dict[str, TaskResult] = {}
        if resume is not None:
            kept = reusable_results(tasks, resume)
        queue = TaskQueue(tasks, stop_on_failure=stop_on_failure, completed=kept)
        for task in queue.tasks:
            if task.agent is None or task.agent not in team:
                raise UnknownAgentError(task.id, task.agent, team.name, list(team))
        state = cls(queue=queue, team=team, emit=emit, clock=clock)
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
        if limit <= 0 or self.cancelled:
            return []
        work: list[Work] = []
        with self._lock:
            for task in self.queue.ready()[:limit]:
                self.queue.start(task.id)
                self._started_at[task.id] = self.clock()
                prompt = build_prompt(task, self._outputs)
                work.append(Work(task, self.team[task.agent or ""], prompt))
        for item in work:
            self.emit(TaskStarted(item.task.id, item.agent.name, 1))
        return work

    def finish(self, work: Work, outcome: Outcome) -> None:
        """Record a task's outcome and cascade a failure to its dependents."""
        task_id, agent = work.task.id, work.agent.name
        with self._lock:
            duration = self.clock() - self._started_at.pop(task_id, self.clock())
            success = isinstance(outcome, AgentResult)
            skipped = self.queue.complete(task_id, success=success)
            if isinstance(outcome, AgentResult):
                self._outputs[task_id] = outcome.output
                result = TaskResult(
                    task_id=task_id,
                    status=TaskState.DONE,
                    agent=agent,
                    output=outcome.output,
                    usage=outcome.usage,
                    attempts=outcome.attempts,
                    duration_s=duration,
                    tool_calls=outcome.tool_calls,
                    fingerprint=fingerprint(work.task),
                )
                event: TaskSucceeded | TaskFailed = TaskSucceeded(
                    task_id, agent, outcome.output, outcome.usage, outcome.attempts, duration
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
                event = TaskFailed(
                    task_id, agent, str(error), type(error).__name__, outcome.attempts, duration
                )
                logger.warning("task %r failed: %s: %s", task_id, type(error).__name__, error)
            self.results[task_id] = result
            skip_events = self._record_skips(skipped)
        self.emit(event)
        for skip in skip_events:
            self.emit(skip)

    def cancel(self) -> None:
        """Start nothing new; every pending task ends SKIPPED with reason ``cancelled``."""
        with self._lock:
            self.cancelled = True
            skip_events = self._record_skips(self.queue.halt(SkipReason.CANCELLED))
        for skip in skip_events:
            self.emit(skip)

    def _record_skips(self, task_ids: Iterable[str]) -> list[TaskSkipped]:
        events = []
        for task_id in task_ids:
            reason = self.queue.skip_reason(task_id)
            reason_text = reason.value if reason is not None else "skipped"
            blamed = self.queue.blame(task_id)
            self.results[task_id] = TaskResult(
                task_id=task_id,
                status=TaskState.SKIPPED,
                agent=self.queue.get(task_id).agent,
                blamed=blamed,
                skip_reason=reason_text,
            )
            events.append(TaskSkipped(task_id, reason_text, blamed))
        return events

    def result(self) -> RunResult:
        """The run's result so far, in declaration order."""
        with self._lock:
            ordered = {t.id: self.results[t.id] for t in self.queue.tasks if t.id in self.results}
        return RunResult(results=ordered, team=self.team.name, cancelled=self.cancelled)


@attrs.frozen
class Limits:
    """A run's deadlines and cancellation handle (wall-clock seconds).

    ``cancel`` is anything with ``is_set()`` (a :class:`threading.Event` or an
    :class:`asyncio.Event`). Once it is set, or ``run_timeout_s`` has passed, no task
    starts, pending tasks are skipped as cancelled and calls in flight get ``grace_s`` to
    finish before they are abandoned (threads) or cancelled (asyncio) and recorded FAILED.
    """

    task_timeout_s: float | None = None
    run_timeout_s: float | None = None
    cancel: _Flag | None = None
    grace_s: float = 10.0


class _Flag(Protocol):
    def is_set(self) -> bool: ...


_POLL_S = 0.05


@attrs.define
class _Deadlines:
    """When each in-flight task must be given up, and when the whole run must stop."""

    limits: Limits
    started: float = attrs.Factory(time.monotonic)
    _task: dict[object, float] = attrs.Factory(dict)

    def run_over(self, now: float) -> bool:
        limit = self.limits.run_timeout_s
        return limit is not None and now - self.started >= limit

    def cancel_requested(self) -> bool:
        return self.limits.cancel is not None and self.limits.cancel.is_set()

    def track(self, key: object, now: float) -> None:
        if self.limits.task_timeout_s is not None:
            self._task[key] = now + self.limits.task_timeout_s

    def forget(self, key: object) -> None:
        self._task.pop(key, None)

    def cut_all(self, keys: Iterable[object], until: float) -> None:
        for key in keys:
            self._task[key] = min(self._task.get(key, until), until)

    def expired(self, keys: Iterable[object], now: float) -> list[object]:
        return [key for key in keys if self._task.get(key, now + 1.0) <= now]

    def wait_s(self, now: float) -> float | None:
        """How long the driver may block before something needs checking."""
        candidates = [deadline - now for deadline in self._task.values()]
        if self.limits.run_timeout_s is not None:
            candidates.append(self.started + self.limits.run_timeout_s - now)
        if self.limits.cancel is not None:
            candidates.append(_POLL_S)
        return max(min(candidates), 0.0) if candidates else None


def _overrun(work: Work, limits: Limits, *, cancelled: bool) -> AgentFailedError:
    if cancelled or limits.task_timeout_s is None:
        error: Exception = (
            DeadlineExceededError(work.task.id, limits.run_timeout_s, scope="run")
            if limits.run_timeout_s is not None and not cancelled
            else RunCancelledTaskError(work.task.id)
        )
    else:
        error = DeadlineExceededError(work.task.id, limits.task_timeout_s, scope="task")
    return AgentFailedError(error, 0, Usage(), ())


def run_threads(
    state: RunState,
    execute: Callable[[Work], Outcome],
    *,
    max_concurrent: int,
    limits: Limits,
    executor: Executor | None = None,
) -> None:
    """Drive a run with threads: start each task as soon as it is ready, up to the limit.

    A thread cannot be interrupted: a task past its deadline is recorded FAILED and its
    thread is abandoned (its late result is ignored). On ``KeyboardInterrupt`` the run is
    cancelled with no grace and :class:`RunCancelledError` carries the partial result.
    """
    own = executor is None
    pool = executor or ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="aegis")
    inflight: dict[Future[Outcome], Work] = {}
    deadlines = _Deadlines(limits)
    abandoned = False
    try:
        while True:
            now = time.monotonic()
            if not state.cancelled and (deadlines.cancel_requested() or deadlines.run_over(now)):
                state.cancel()
                grace = limits.grace_s if deadlines.cancel_requested() else 0.0
                deadlines.cut_all(inflight, now + grace)
            for work in state.take_ready(max_concurrent - len(inflight)):
                future = pool.submit(execute, work)
                inflight[future] = work
                deadlines.track(future, now)
            if not inflight:
                break
            done, _ = wait(inflight, timeout=deadlines.wait_s(now), return_when=FIRST_COMPLETED)
            for future in done:
                deadlines.forget(future)
                state.finish(inflight.pop(future), future.result())
            for key in deadlines.expired(inflight, time.monotonic()):
                future = cast("Future[Outcome]", key)
                deadlines.forget(future)
                abandoned = True
                work = inflight.pop(future)
                state.finish(work, _overrun(work, limits, cancelled=state.cancelled))
    except KeyboardInterrupt as interrupt:
        state.cancel()
        for future, work in inflight.items():
            future.cancel()
            state.finish(work, _overrun(work, limits, cancelled=True))
        abandoned = True
        raise RunCancelledError(state.result()) from interrupt
    finally:
        if own:
            pool.shutdown(wait=not abandoned, cancel_futures=True)


async def run_async(
    state: RunState,
    execute: Callable[[Work], Awaitable[Outcome]],
    *,
    max_concurrent: int,
    limits: Limits,
) -> None:
    """Drive a run with asyncio tasks on the running loop, up to ``max_concurrent`` at once.

    Tasks past a deadline are cancelled and recorded FAILED. If the awaiting task itself is
    cancelled, calls in flight are cancelled, pending tasks skipped, and the cancellation
    propagates (events already reported everything that finished).
    """
    inflight: dict[asyncio.Task[Outcome], Work] = {}
    deadlines = _Deadlines(limits)
    try:
        while True:
            now = time.monotonic()
            if not state.cancelled and (deadlines.cancel_requested() or deadlines.run_over(now)):
                state.cancel()
                grace = limits.grace_s if deadlines.cancel_requested() else 0.0
                deadlines.cut_all(inflight, now + grace)
            for work in state.take_ready(max_concurrent - len(inflight)):
                task = asyncio.ensure_future(execute(work))
                inflight[task] = work
                deadlines.track(task, now)
            if not inflight:
                break
            done, _ = await asyncio.wait(
                inflight, timeout=deadlines.wait_s(now), return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                deadlines.forget(task)
                state.finish(inflight.pop(task), task.result())
            for key in deadlines.expired(inflight, time.monotonic()):
                task = cast("asyncio.Task[Outcome]", key)
                deadlines.forget(task)
                task.cancel()
                work = inflight.pop(task)
                state.finish(work, _overrun(work, limits, cancelled=state.cancelled))
    except asyncio.CancelledError:
        state.cancel()
        for task, work in inflight.items():
            task.cancel()
            state.finish(work, _overrun(work, limits, cancelled=True))
        await asyncio.gather(*inflight, return_exceptions=True)
        raise
