"""OpenMultiAgent: the front door that runs agents and teams over task graphs.

It validates what it is given, resolves each agent's route (adapter, endpoint key, tools) once,
and hands the work to the :class:`~aegis_gov._caller.EndpointCaller` (all provider I/O) and the
run drivers in :mod:`aegis_gov._run`. It makes no request itself.

Over 400 lines on purpose: most of it is the public API's docstrings; the code only validates,
resolves routes and hands work to _caller and _run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import Executor
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar, cast

import attrs
from aegis_adapters import (
    ChatAdapter,
    Endpoint,
    LLMAdapter,
    ToolSpec,
    adapter_from_environment,
)
from aegis_breaker import AgentPool, BreakerEvent, CircuitState, StateChanged
from aegis_graph import InvalidTaskError, Task

from aegis_gov._agents import AgentConfig, Team
from aegis_gov._budget import Budget, BudgetMeter
from aegis_gov._caller import EndpointCaller, Route, Sink, counts_against_breaker, endpoint_key
from aegis_gov._checks import endpoint_keyed
from aegis_gov._durable import checkpointed, definitions
from aegis_gov._events import (
    CircuitStateChanged,
    Emitter,
    EventHandler,
)
from aegis_gov._limits import Limits, RedisRateStore
from aegis_gov._outcome import Failure, Outcome
from aegis_gov._results import AgentResult, RunResult
from aegis_gov._resume import ResumePlan
from aegis_gov._retry import RetryPolicy
from aegis_gov._run import RunLimits, RunState, Workers, max_parked, run_async, run_threads
from aegis_gov._slots import asyncio_sleep

if TYPE_CHECKING:
    import asyncio

    from aegis_gov._checkpoint import CheckpointStore
    from aegis_gov._status import Status
    from aegis_gov._task_trace import TaskTrace
    from aegis_gov._tools import ToolRegistry
    from aegis_gov._tracing import RunTrace, RunTracer, Tracing

__all__ = ["OpenMultiAgent", "adapter_from_environment", "endpoint_key"]

_T = TypeVar("_T")

logger = logging.getLogger(__name__)


def _environment_reason() -> str:
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "ANTHROPIC_API_KEY is set"
    if os.environ.get("OPENAI_API_KEY"):
        return "OPENAI_API_KEY is set"
    return "neither ANTHROPIC_API_KEY nor OPENAI_API_KEY is set"


class OpenMultiAgent:
    """Runs agents, alone or as a team over a task graph, behind an :class:`AgentPool`.

    Args:
        pool: bounds concurrency and holds one circuit breaker per provider endpoint. The
            default is ``AgentPool()`` counting only retryable provider errors as failures.
        default_adapter: used by agents whose ``adapter`` is None; chosen from the
            environment at first use when not given (see :func:`adapter_from_environment`).
        tools: the registry agents' tools come from; a default :class:`ToolRegistry` (safe
            built-ins, shell disabled) is made at first use.
        retry: how retryable errors are retried.
        sleep: how the sync API waits between retries (tests pass a fake).
        async_sleep: how the async API waits between retries.
        clock: monotonic seconds, for durations and deadlines.
        seed: seeds the retry jitter, for reproducible runs.
        limits: what providers' accounts allow, by model name, ``"provider:model"`` or
            endpoint key: requests and tokens per minute are paced before each request
            (waiting tasks give their slots up), and a declared ``max_concurrent`` replaces
            the endpoint's adaptive limit. See :class:`Limits`.
        rate_store: keep the buckets of ``limits`` in Redis (a :class:`RedisRateStore`), so
            every process given the same store shares one budget per model.
        tracing: emit OpenTelemetry spans for runs and single-agent calls (``True``, or a
            :class:`Tracing` to choose the tracer provider or capture content); needs
            ``aegis-gov[otel]``. Off by default, and then OpenTelemetry is not imported.

    Thread-safety: one instance may run several agents and runs at once.
    """

    def __init__(
        self,
        pool: AgentPool | None = None,
        *,
        default_adapter: LLMAdapter | None = None,
        tools: ToolRegistry | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], object] = time.sleep,
        async_sleep: Callable[[float], Awaitable[object]] = asyncio_sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        limits: Mapping[str, Limits] | None = None,
        tracing: Tracing | bool = False,
        rate_store: RedisRateStore | None = None,
    ) -> None:
        """Create the facade; nothing is contacted until a run starts.

        Raises:
            TypeError: an argument has the wrong type (a string for an adapter, ...).
            ValueError: two ``limits`` keys name one endpoint (URLs spelled two ways)
                with different limits.
            ImportError: ``tracing`` is on and opentelemetry-api is not installed.
        """
        _check_type("pool", pool, AgentPool)
        if tools is not None:
            from aegis_gov._tools import ToolRegistry  # noqa: PLC0415  # tools load when used

            _check_type("tools", tools, ToolRegistry)
        _check_type("retry", retry, RetryPolicy)
        _check_type("rate_store", rate_store, RedisRateStore)
        if default_adapter is not None and not isinstance(default_adapter, LLMAdapter):
            raise TypeError(
                "default_adapter must be an adapter (with generate and stream), "
                f"got {default_adapter!r:.80}"
            )
        self._pool = pool if pool is not None else AgentPool(is_failure=counts_against_breaker)
        self._default_adapter = default_adapter
        self._tools = tools
        self._clock = clock
        self._lock = threading.Lock()
        self._watchers: list[Emitter] = []
        self._caller = EndpointCaller(
            self._pool,
            lambda: self.tools,
            retry=retry if retry is not None else RetryPolicy(),
            rng=random.Random(seed),  # noqa: S311  # jitter, not cryptography
            sleep=sleep,
            async_sleep=async_sleep,
            limits=_checked_limits(limits),
            clock=clock,
            rate_store=rate_store,
        )
        self._pool.add_listener(self._forward_breaker_event)
        max_concurrent = self._pool.max_concurrent
        self._workers = Workers(max_concurrent + max_parked(max_concurrent))
        self._tracer = _make_tracer(tracing)

    # -- configuration -------------------------------------------------------------------

    @property
    def pool(self) -> AgentPool:
        """The pool every call goes through."""
        return self._pool

    @property
    def clock(self) -> Callable[[], float]:
        """The monotonic clock runs are timed with (give it to a ``TimelineRecorder``)."""
        return self._clock

    @property
    def retry(self) -> RetryPolicy:
        """How retryable errors are retried (assign a new policy to change it)."""
        return self._caller.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self._caller.retry = policy

    @property
    def tools(self) -> ToolRegistry:
        """The tool registry agents' tools are looked up in."""
        with self._lock:
            if self._tools is None:
                from aegis_gov._tools import ToolRegistry  # noqa: PLC0415  # loads when used

                self._tools = ToolRegistry()
            return self._tools

    @property
    def default_adapter(self) -> LLMAdapter:
        """The adapter of agents without one (chosen from the environment at first use)."""
        chosen = self._default_adapter
        if chosen is not None:  # the common case needs no lock: it never changes once set
            return chosen
        with self._lock:
            if self._default_adapter is None:
                self._default_adapter = adapter_from_environment()
                # Said once per facade, loudly: a team whose agents name no adapter quietly
                # talking to a local Ollama surprised users.
                logger.warning(
                    "agents without an adapter use %r, chosen from the environment (%s); "
                    "pass OpenMultiAgent(default_adapter=...) or AgentConfig(adapter=...) "
                    "to choose",
                    self._default_adapter,
                    _environment_reason(),
                )
            return self._default_adapter

    def adapter_for(self, agent: AgentConfig) -> LLMAdapter:
        """The adapter ``agent`` uses."""
        return agent.adapter if agent.adapter is not None else self.default_adapter

    @staticmethod
    def create_team(name: str, *agents: AgentConfig) -> Team:
        """A team of ``agents``; raises :class:`DuplicateAgentError` on a repeated name."""
        return Team(name, agents)

    def close(self) -> None:
        """Let the worker threads kept between ``run_tasks`` calls go.

        A facade keeps its threads so a run does not pay for starting them; ``close`` (or
        leaving a ``with OpenMultiAgent(...) as oma:`` block) shuts them down. The facade
        still works afterwards: each later run starts and stops threads of its own.
        """
        self._workers.close()

    def __enter__(self) -> OpenMultiAgent:  # noqa: PYI034  # Self needs Python 3.11
        """Use the facade in a ``with`` block; its threads are shut down at the end."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Call :meth:`close`."""
        self.close()

    def get_status(self) -> Status:
        """A snapshot of the pool and of each provider endpoint called so far.

        Typed (``status.pool.state``, ``status.endpoints[key].adaptive``) and readable as
        the article's dict: ``pool_state`` is the worst state over all endpoints (open >
        half_open > closed), ``pool_consecutive_failures`` the highest count among them,
        ``endpoints`` maps each endpoint key to its breaker's status, with its adaptive
        concurrency limit under ``"adaptive"`` once it has been called.
        """
        from aegis_gov._status import EndpointStatus, Status  # noqa: PLC0415  # rarely used

        pool = self._pool.snapshot()
        adaptive = self._caller.adaptive_status()
        endpoints = {
            key: EndpointStatus(key, self._caller.probed_status(key, breaker), adaptive.get(key))
            for key, breaker in pool.breakers.items()
            if key != "default"  # it guards direct pool.run calls, not an endpoint
        }
        return Status(pool, endpoints)

    # -- single agents -------------------------------------------------------------------

    def run_agent(self, agent: AgentConfig[_T], task: str) -> AgentResult[_T]:
        """Ask one agent to do ``task``; return its answer (``str(result)`` is the text).

        With an ``output_type``, the result's ``value`` is the validated answer, typed as
        that type. Raises the adapter's error after retries (a :class:`PermanentError` at
        once), :class:`CircuitOpenError` when the endpoint's breaker stays open too long, or
        :class:`OutputValidationError` when the answers never matched the output type.
        """
        route = self._route(agent, task)
        _warm_up(route.adapter)
        started = self._clock()
        outcome = self._caller.run(route, task, Emitter(None), trace=self._agent_trace(route))
        return _answer(outcome, self._clock() - started, agent)

    async def arun_agent(self, agent: AgentConfig[_T], task: str) -> AgentResult[_T]:
        """The asyncio twin of :meth:`run_agent`; it never blocks the event loop."""
        route = self._route(agent, task)
        await _awarm_up(route.adapter)
        started = self._clock()
        trace = self._agent_trace(route)
        outcome = await self._caller.arun(route, task, Emitter(None), trace=trace)
        return _answer(outcome, self._clock() - started, agent)

    # -- task graphs ---------------------------------------------------------------------

    def run_tasks(
        self,
        tasks: Iterable[Task],
        team: Team,
        *,
        stop_on_failure: bool = False,
        on_event: EventHandler | None = None,
        stream: bool | None = None,
        resume: RunResult | ResumePlan | None = None,
        task_timeout_s: float | None = None,
        run_timeout_s: float | None = None,
        cancel: threading.Event | None = None,
        cancel_grace_s: float = 10.0,
        executor: Executor | None = None,
        budget: Budget | None = None,
        checkpoint: CheckpointStore | None = None,
    ) -> RunResult:
        """Run a task graph with a team; every task ends DONE, FAILED or SKIPPED.

        Everything is validated before the first call (graph, agents, tools). Each task
        starts as soon as its dependencies are done, up to the pool's ``max_concurrent``
        at once, and gets a prompt with its description and its direct dependencies'
        outputs. A failure skips what depends on it (``stop_on_failure=True`` skips all
        that is pending).

        Args:
            tasks: the graph; ids unique, dependencies known, no cycles.
            team: the agents; every task's ``agent`` must name one of them.
            stop_on_failure: skip everything pending after the first failure.
            on_event: receives typed events, never two at once (from worker threads).
            stream: stream answers, reporting chunks as :class:`TaskOutputDelta` events
                (after a :class:`TaskRetrying`, a task's chunks start again). Defaults to
                streaming whenever ``on_event`` is given.
            resume: an earlier result (or :meth:`plan_resume`'s plan for it): a DONE task
                is kept when its definition and everything upstream are unchanged; the rest
                runs again (see :class:`ResumePlan`).
            task_timeout_s: a task still running after this long is recorded FAILED with
                :class:`DeadlineExceededError` (its thread is abandoned, not killed, and its
                call keeps its place under ``max_concurrent`` until it returns: a task waiting
                for that place spends its own ``task_timeout_s`` waiting; ``arun_tasks``
                cancels the call instead).
            run_timeout_s: the run stops after this long, as if cancelled with no grace.
            cancel: set it to cancel: nothing new starts, pending tasks are skipped as
                cancelled, calls in flight get ``cancel_grace_s`` to finish (a task waiting to
                retry ends at once), and the partial result comes back with ``cancelled=True``.
            cancel_grace_s: see ``cancel``.
            executor: make each request to a provider on this executor (a process pool, a
                Dask client's executor, ...). The queue, retries, breakers and tools stay
                here; only ``adapter.chat`` runs there, so adapters must pickle for a
                process-based executor. Answers are not streamed through an executor.
            budget: the most the run may spend (tokens, requests, cost): once spent, no new
                request is sent and tasks not started end SKIPPED (``budget_spent``); the
                result's ``spent`` says what was spent. See :class:`Budget`.
            checkpoint: commit every task's result to this store the moment it finishes
                (a :class:`Checkpoint` file, a ``RedisCheckpoint``), so a crash loses no
                finished task: resume from ``checkpoint.load(result.run_id)``. Calls in
                flight when a run dies are made again on resume (at least once).

        Raises:
            GraphError, UnknownAgentError, UnknownToolError, IncompatibleResumeError:
                before any call. RunCancelledError on Ctrl-C, with the partial result.
            CheckpointError: the checkpoint store cannot record the run (before any call).
        """
        _check_run_options(on_event, cancel, executor)
        _check_checkpoint(checkpoint)
        emit = Emitter(on_event)
        state, routes = self._prepare(tasks, team, stop_on_failure, emit, resume)
        streaming = (on_event is not None if stream is None else stream) and executor is None
        meter = _meter(budget, routes, state)
        limits = RunLimits(task_timeout_s, run_timeout_s, cancel, cancel_grace_s, meter)
        for adapter in _distinct_adapters(routes):
            _warm_up(adapter)
        with (
            _run_span(self._tracer, state) as trace,
            self._watching(emit, trace),
            checkpointed(checkpoint, state, _source(resume)),
        ):
            execute = self._caller.task_runner(
                routes, emit, streaming=streaming, executor=executor, budget=meter, trace=trace
            )
            run_threads(
                state,
                execute,
                max_concurrent=self._pool.max_concurrent,
                limits=limits,
                clock=self._clock,
                workers=self._workers,
                gate=self._caller.task_gate(routes),
            )
        return state.result()

    async def arun_tasks(
        self,
        tasks: Iterable[Task],
        team: Team,
        *,
        stop_on_failure: bool = False,
        on_event: EventHandler | None = None,
        stream: bool | None = None,
        resume: RunResult | ResumePlan | None = None,
        task_timeout_s: float | None = None,
        run_timeout_s: float | None = None,
        cancel: asyncio.Event | threading.Event | None = None,
        cancel_grace_s: float = 10.0,
        budget: Budget | None = None,
        checkpoint: CheckpointStore | None = None,
    ) -> RunResult:
        """The asyncio twin of :meth:`run_tasks`: same semantics, events and result.

        No thread per task: adapters' async methods run on the current loop, and calls
        past a deadline (or after the cancel grace) are cancelled rather than abandoned.
        Cancelling the awaiting task cancels calls in flight, skips pending tasks and
        re-raises :class:`asyncio.CancelledError`; use ``cancel`` to get the partial
        result back instead.
        """
        _check_run_options(on_event, cancel, None)
        _check_checkpoint(checkpoint)
        emit = Emitter(on_event)
        state, routes = self._prepare(tasks, team, stop_on_failure, emit, resume)
        streaming = on_event is not None if stream is None else stream
        meter = _meter(budget, routes, state)
        limits = RunLimits(task_timeout_s, run_timeout_s, cancel, cancel_grace_s, meter)
        for adapter in _distinct_adapters(routes):
            await _awarm_up(adapter)
        with (
            _run_span(self._tracer, state) as trace,
            self._watching(emit, trace),
            checkpointed(checkpoint, state, _source(resume)),
        ):
            execute = self._caller.async_task_runner(
                routes, emit, streaming=streaming, budget=meter, trace=trace
            )
            await run_async(
                state,
                execute,
                max_concurrent=self._pool.max_concurrent,
                limits=limits,
                clock=self._clock,
            )
        return state.result()

    def plan_resume(self, tasks: Iterable[Task], team: Team, resume: RunResult) -> ResumePlan:
        """What resuming *resume* with these tasks would keep and run again, and why.

        Makes no call. Pass the plan as ``run_tasks(..., resume=plan)`` to run it as shown.

        Raises:
            GraphError, UnknownAgentError, UnknownToolError, IncompatibleResumeError: as
                :meth:`run_tasks` would, before any call.
        """
        _check_type("resume", resume, RunResult)
        state, _routes = self._prepare(tasks, team, False, Emitter(None), resume)  # noqa: FBT003
        assert state.plan is not None  # noqa: S101  # resume was given
        return state.plan

    # -- streaming -----------------------------------------------------------------------

    def stream_agent(self, agent: AgentConfig, task: str) -> Iterator[str]:
        """Yield an agent's answer in chunks as they arrive (a synchronous iterator).

        A request is retried only before it has yielded a chunk (so the request that follows
        a tool round may be retried); one that breaks after its output was yielded raises
        :class:`StreamInterruptedError` (chunks cannot be taken back). The
        call runs on a helper thread; closing the iterator early lets it finish unread.

        Raises:
            TypeError: the agent has an ``output_type`` (its answers may be sent back for
                correction, and chunks cannot be taken back): use :meth:`run_agent`, or a
                run with ``on_event``, whose events say when a task's chunks start again.
        """
        _check_streamable(agent)
        route = self._route(agent, task)
        caller = self._caller
        trace = self._agent_trace(route)  # under the caller's span, not the helper thread's

        def produce(deliver: Callable[[str], None]) -> Outcome:
            sink = Sink(deliver, restartable=False)
            return caller.run(route, task, Emitter(None), sink=sink, trace=trace)

        from aegis_gov._streams import stream_chunks  # noqa: PLC0415  # streaming loads it

        return stream_chunks(produce, name=f"aegis-stream-{agent.name}")

    def astream_agent(self, agent: AgentConfig, task: str) -> AsyncIterator[str]:
        """Async twin of :meth:`stream_agent`: chunks as they arrive, on the running loop."""
        _check_streamable(agent)
        route = self._route(agent, task)
        caller = self._caller
        trace = self._agent_trace(route)

        async def produce(deliver: Callable[[str], None]) -> Outcome:
            sink = Sink(deliver, restartable=False)
            return await caller.arun(route, task, Emitter(None), sink=sink, trace=trace)

        from aegis_gov._streams import astream_chunks  # noqa: PLC0415  # streaming loads it

        return astream_chunks(produce)

    # -- internals -----------------------------------------------------------------------

    def _agent_trace(self, route: Route) -> TaskTrace | None:
        """A single-agent call's span (under the current span), when tracing is on."""
        if self._tracer is None:
            return None
        return self._tracer.agent(route.agent.name, route.adapter.endpoint)

    def _route(self, agent: AgentConfig, task: str) -> Route:
        """Check a single-agent call's arguments and resolve the agent's route."""
        if not isinstance(agent, AgentConfig):
            raise TypeError(
                f"agent must be an AgentConfig, got {type(agent).__name__}: {agent!r:.80}"
            )
        if not isinstance(task, str):
            raise TypeError(f"task must be a string, got {type(task).__name__}: {task!r:.80}")
        route = Route.resolve(agent, self.adapter_for(agent), self._tool_specs(agent))
        self._caller.check_limits((route,))  # limits that match nothing, or disagree
        return route

    def _prepare(
        self,
        tasks: Iterable[Task],
        team: Team,
        stop_on_failure: bool,  # noqa: FBT001  # private helper
        emit: Emitter,
        resume: RunResult | ResumePlan | None,
    ) -> tuple[RunState, dict[str, Route]]:
        """Validate a run (graph, agents, tools) before any call; resolve each agent's route."""
        if not isinstance(team, Team):
            raise TypeError(
                f"team must be a Team (make one with OpenMultiAgent.create_team), "
                f"got {type(team).__name__}: {team!r:.80}"
            )
        if isinstance(cast("object", tasks), (str, bytes, Task)):
            raise TypeError(f"tasks must be an iterable of Task, got {tasks!r:.80}")
        if resume is not None and not isinstance(resume, (RunResult, ResumePlan)):
            raise TypeError(f"resume must be a RunResult, a ResumePlan or None, got {resume!r:.80}")
        tasks = list(tasks)
        for task in tasks:
            if not isinstance(task, Task):
                raise InvalidTaskError(f"expected a Task, got {task!r:.80}")
        used = {task.agent for task in tasks}
        routes = {
            agent.name: Route.resolve(agent, self.adapter_for(agent), self._tool_specs(agent))
            for agent in team.values()
            if agent.name in used  # unknown tools fail now, before any call
        }
        state = RunState.create(
            tasks,
            team,
            stop_on_failure=stop_on_failure,
            emit=emit,
            clock=self._clock,
            resume=resume,
            definitions=definitions(tasks, routes, tool_root=self._tool_root(routes)),
        )
        return state, routes

    def _tool_root(self, routes: Mapping[str, Route]) -> str:
        """The built-in tools' root, when some agent of the run has tools."""
        return str(self.tools.root) if any(route.tools for route in routes.values()) else ""

    def _tool_specs(self, agent: AgentConfig) -> tuple[ToolSpec, ...]:
        if not agent.tools:
            return ()
        return tuple(self.tools.specs(agent.tools))

    def _forward_breaker_event(self, event: BreakerEvent) -> None:
        if not isinstance(event, StateChanged):
            return
        if event.new is CircuitState.OPEN and event.breaker is not None:
            self._caller.circuit_opened(event.breaker)  # a probe will mark its recovery
        with self._lock:
            watchers = [emit for emit in self._watchers if emit.active]
        if not watchers:
            return
        change = CircuitStateChanged(event.breaker or "default", event.old, event.new)
        for emit in watchers:
            emit(change)

    @contextlib.contextmanager
    def _watching(self, emit: Emitter, trace: RunTrace | None = None) -> Iterator[None]:
        """Forward breaker events to one run's handler (and its trace) while the run lasts."""
        watchers = [emit] if trace is None else [emit, Emitter(trace.on_event)]
        with self._lock:
            self._watchers.extend(watchers)
        try:
            yield
        finally:
            with self._lock:
                for watcher in watchers:
                    self._watchers.remove(watcher)
            emit.close()  # a call given up on and still going reports nothing after the run


