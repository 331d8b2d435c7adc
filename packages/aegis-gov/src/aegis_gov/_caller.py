"""The endpoint caller: everything between an agent's request and the provider's answer.

One :class:`EndpointCaller` per :class:`~aegis_gov.OpenMultiAgent` owns the I/O of a run:
it sends each :class:`ChatRequest` through the pool's bulkhead and the endpoint's breaker,
decides (once, here) which errors count against the breaker, holds an endpoint back when a
provider asks for a Retry-After, streams deltas, and runs tool calls within the agent's
tools. :meth:`EndpointCaller.run` and :meth:`EndpointCaller.arun` drive one agent's
:class:`Conversation` with threads or asyncio; both end in an :data:`Outcome` value.
"""

from __future__ import annotations

import asyncio
import functools
import random
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

import attrs
from aegis_adapters import (
    ChatAdapter,
    ChatResponse,
    LLMAdapter,
    RateLimitError,
    RetryableError,
    ToolCall,
    ToolSpec,
    as_chat_adapter,
    is_chat_adapter,
)
from aegis_breaker import AgentPool

from aegis_gov._adaptive import AdaptiveLimit, AdaptiveStatus
from aegis_gov._agents import AgentConfig
from aegis_gov._conversation import ChatRequest, Conversation, adrive, drive
from aegis_gov._errors import EndpointBusyError, StreamInterruptedError
from aegis_gov._events import EventHandler
from aegis_gov._outcome import Outcome
from aegis_gov._retry import RetryPolicy
from aegis_gov._slots import Slot
from aegis_gov._tool_errors import ToolNotOfferedError
from aegis_gov._tools import ToolRegistry

__all__ = ["EndpointCaller", "Route", "Sink", "endpoint_key"]


def endpoint_key(adapter: LLMAdapter) -> str:
    """The breaker key of an adapter: its endpoint, or its identity for a custom adapter."""
    if is_chat_adapter(adapter):
        return adapter.endpoint.key
    return f"custom:{type(adapter).__qualname__}@{id(adapter):x}"


@attrs.frozen
class Route:
    """Where one agent's requests go, resolved once per run (or per single-agent call)."""

    agent: AgentConfig
    adapter: ChatAdapter  # a plain LLMAdapter arrives wrapped, once, here
    key: str
    tools: tuple[ToolSpec, ...]
    fallbacks: tuple[tuple[ChatAdapter, str], ...] = ()

    @classmethod
    def resolve(cls, agent: AgentConfig, adapter: LLMAdapter, tools: tuple[ToolSpec, ...]) -> Route:
        """The route of *agent* talking to *adapter* (then its fallbacks) with *tools*."""
        fallbacks = tuple((as_chat_adapter(a), endpoint_key(a)) for a in agent.fallbacks)
        return cls(agent, as_chat_adapter(adapter), endpoint_key(adapter), tools, fallbacks)

    def target(self, index: int) -> tuple[ChatAdapter, str]:
        """The adapter and endpoint key of endpoint *index* (0: the agent's own)."""
        return (self.adapter, self.key) if index == 0 else self.fallbacks[index - 1]


class Sink:
    """Where a streamed request's chunks go, remembering whether any went out.

    ``restartable`` sinks (a run's live output) may see a retried request's chunks start
    again; a user's iterator may not, so a stream broken after output raises instead.
    """

    def __init__(self, deliver: Callable[[str], None], *, restartable: bool) -> None:
        """Deliver chunks to *deliver*."""
        self._deliver = deliver
        self.restartable = restartable
        self.emitted = False

    def __call__(self, text: str) -> None:
        """Hand one chunk on."""
        self.emitted = True
        self._deliver(text)


@attrs.frozen
class _Declined:
    """An error that must not count against the breaker, carried out of the guarded call."""

    error: Exception


_OVERLOAD_STATUSES = frozenset({429, 503, 529})


def _is_overload(exc: RetryableError) -> bool:
    """Whether *exc* says the endpoint has more than it can take (not that it is down)."""
    if isinstance(exc, RateLimitError) or exc.status_code in _OVERLOAD_STATUSES:
        return True
    return "timed out" in exc.provider_message


def _only_retryable(exc: BaseException) -> bool:
    return isinstance(exc, RetryableError)


