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

import attrs
from aegis_graph import SkipReason, Task, TaskQueue, TaskState

from aegis_gov._agents import AgentConfig, Team
from aegis_gov._conversation import AgentFailedError
from aegis_gov._errors import UnknownAgentError
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


def run_threads(
    state: RunState,
    execute: Callable[[Work], Outcome],
    *,
    max_concurrent: int,
    executor: Executor | None = None,
    cancel_event: threading.Event | None = None,
) -> None:
    """Drive a run with threads: start each task as soon as it is ready, up to the limit.

    On ``KeyboardInterrupt`` or ``cancel_event``, pending tasks are skipped as cancelled and
    the calls already in flight are allowed to finish (their results are kept).
    """
    own = executor is None
    pool = executor or ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="aegis")
    inflight: dict[Future[Outcome], Work] = {}
    try:
        while True:
            if cancel_event is not None and cancel_event.is_set() and not state.cancelled:
                state.cancel()
            for work in state.take_ready(max_concurrent - len(inflight)):
                inflight[pool.submit(execute, work)] = work
            if not inflight:
                break
            try:
                done, _ = wait(inflight, timeout=_poll(cancel_event), return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                state.cancel()
                continue
            for future in done:
                state.finish(inflight.pop(future), future.result())
    finally:
        if own:
            pool.shutdown(wait=True)


def _poll(cancel_event: threading.Event | None) -> float | None:
    # Without a cancel handle nothing but a finishing task can change what to do next.
    return None if cancel_event is None else 0.05


async def run_async(
    state: RunState,
    execute: Callable[[Work], Awaitable[Outcome]],
    *,
    max_concurrent: int,
) -> None:
    """Drive a run with asyncio tasks on the running loop, up to ``max_concurrent`` at once.

    If the run itself is cancelled, pending tasks are skipped as cancelled, in-flight calls
    are cancelled, and the cancellation propagates.
    """
    inflight: dict[asyncio.Task[Outcome], Work] = {}
    try:
        while True:
            for work in state.take_ready(max_concurrent - len(inflight)):
                inflight[asyncio.ensure_future(execute(work))] = work
            if not inflight:
                break
            done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                state.finish(inflight.pop(task), task.result())
    except asyncio.CancelledError:
        state.cancel()
        for task in inflight:
            task.cancel()
        await asyncio.gather(*inflight, return_exceptions=True)
        raise