def _source(resume: RunResult | ResumePlan | None) -> str | None:
    """The stored run a run resumes, if it came from a checkpoint store."""
    if isinstance(resume, ResumePlan):
        return resume.source
    return None if resume is None else resume.run_id


def _meter(budget: Budget | None, routes: dict[str, Route], state: RunState) -> BudgetMeter | None:
    """The run's budget meter, its prices checked before any call; None without a budget."""
    if budget is None:
        return None
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a Budget or None, got {budget!r:.80}")
    endpoints = [
        (adapter.endpoint, key)
        for route in routes.values()
        for adapter, key in ((route.adapter, route.key), *route.fallbacks)
    ]
    BudgetMeter(budget).check_prices(endpoints)
    # A resumed run goes on spending the budget of the run it resumes, not a fresh one.
    spent = None if state.plan is None else state.plan.spent
    if spent is not None and spent.cost_usd is None and budget.prices and state.plan is not None:
        # The run it resumes counted no cost (it had no prices, or was killed before it could
        # say): price its tasks' usage now, at the endpoint each used.
        spent = attrs.evolve(spent, cost_usd=_priced(budget, state.plan, routes, endpoints))
    meter = BudgetMeter(budget, spent=spent)
    state.budget = meter
    return meter


def _priced(
    budget: Budget,
    plan: ResumePlan,
    routes: Mapping[str, Route],
    endpoints: Sequence[tuple[Endpoint, str]],
) -> float:
    """What the earlier results of *plan* cost at *budget*'s prices (unknown ones: nothing)."""
    by_key = {key: endpoint for endpoint, key in endpoints}
    meter = BudgetMeter(budget)
    for result in plan.previous.values():
        route = routes.get(result.agent or "")
        key = result.endpoint or (route.key if route is not None else None)
        endpoint = None if key is None else by_key.get(key)
        if endpoint is not None and key is not None:
            meter.record(endpoint, key, result.usage)
    return meter.spent().cost_usd or 0.0