class EndpointCaller:
    """Sends requests through a pool and runs conversations to their outcome.

    Which errors count against an endpoint's breaker is decided here and nowhere else: the
    pool's own ``is_failure`` when it has one, otherwise only
    :class:`~aegis_adapters.RetryableError` — a provider that answers "bad request" is up.
    An error that does not count is reported to the breaker as a success (the endpoint
    answered) and then raised to the conversation as usual.

    Thread-safe: one caller serves every run of its facade at once.
    """

    def __init__(
        self,
        pool: AgentPool,
        tools: Callable[[], ToolRegistry],
        *,
        retry: RetryPolicy,
        rng: random.Random,
        sleep: Callable[[float], object] = time.sleep,
        async_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """Call through *pool*; *tools* gives the registry when a tool is first needed."""
        self.pool = pool
        self._tools = tools
        self.retry = retry
        self._rng = rng
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._adaptive: dict[str, AdaptiveLimit] = {}
        self._adaptive_lock = threading.Lock()
        own_rule = pool.settings.is_failure
        self._counts: Callable[[BaseException], bool] = (
            own_rule if own_rule is not None else _only_retryable
        )

    # -- conversations -------------------------------------------------------------------

    def conversation(
        self, route: Route, prompt: str, emit: EventHandler, *, task_id: str = ""
    ) -> Conversation:
        """A new conversation of *route*'s agent answering *prompt*."""
        agent = route.agent
        return Conversation(
            agent=agent.name,
            prompt=prompt,
            system=agent.system_prompt or None,
            tools=route.tools,
            retry=self.retry,
            rng=self._rng,
            emit=emit,
            endpoint=route.key,
            task_id=task_id,
            fallbacks=tuple(key for _adapter, key in route.fallbacks),
            fall_back_on_permanent_errors=agent.fall_back_on_permanent_errors,
            max_tool_rounds=agent.max_tool_rounds,
            max_tool_calls_per_reply=agent.max_tool_calls_per_reply,
            max_tool_output_chars=agent.max_tool_output_chars,
        )

    def run(
        self,
        route: Route,
        prompt: str,
        emit: EventHandler,
        *,
        task_id: str = "",
        sink: Sink | None = None,
        executor: Executor | None = None,
        slot: Slot | None = None,
    ) -> Outcome:
        """Run one agent's conversation with threads; return its outcome.

        With a *slot*, the task gives it up while it waits between requests.
        """
        sleep = self._sleep if slot is None else functools.partial(slot.sleep, sleep=self._sleep)
        return drive(
            self.conversation(route, prompt, emit, task_id=task_id).steps(),
            chat=functools.partial(self.chat, route, sink=sink, executor=executor),
            run_tool=functools.partial(self.run_tool, route.agent),
            sleep=sleep,
        )

    async def arun(
        self,
        route: Route,
        prompt: str,
        emit: EventHandler,
        *,
        task_id: str = "",
        sink: Sink | None = None,
        slot: Slot | None = None,
    ) -> Outcome:
        """Run one agent's conversation on the running event loop; return its outcome."""
        sleep = self._async_sleep
        if slot is not None:
            sleep = functools.partial(slot.asleep, sleep=self._async_sleep)
        return await adrive(
            self.conversation(route, prompt, emit, task_id=task_id).steps(),
            chat=functools.partial(self.achat, route, sink=sink),
            run_tool=functools.partial(self.arun_tool, route.agent),
            sleep=sleep,
        )

    # -- requests ------------------------------------------------------------------------

    def chat(
        self,
        route: Route,
        request: ChatRequest,
        *,
        sink: Sink | None = None,
        executor: Executor | None = None,
    ) -> ChatResponse:
        """Send *request* through the pool to *route*'s endpoint; raise what it raised."""
        adapter, key = route.target(request.endpoint)

        def attempt() -> ChatResponse | _Declined:
            try:
                if executor is not None:
                    return executor.submit(_send, adapter, request).result()
                if sink is None:
                    return _send(adapter, request)
                return _send_streaming(adapter, request, sink, route.agent.name)
            except Exception as exc:
                if self._counts(exc):
                    raise
                return _Declined(exc)

        limit = self._admit(key)
        overloaded: bool | None = None
        try:
            answer = self.pool.run_on(key, attempt)
            overloaded = False if isinstance(answer, ChatResponse) else None
        except RetryableError as exc:
            overloaded = _is_overload(exc)
            self._after_retryable(route, key, exc, sink)
            raise
        finally:
            limit.release(overloaded=overloaded)
        if isinstance(answer, _Declined):
            raise answer.error
        return answer

    async def achat(
        self, route: Route, request: ChatRequest, *, sink: Sink | None = None
    ) -> ChatResponse:
        """The asyncio twin of :meth:`chat`."""
        adapter, key = route.target(request.endpoint)

        async def attempt() -> ChatResponse | _Declined:
            try:
                if sink is None:
                    return await adapter.achat(
                        request.messages, system=request.system, tools=request.tools
                    )
                return await _asend_streaming(adapter, request, sink, route.agent.name)
            except Exception as exc:
                if self._counts(exc):
                    raise
                return _Declined(exc)

        limit = self._admit(key)
        overloaded: bool | None = None
        try:
            answer = await self.pool.arun_on(key, attempt)
            overloaded = False if isinstance(answer, ChatResponse) else None
        except RetryableError as exc:
            overloaded = _is_overload(exc)
            self._after_retryable(route, key, exc, sink)
            raise
        finally:
            limit.release(overloaded=overloaded)
        if isinstance(answer, _Declined):
            raise answer.error
        return answer

    def adaptive_limit(self, key: str) -> AdaptiveLimit:
        """The adaptive concurrency limit of the endpoint *key* (made at first use)."""
        found = self._adaptive.get(key)
        if found is None:
            with self._adaptive_lock:
                found = self._adaptive.setdefault(key, AdaptiveLimit(self.pool.max_concurrent))
        return found

    def adaptive_status(self) -> dict[str, AdaptiveStatus]:
        """A snapshot of every endpoint's adaptive limit, by endpoint key."""
        return {key: limit.status() for key, limit in list(self._adaptive.items())}

    def _admit(self, key: str) -> AdaptiveLimit:
        limit = self.adaptive_limit(key)
        if not limit.try_acquire():
            raise EndpointBusyError(key, limit.limit)
        return limit

    def _after_retryable(
        self, route: Route, key: str, exc: RetryableError, sink: Sink | None
    ) -> None:
        if isinstance(exc, RateLimitError) and exc.retry_after_s:
            # The provider asked every caller to wait: hold the whole endpoint back.
            self.pool.breaker(key).open_for(exc.retry_after_s)
        if sink is not None and sink.emitted and not sink.restartable:
            raise StreamInterruptedError(route.agent.name, exc) from exc

    # -- tools ---------------------------------------------------------------------------

    def run_tool(self, agent: AgentConfig, call: ToolCall) -> str:
        """Run *call* for *agent*, only if the agent was given that tool."""
        # The conversation refuses tools its agent was not given; this second check keeps
        # the rule even if a driver is ever handed a call some other way.
        if call.name not in agent.tools:
            raise ToolNotOfferedError(
                f"refused: agent {agent.name!r} was not given this tool",
                tool_name=call.name[:64],
                agent=agent.name,
            )
        return self._tools().call(call.name, call.arguments)

    async def arun_tool(self, agent: AgentConfig, call: ToolCall) -> str:
        """:meth:`run_tool` on a thread (tools are synchronous)."""
        return await asyncio.to_thread(self.run_tool, agent, call)


def _send(adapter: ChatAdapter, request: ChatRequest) -> ChatResponse:
    return adapter.chat(request.messages, system=request.system, tools=request.tools)


def _send_streaming(
    adapter: ChatAdapter, request: ChatRequest, sink: Sink, agent: str
) -> ChatResponse:
    """Stream one request, handing each chunk to *sink*; return the whole response."""
    response: ChatResponse | None = None
    for item in adapter.chat_stream(request.messages, system=request.system, tools=request.tools):
        if isinstance(item, ChatResponse):
            response = item
        elif item.text:
            sink(item.text)
    if response is None:  # the adapter contract promises a final response
        raise StreamInterruptedError(agent, RuntimeError("the stream ended without a response"))
    return response


async def _asend_streaming(
    adapter: ChatAdapter, request: ChatRequest, sink: Sink, agent: str
) -> ChatResponse:
    response: ChatResponse | None = None
    stream = adapter.achat_stream(request.messages, system=request.system, tools=request.tools)
    async for item in stream:
        if isinstance(item, ChatResponse):
            response = item
        elif item.text:
            sink(item.text)
    if response is None:
        raise StreamInterruptedError(agent, RuntimeError("the stream ended without a response"))
    return response
