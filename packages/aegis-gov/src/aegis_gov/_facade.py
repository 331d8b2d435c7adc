"""OpenMultiAgent: the facade that runs agents and teams over task graphs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Executor
from typing import TypeGuard, cast

import attrs
from aegis_adapters import (
    AnthropicAdapter,
    ChatAdapter,
    ChatResponse,
    LLMAdapter,
    OllamaAdapter,
    OpenAIAdapter,
    RetryableError,
    ToolCall,
    ToolSpec,
)
from aegis_breaker import AgentPool, BreakerEvent, StateChanged
from aegis_graph import Task

from aegis_gov._agents import AgentConfig, Team
from aegis_gov._conversation import (
    AgentFailedError,
    ChatRequest,
    Conversation,
    adrive,
    drive,
    retry_after_hint,
)
from aegis_gov._errors import StreamInterruptedError
from aegis_gov._events import CircuitStateChanged, EventHandler, RunEvent, TaskOutputDelta
from aegis_gov._results import AgentResult, RunResult
from aegis_gov._retry import RetryPolicy
from aegis_gov._run import Limits, Outcome, RunState, Work, run_async, run_threads
from aegis_gov._tools import ToolNotOfferedError, ToolRegistry

logger = logging.getLogger(__name__)


def adapter_from_environment() -> LLMAdapter:
    """The adapter the environment asks for.

    ``ANTHROPIC_API_KEY`` set: :class:`AnthropicAdapter`; else ``OPENAI_API_KEY``:
    :class:`OpenAIAdapter`; else :class:`OllamaAdapter` (``OLLAMA_HOST`` or localhost).
    ``AEGIS_MODEL`` names the model, otherwise each adapter's ``DEFAULT_MODEL``.
    """
    model = os.environ.get("AEGIS_MODEL") or None
    if os.environ.get("ANTHROPIC_API_KEY"):
        return AnthropicAdapter(model or AnthropicAdapter.DEFAULT_MODEL)
    if os.environ.get("OPENAI_API_KEY"):
        return OpenAIAdapter(model or OpenAIAdapter.DEFAULT_MODEL)
    return OllamaAdapter(model or OllamaAdapter.DEFAULT_MODEL)


def _environment_reason() -> str:
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "ANTHROPIC_API_KEY is set"
    if os.environ.get("OPENAI_API_KEY"):
        return "OPENAI_API_KEY is set"
    return "neither ANTHROPIC_API_KEY nor OPENAI_API_KEY is set"


_CHAT_ADAPTER_TYPES: dict[type, bool] = {}


def _is_chat_adapter(adapter: LLMAdapter) -> TypeGuard[ChatAdapter]:
    """``isinstance(adapter, ChatAdapter)``, cached per class: protocol checks are slow."""
    kind = type(adapter)
    known = _CHAT_ADAPTER_TYPES.get(kind)
    if known is None:
        known = _CHAT_ADAPTER_TYPES[kind] = isinstance(adapter, ChatAdapter)
    return known


def endpoint_key(adapter: LLMAdapter) -> str:
    """The breaker key of an adapter: its endpoint, or its identity for a custom adapter."""
    if _is_chat_adapter(adapter):
        return adapter.endpoint.key
    return f"custom:{type(adapter).__qualname__}@{id(adapter):x}"


def _only_retryable_fails(exc: BaseException) -> bool:
    return isinstance(exc, RetryableError)


class _Emitter:
    """Serialises calls to a user's ``on_event`` and keeps its exceptions out of the run."""

    def __init__(self, handler: EventHandler | None) -> None:
        self._handler = handler
        self._lock = threading.Lock()

    def __call__(self, event: RunEvent) -> None:
        if self._handler is None:
            return
        with self._lock:
            try:
                self._handler(event)
            except Exception:
                logger.exception("on_event handler raised on %r; the run goes on", event)


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
        clock: monotonic seconds, for durations.
        seed: seeds the retry jitter, for reproducible runs.

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
        async_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        """Create the facade; nothing is contacted until a run starts."""
        self._pool = pool if pool is not None else AgentPool(is_failure=_only_retryable_fails)
        self._default_adapter = default_adapter
        self._tools = tools
        self.retry: RetryPolicy = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._clock = clock
        self._rng = random.Random(seed)  # noqa: S311  # jitter, not cryptography
        self._lock = threading.Lock()
        self._watchers: list[_Emitter] = []
        self._pool.add_listener(self._forward_breaker_event)

    # -- configuration -------------------------------------------------------------------

    @property
    def pool(self) -> AgentPool:
        """The pool every call goes through."""
        return self._pool

    @property
    def tools(self) -> ToolRegistry:
        """The tool registry agents' tools are looked up in."""
        with self._lock:
            if self._tools is None:
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

    def get_status(self) -> dict[str, object]:
        """A snapshot of the pool and of each endpoint's breaker.

        ``pool_state`` is the worst state over all endpoints (open > half_open > closed)
        and ``pool_consecutive_failures`` the highest count among them; ``endpoints`` maps
        each endpoint key to its breaker's status.
        """
        status = self._pool.status()
        breakers = cast("dict[str, object]", status["breakers"])
        return {
            "pool_state": status["state"],
            "pool_consecutive_failures": status["consecutive_failures"],
            "pool_active": status["active"],
            "pool_max_concurrent": status["max_concurrent"],
            # The pool's "default" breaker guards direct pool.run calls, not an endpoint.
            "endpoints": {k: v for k, v in breakers.items() if k != "default"},
        }

    # -- single agents -------------------------------------------------------------------

    def run_agent(self, agent: AgentConfig, task: str) -> AgentResult:
        """Ask one agent to do ``task``; return its answer (``str(result)`` is the text).

        Raises the adapter's error after retries (a :class:`PermanentError` at once), or
        :class:`CircuitOpenError` when the endpoint's breaker stays open too long.
        """
        emit = _Emitter(None)
        conversation = self._conversation(agent, task, emit=emit)
        _warm_up(self.adapter_for(agent))
        started = self._clock()
        outcome = self._drive(agent, conversation)
        if isinstance(outcome, AgentFailedError):
            raise outcome.error  # chained to the provider's exception by the adapter
        return _with_duration(outcome, self._clock() - started)

    async def arun_agent(self, agent: AgentConfig, task: str) -> AgentResult:
        """The asyncio twin of :meth:`run_agent`; it never blocks the event loop."""
        emit = _Emitter(None)
        conversation = self._conversation(agent, task, emit=emit)
        await _awarm_up(self.adapter_for(agent))
        started = self._clock()
        outcome = await self._adrive(agent, conversation)
        if isinstance(outcome, AgentFailedError):
            raise outcome.error
        return _with_duration(outcome, self._clock() - started)

    # -- task graphs ---------------------------------------------------------------------

    def run_tasks(
        self,
        tasks: Iterable[Task],
        team: Team,
        *,
        stop_on_failure: bool = False,
        on_event: EventHandler | None = None,
        stream: bool | None = None,
        resume: RunResult | None = None,
        task_timeout_s: float | None = None,
        run_timeout_s: float | None = None,
        cancel: threading.Event | None = None,
        cancel_grace_s: float = 10.0,
        executor: Executor | None = None,
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
            resume: an earlier result: its DONE tasks are kept, the rest runs again.
            task_timeout_s: a task still running after this long is recorded FAILED with
                :class:`DeadlineExceededError` (its thread is abandoned, not killed).
            run_timeout_s: the run stops after this long, as if cancelled with no grace.
            cancel: set it to cancel: nothing new starts, pending tasks are skipped as
                cancelled, calls in flight get ``cancel_grace_s`` to finish, and the partial
                result comes back with ``cancelled=True``.
            cancel_grace_s: see ``cancel``.
            executor: make each request to a provider on this executor (a process pool, a
                Dask client's executor, ...). The queue, retries, breakers and tools stay
                here; only ``adapter.chat`` runs there, so adapters must pickle for a
                process-based executor. Answers are not streamed through an executor.

        Raises:
            GraphError, UnknownAgentError, UnknownToolError, IncompatibleResumeError:
                before any call. RunCancelledError on Ctrl-C, with the partial result.
        """
        emit = _Emitter(on_event)
        state = self._prepare(tasks, team, stop_on_failure, emit, resume)
        streaming = on_event is not None if stream is None else stream
        limits = Limits(task_timeout_s, run_timeout_s, cancel, cancel_grace_s)
        for adapter in self._adapters_of(state):
            _warm_up(adapter)
        with self._watching(emit):
            run_threads(
                state,
                functools.partial(
                    self._execute,
                    emit=emit,
                    stream=streaming and executor is None,
                    executor=executor,
                ),
                max_concurrent=self._pool.max_concurrent,
                limits=limits,
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
        resume: RunResult | None = None,
        task_timeout_s: float | None = None,
        run_timeout_s: float | None = None,
        cancel: asyncio.Event | threading.Event | None = None,
        cancel_grace_s: float = 10.0,
    ) -> RunResult:
        """The asyncio twin of :meth:`run_tasks`: same semantics, events and result.

        No thread per task: adapters' async methods run on the current loop, and calls
        past a deadline (or after the cancel grace) are cancelled rather than abandoned.
        Cancelling the awaiting task cancels calls in flight, skips pending tasks and
        re-raises :class:`asyncio.CancelledError`; use ``cancel`` to get the partial
        result back instead.
        """
        emit = _Emitter(on_event)
        state = self._prepare(tasks, team, stop_on_failure, emit, resume)
        streaming = on_event is not None if stream is None else stream
        limits = Limits(task_timeout_s, run_timeout_s, cancel, cancel_grace_s)
        for adapter in self._adapters_of(state):
            await _awarm_up(adapter)
        with self._watching(emit):
            await run_async(
                state,
                functools.partial(self._aexecute, emit=emit, stream=streaming),
                max_concurrent=self._pool.max_concurrent,
                limits=limits,
            )
        return state.result()

    # -- streaming -----------------------------------------------------------------------

    def stream_agent(self, agent: AgentConfig, task: str) -> Iterator[str]:
        """Yield an agent's answer in chunks as they arrive (a synchronous iterator).

        Retries happen only before the first chunk; a stream that breaks after output was
        yielded raises :class:`StreamInterruptedError` (chunks cannot be taken back). The
        call runs on a helper thread; closing the iterator early lets it finish unread.
        """
        chunks: queue.SimpleQueue[str | _Done] = queue.SimpleQueue()

        def work() -> None:
            try:
                self._stream_once(agent, task, chunks.put)
                chunks.put(_Done(None))
            except BaseException as exc:  # noqa: BLE001  # handed to the consumer
                chunks.put(_Done(exc))

        threading.Thread(target=work, name=f"aegis-stream-{agent.name}", daemon=True).start()
        while True:
            item = chunks.get()
            if isinstance(item, _Done):
                if item.error is not None:
                    raise item.error
                return
            yield item

    async def astream_agent(self, agent: AgentConfig, task: str) -> AsyncIterator[str]:
        """Async twin of :meth:`stream_agent`: chunks as they arrive, on the running loop."""
        chunks: asyncio.Queue[str | _Done] = asyncio.Queue()

        async def work() -> None:
            try:
                await self._astream_once(agent, task, chunks.put_nowait)
                chunks.put_nowait(_Done(None))
            except Exception as exc:  # noqa: BLE001  # handed to the consumer
                chunks.put_nowait(_Done(exc))

        producer = asyncio.ensure_future(work())
        try:
            while True:
                item = await chunks.get()
                if isinstance(item, _Done):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            if not producer.done():
                producer.cancel()

    def _stream_once(
        self, agent: AgentConfig, task: str, on_delta: Callable[[str], None]
    ) -> AgentResult:
        conversation = self._conversation(agent, task, emit=_Emitter(None))
        outcome = self._drive(agent, conversation, _Sink(on_delta, restartable=False))
        if isinstance(outcome, AgentFailedError):
            raise outcome.error
        return outcome

    async def _astream_once(
        self, agent: AgentConfig, task: str, on_delta: Callable[[str], None]
    ) -> AgentResult:
        conversation = self._conversation(agent, task, emit=_Emitter(None))
        outcome = await self._adrive(agent, conversation, _Sink(on_delta, restartable=False))
        if isinstance(outcome, AgentFailedError):
            raise outcome.error
        return outcome

    # -- internals -----------------------------------------------------------------------

    def _prepare(
        self,
        tasks: Iterable[Task],
        team: Team,
        stop_on_failure: bool,  # noqa: FBT001  # private helper
        emit: _Emitter,
        resume: RunResult | None,
    ) -> RunState:
        if not isinstance(team, Team):
            raise TypeError(
                f"team must be a Team (make one with OpenMultiAgent.create_team), "
                f"got {type(team).__name__}: {team!r:.80}"
            )
        if isinstance(cast("object", tasks), (str, bytes)):
            raise TypeError(f"tasks must be an iterable of Task, not the string {tasks!r:.80}")
        state = RunState.create(
            tasks,
            team,
            stop_on_failure=stop_on_failure,
            emit=emit,
            clock=self._clock,
            resume=resume,
        )
        used = {task.agent for task in state.queue.tasks}
        for agent in team.values():
            if agent.name in used:
                self._tool_specs(agent)  # unknown tools fail now, before any call
        return state

    def _adapters_of(self, state: RunState) -> list[LLMAdapter]:
        """Each adapter the run's pending tasks use, once."""
        used = {task.agent for task in state.queue.tasks}
        adapters = (self.adapter_for(a) for a in state.team.values() if a.name in used)
        return list({id(adapter): adapter for adapter in adapters}.values())

    def _tool_specs(self, agent: AgentConfig) -> tuple[ToolSpec, ...]:
        if not agent.tools:
            return ()
        return tuple(self.tools.specs(agent.tools))

    def _conversation(
        self, agent: AgentConfig, prompt: str, *, emit: _Emitter, task_id: str = ""
    ) -> Conversation:
        if not isinstance(agent, AgentConfig):
            raise TypeError(
                f"agent must be an AgentConfig, got {type(agent).__name__}: {agent!r:.80}"
            )
        if not isinstance(prompt, str):
            raise TypeError(f"task must be a string, got {type(prompt).__name__}: {prompt!r:.80}")
        adapter = self.adapter_for(agent)
        return Conversation(
            agent=agent.name,
            prompt=prompt,
            system=agent.system_prompt or None,
            tools=self._tool_specs(agent),
            retry=self.retry,
            rng=self._rng,
            emit=emit,
            endpoint=endpoint_key(adapter),
            task_id=task_id,
            max_tool_rounds=agent.max_tool_rounds,
            max_tool_calls_per_reply=agent.max_tool_calls_per_reply,
            max_tool_output_chars=agent.max_tool_output_chars,
        )

    def _execute(
        self, work: Work, *, emit: _Emitter, stream: bool, executor: Executor | None = None
    ) -> Outcome:
        conversation = self._conversation(work.agent, work.prompt, emit=emit, task_id=work.task.id)
        sink = _delta_emitter(emit, work, stream)
        return self._drive(work.agent, conversation, sink, executor=executor)

    async def _aexecute(self, work: Work, *, emit: _Emitter, stream: bool) -> Outcome:
        conversation = self._conversation(work.agent, work.prompt, emit=emit, task_id=work.task.id)
        return await self._adrive(work.agent, conversation, _delta_emitter(emit, work, stream))

    def _drive(
        self,
        agent: AgentConfig,
        conversation: Conversation,
        on_delta: _Sink | None = None,
        *,
        executor: Executor | None = None,
    ) -> Outcome:
        """Run a conversation to its end: the result, or the failure that ended it."""
        adapter = self.adapter_for(agent)
        key = conversation.endpoint
        try:
            return drive(
                conversation.steps(),
                chat=functools.partial(
                    self._chat,
                    adapter,
                    key,
                    on_delta=on_delta,
                    agent=agent.name,
                    executor=executor,
                ),
                run_tool=functools.partial(self._run_tool, agent),
                sleep=self._sleep,
            )
        except AgentFailedError as failure:
            return failure

    async def _adrive(
        self,
        agent: AgentConfig,
        conversation: Conversation,
        on_delta: _Sink | None = None,
    ) -> Outcome:
        adapter = self.adapter_for(agent)
        key = conversation.endpoint
        try:
            return await adrive(
                conversation.steps(),
                chat=functools.partial(
                    self._achat, adapter, key, on_delta=on_delta, agent=agent.name
                ),
                run_tool=functools.partial(self._arun_tool, agent),
                sleep=self._async_sleep,
            )
        except AgentFailedError as failure:
            return failure

    def _chat(
        self,
        adapter: LLMAdapter,
        key: str,
        request: ChatRequest,
        *,
        on_delta: _Sink | None = None,
        agent: str = "",
        executor: Executor | None = None,
    ) -> ChatResponse:
        def attempt() -> tuple[ChatResponse | None, Exception | None]:
            # Only retryable errors may count against the endpoint's breaker: a provider
            # that answers "bad request" is up. Pass other errors out as values.
            try:
                if executor is not None:
                    return executor.submit(_sync_chat, adapter, request).result(), None
                if on_delta is None:
                    return _sync_chat(adapter, request), None
                return _sync_chat_stream(adapter, request, on_delta, agent), None
            except RetryableError:
                raise
            except Exception as exc:  # noqa: BLE001
                return None, exc

        try:
            response, error = self._pool.run_on(key, attempt)
        except RetryableError as exc:
            self._apply_retry_after(key, exc)
            _check_restartable(on_delta, agent, exc)
            raise
        if error is not None:
            raise error
        assert response is not None  # noqa: S101  # attempt returns one or the other
        return response

    async def _achat(
        self,
        adapter: LLMAdapter,
        key: str,
        request: ChatRequest,
        *,
        on_delta: _Sink | None = None,
        agent: str = "",
    ) -> ChatResponse:
        async def attempt() -> tuple[ChatResponse | None, Exception | None]:
            try:
                if on_delta is None:
                    return await _async_chat(adapter, request), None
                return await _async_chat_stream(adapter, request, on_delta, agent), None
            except RetryableError:
                raise
            except Exception as exc:  # noqa: BLE001
                return None, exc

        try:
            response, error = await self._pool.arun_on(key, attempt)
        except RetryableError as exc:
            self._apply_retry_after(key, exc)
            _check_restartable(on_delta, agent, exc)
            raise
        if error is not None:
            raise error
        assert response is not None  # noqa: S101
        return response

    def _apply_retry_after(self, key: str, exc: RetryableError) -> None:
        hint = retry_after_hint(exc)
        if hint is not None:
            # The provider asked every caller to wait: hold the whole endpoint back.
            self._pool.breaker(key).open_for(hint)

    def _run_tool(self, agent: AgentConfig, call: ToolCall) -> str:
        # The conversation refuses tools its agent was not given; this second check keeps
        # the rule even if a driver is ever handed a call some other way.
        if call.name not in agent.tools:
            raise ToolNotOfferedError(
                f"refused: agent {agent.name!r} was not given this tool",
                tool_name=call.name[:64],
                agent=agent.name,
            )
        return self.tools.call(call.name, call.arguments)

    async def _arun_tool(self, agent: AgentConfig, call: ToolCall) -> str:
        return await asyncio.to_thread(self._run_tool, agent, call)

    def _forward_breaker_event(self, event: BreakerEvent) -> None:
        if not isinstance(event, StateChanged):
            return
        with self._lock:
            watchers = list(self._watchers)
        change = CircuitStateChanged(event.breaker or "default", event.old, event.new)
        for emit in watchers:
            emit(change)

    @contextlib.contextmanager
    def _watching(self, emit: _Emitter) -> Iterator[None]:
        """Forward breaker events to one run's handler while the run lasts."""
        with self._lock:
            self._watchers.append(emit)
        try:
            yield
        finally:
            with self._lock:
                self._watchers.remove(emit)


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


def _sync_chat(adapter: LLMAdapter, request: ChatRequest) -> ChatResponse:
    if _is_chat_adapter(adapter):
        return adapter.chat(request.messages, system=request.system, tools=request.tools)
    text = adapter.generate(request.messages[-1].content, system=request.system)
    return ChatResponse(text=text)


async def _async_chat(adapter: LLMAdapter, request: ChatRequest) -> ChatResponse:
    if _is_chat_adapter(adapter):
        return await adapter.achat(request.messages, system=request.system, tools=request.tools)
    # A plain LLMAdapter is synchronous: keep it off the event loop.
    return await asyncio.to_thread(_sync_chat, adapter, request)


def _with_duration(result: AgentResult, duration_s: float) -> AgentResult:
    return attrs.evolve(result, duration_s=duration_s)


def _delta_emitter(emit: _Emitter, work: Work, stream: bool) -> _Sink | None:  # noqa: FBT001
    if not stream:
        return None
    task_id = work.task.id

    def on_delta(text: str) -> None:
        emit(TaskOutputDelta(task_id, text))

    # In a run, a retried task's chunks simply start again after its TaskRetrying event.
    return _Sink(on_delta, restartable=True)


def _check_restartable(sink: _Sink | None, agent: str, exc: RetryableError) -> None:
    if sink is not None and sink.emitted and not sink.restartable:
        raise StreamInterruptedError(agent, exc) from exc


def _sync_chat_stream(
    adapter: LLMAdapter, request: ChatRequest, on_delta: _Sink, agent: str
) -> ChatResponse:
    """Stream one request, handing each chunk to ``on_delta``; return the whole response."""
    if not _is_chat_adapter(adapter):
        chunks: list[str] = []
        for chunk in adapter.stream(request.messages[-1].content, system=request.system):
            chunks.append(chunk)
            on_delta(chunk)
        return ChatResponse(text="".join(chunks))
    response: ChatResponse | None = None
    for item in adapter.chat_stream(request.messages, system=request.system, tools=request.tools):
        if isinstance(item, ChatResponse):
            response = item
        elif item.text:
            on_delta(item.text)
    if response is None:  # the adapter contract promises a final response
        raise StreamInterruptedError(agent, RuntimeError("the stream ended without a response"))
    return response


async def _async_chat_stream(
    adapter: LLMAdapter, request: ChatRequest, on_delta: _Sink, agent: str
) -> ChatResponse:
    if not _is_chat_adapter(adapter):
        return await asyncio.to_thread(_sync_chat_stream, adapter, request, on_delta, agent)
    response: ChatResponse | None = None
    stream = adapter.achat_stream(request.messages, system=request.system, tools=request.tools)
    async for item in stream:
        if isinstance(item, ChatResponse):
            response = item
        elif item.text:
            on_delta(item.text)
    if response is None:
        raise StreamInterruptedError(agent, RuntimeError("the stream ended without a response"))
    return response


@attrs.frozen
class _Done:
    """End of a stream handed from producer to consumer, with the error that ended it."""

    error: BaseException | None


class _Sink:
    """Where a streamed request's chunks go, remembering whether any went out."""

    def __init__(self, deliver: Callable[[str], None], *, restartable: bool) -> None:
        self._deliver = deliver
        self.restartable = restartable
        self.emitted = False

    def __call__(self, text: str) -> None:
        self.emitted = True
        self._deliver(text)