def _checked_limits(limits: Mapping[str, Limits] | None) -> dict[str, Limits]:
    return {} if limits is None else endpoint_keyed("limits", limits, Limits)


def _make_tracer(tracing: object) -> RunTracer | None:
    """:func:`~aegis_gov._tracing.make_tracer`; without tracing, its module is not loaded."""
    if tracing is False:
        return None
    from aegis_gov._tracing import make_tracer  # noqa: PLC0415  # with opentelemetry

    return make_tracer(tracing)


def _run_span(
    tracer: RunTracer | None, state: RunState
) -> contextlib.AbstractContextManager[RunTrace | None]:
    """:func:`~aegis_gov._tracing.run_span` without importing it (no tracer, no tracing)."""
    if tracer is None:
        return contextlib.nullcontext()
    return tracer.run(state)


def _check_type(name: str, value: object, kind: type) -> None:
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__} or None, got {value!r:.80}")


def _check_checkpoint(checkpoint: object) -> None:
    if checkpoint is None:
        return
    from aegis_gov._checkpoint import CheckpointStore  # noqa: PLC0415  # sqlite3 loads when used

    if not isinstance(checkpoint, CheckpointStore):
        path = isinstance(checkpoint, (str, os.PathLike))
        hint = " (open a file with Checkpoint(path))" if path else ""
        raise TypeError(
            f"checkpoint must be a CheckpointStore or None, got {checkpoint!r:.80}{hint}"
        )


def _check_run_options(on_event: object, cancel: object, executor: object) -> None:
    if on_event is not None and not callable(on_event):
        raise TypeError(f"on_event must be a callable taking an event, got {on_event!r:.80}")
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise TypeError(f"cancel must be an Event (with is_set), got {cancel!r:.80}")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(f"executor must be an Executor (with submit), got {executor!r:.80}")


def _answer(outcome: Outcome, duration_s: float, agent: AgentConfig[_T]) -> AgentResult[_T]:
    """A single-agent call's result, or its error raised (chained to the provider's)."""
    del agent  # it only carries the answer's type: its output_type made the value
    if isinstance(outcome, Failure):
        raise outcome.error
    return cast("AgentResult[_T]", attrs.evolve(outcome, duration_s=duration_s))


def _check_streamable(agent: object) -> None:
    if isinstance(agent, AgentConfig) and agent.output_type is not None:
        raise TypeError(
            f"agent {agent.name!r} has an output_type: stream_agent cannot take back the "
            "chunks of an answer sent back for correction; use run_agent, or run_tasks "
            "with on_event (its TaskRetrying events say when a task's chunks start again)"
        )


def _distinct_adapters(routes: dict[str, Route]) -> list[ChatAdapter]:
    """Every adapter the routes use (fallbacks included), each once, in the team's order."""
    adapters = (
        adapter
        for route in routes.values()
        for adapter in (route.adapter, *(a for a, _key in route.fallbacks))
    )
    return list({id(adapter): adapter for adapter in adapters}.values())


def _warm_up(adapter: LLMAdapter) -> None:
    """Let the adapter import its SDK and build its client before any task clock starts."""
    warm_up = getattr(adapter, "warm_up", None)
    if callable(warm_up):
        try:
            warm_up()
        except Exception:  # noqa: BLE001  # a user's adapter: its first call reports it
            logger.debug("warm_up of %r raised; its first call will report it", adapter)


async def _awarm_up(adapter: LLMAdapter) -> None:
    awarm_up = getattr(adapter, "awarm_up", None)
    if callable(awarm_up):
        try:
            await awarm_up()
        except Exception:  # noqa: BLE001  # (same)
            logger.debug("awarm_up of %r raised; its first call will report it", adapter)
