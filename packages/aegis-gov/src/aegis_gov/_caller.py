"""The endpoint caller: everything between an agent's request and the provider's answer.

One :class:`EndpointCaller` per :class:`~aegis_gov.OpenMultiAgent` owns the I/O of a run:
it sends each :class:`ChatRequest` through the pool's bulkhead and the endpoint's breaker,
decides (once, here) which errors count against the breaker, holds an endpoint back when a
provider asks for a Retry-After, streams deltas, and runs tool calls within the agent's
tools. :meth:`EndpointCaller.run` and :meth:`EndpointCaller.arun` step one agent's
:class:`Conversation` generator and carry out each command it yields themselves (a request,
a tool call, a wait), with threads or asyncio; both end in an :data:`Outcome` value.

Each endpoint also has a pace (a declared rate, else one learned from 429s) that requests
wait for before they count as in flight, and two queues of waiting tasks — over its adaptive
limit (or refused by the provider as one call too many beside the endpoint's others, which
the breaker then ignores), or turned away by its open or half-open circuit — woken when a
call ends (the second only once the circuit is closed again), one per free place under the
limit, so a recovered endpoint is ramped up as its limit grows rather than flooded.

Over 400 lines on purpose: the sync and async halves of each step (driving a conversation, a
request, a tool call, a wait) sit side by side so they stay twins, and the small classes of one
task and one call (:class:`_Job`, :class:`_Turn`, :class:`_Call`, :class:`_AlarmBox`) sit with
the methods that use them.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Final, cast

import attrs
from aegis_adapters import (
    ChatAdapter,
    ChatResponse,
    Endpoint,
    LLMAdapter,
    RateLimitError,
    RetryableError,
    ToolCall,
    ToolSpec,
    Usage,
    as_chat_adapter,
    is_chat_adapter,
    supports_output_schema,
)
from aegis_breaker import (
    AgentPool,
    BreakerStatus,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
)

from aegis_gov._adaptive import AdaptiveLimit, AdaptiveStatus, Alarm, LearnedRate, Waiters
from aegis_gov._agents import AgentConfig, output_checks
from aegis_gov._budget import BudgetMeter
from aegis_gov._conversation import ChatRequest, Command, Conversation, Sleep
from aegis_gov._errors import EndpointBusyError, StreamInterruptedError
from aegis_gov._events import EventHandler, TaskOutputDelta
from aegis_gov._limits import (
    EndpointLimiter,
    Limits,
    RedisRateStore,
    estimate_output,
    estimate_tokens,
    resolve_limits,
    tools_chars,
)
from aegis_gov._outcome import Failure, Outcome, Raised
from aegis_gov._output import OutputSpec
from aegis_gov._requests import aopen_stream, asend, open_stream, send
from aegis_gov._retry import RetryPolicy
from aegis_gov._run import Work
from aegis_gov._slots import Slot, asyncio_sleep
from aegis_gov._tool_errors import ToolNotOfferedError

if TYPE_CHECKING:
    import asyncio

    from aegis_gov._task_trace import TaskTrace
    from aegis_gov._tools import ToolRegistry
    from aegis_gov._tracing import RunTrace

__all__ = ["EndpointCaller", "Route", "Sink", "counts_against_breaker", "endpoint_key"]


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
    native_output: tuple[bool, ...] = attrs.field(init=False, eq=False, repr=False)
    """By endpoint (the agent's own, then its fallbacks): whether it takes an output schema."""
    fallback_keys: tuple[str, ...] = attrs.field(init=False, eq=False, repr=False)
    """The fallbacks' endpoint keys, in order (what each conversation is told)."""
    output: OutputSpec | None = attrs.field(init=False, eq=False, repr=False)
    """How the agent's answers are checked (None: plain text), looked up once."""

    @native_output.default
    def _native_output(self) -> tuple[bool, ...]:
        return tuple(
            supports_output_schema(adapter)
            for adapter in (self.adapter, *(a for a, _key in self.fallbacks))
        )

    @fallback_keys.default
    def _fallback_keys(self) -> tuple[str, ...]:
        return tuple(key for _adapter, key in self.fallbacks)

    @output.default
    def _output(self) -> OutputSpec | None:
        return output_checks(self.agent)

    @classmethod
    def resolve(cls, agent: AgentConfig, adapter: LLMAdapter, tools: tuple[ToolSpec, ...]) -> Route:
        """The route of *agent* talking to *adapter* (then its fallbacks) with *tools*.

        Raises:
            ValueError: a fallback is the agent's own endpoint, or another fallback's (it
                shares their circuit and limits: falling back to it would change nothing);
                or a tool has the name of the agent's output type.
        """
        key = endpoint_key(adapter)
        fallbacks = tuple((as_chat_adapter(a), endpoint_key(a)) for a in agent.fallbacks)
        seen = {key: "the agent's own adapter"}
        for number, (_fallback, fallback_key) in enumerate(fallbacks, start=1):
            if fallback_key in seen:
                raise ValueError(
                    f"agent {agent.name!r}: fallbacks[{number - 1}] is the same endpoint as "
                    f"{seen[fallback_key]} ({fallback_key}); falling back to it would only "
                    "retry the same provider: remove it or name another model or provider"
                )
            seen[fallback_key] = f"fallbacks[{number - 1}]"
        answer = agent.output_schema
        if answer is not None and any(spec.name == answer.name for spec in tools):
            raise ValueError(
                f"agent {agent.name!r}: its tool {answer.name!r} has the name of its output "
                "type, which some providers are sent as a tool of that name: rename one"
            )
        return cls(agent, as_chat_adapter(adapter), key, tools, fallbacks)

    def target(self, index: int) -> tuple[ChatAdapter, str]:
        """The adapter and endpoint key of endpoint *index* (0: the agent's own)."""
        return (self.adapter, self.key) if index == 0 else self.fallbacks[index - 1]


class Sink:
    r"""Where a conversation's streamed chunks go, remembering whether any went out.

    ``restartable`` sinks (a run's live output) may see a retried request's chunks start
    again; a user's iterator may not, so a stream broken after output raises instead.

    A reply that calls tools is followed by another turn, streamed into the same sink: when
    both turns have text, the next turn's first chunk starts with a newline, so the streamed
    text reads as the turns' texts joined by newlines ("Let me add.\nThe sum is 5."), not run
    together ("Let me add.The sum is 5.").
    """

    def __init__(self, deliver: Callable[[str], None], *, restartable: bool) -> None:
        """Deliver chunks to *deliver*."""
        self._deliver = deliver
        self.restartable = restartable
        self.emitted = False
        self._turn_emitted = False  # the current request's chunks went out
        # A turn with text ended in tool calls: the next text starts on a new line.
        self._separate = False
        self._ended = True  # the last request finished: the next one is a new turn
        self._turn_separate = False  # whether the current turn starts on a new line
        self.turn_chars = 0  # characters the current request streamed (for a broken stream)

    def __call__(self, text: str) -> None:
        """Hand one chunk on."""
        self.emitted = self._turn_emitted = True
        self.turn_chars += len(text)
        if self._separate:
            self._separate = False
            text = "\n" + text
        self._deliver(text)

    @property
    def turn_emitted(self) -> bool:
        """True once the current request (turn or retry) has handed on a chunk."""
        return self._turn_emitted

    def start_turn(self) -> None:
        """A request starts streaming (a new turn, or a retry of the last one).

        A retry streams its turn from the start, on a new line again if the turn began on
        one, so what a retry replaces is exactly the turn's chunks so far.
        """
        if self._ended:
            self._ended = False
            self._turn_separate = self._separate
        else:
            self._separate = self._turn_separate
        self._turn_emitted = False
        self.turn_chars = 0

    def end_turn(self, response: ChatResponse) -> None:
        """A request finished: if it streamed text and called tools, another turn follows.

        A request after an answer with no tool calls redoes that answer (its output was
        invalid): like a retry, it starts where the answer started.
        """
        self._ended = bool(response.tool_calls)
        if self._turn_emitted and response.tool_calls:
            self._separate = True


@attrs.frozen
class _Declined:
    """An error that must not count against the breaker, carried out of the guarded call."""

    error: Exception


class _Throttled(BaseException):
    """A 429 of a provider that still answers, carried out as an outcome the breaker ignores.

    It neither counts as a failure nor resets the count (see :class:`_Crowded`): a burst of
    429s does not open the circuit, and 429s mixed into 500s do not keep it closed.
    """

    def __init__(self, error: RateLimitError) -> None:
        super().__init__(error)
        self.error = error


class _HeldError(CircuitOpenError):
    """The endpoint is held for a provider's Retry-After, and the task can move on instead.

    A :class:`CircuitOpenError` (the endpoint turns calls away for a while, as an open
    circuit does), so a conversation with a fallback left falls over to it.
    """

    def __init__(
        self, key: str | None, retry_after_s: float, state: CircuitState | str = "open"
    ) -> None:
        super().__init__(key, retry_after_s, state)  # (the base's pickling passes all three)
        self.args = (
            f"endpoint {key!r} is held {retry_after_s:.3f} s more for the provider's Retry-After",
        )


class _Crowded(BaseException):
    """A "too busy" answer carried out of the guarded call as an outcome the breaker ignores.

    A ``BaseException``: the breaker ignores those (as it ignores a cancellation) whatever
    its ``is_failure``, so the answer neither counts as a failure nor resets the count.
    """

    def __init__(self, error: RetryableError) -> None:
        super().__init__(error)
        self.error = error


_TOO_MANY_REQUESTS = 429
_OVERLOAD_STATUSES = frozenset({_TOO_MANY_REQUESTS, 503, 529})


_NO_TURN: Final = (0.0, 0.0)
_OPEN_FOR_SLACK_S: Final = 0.001  # a breaker's open deadline moved later by more was moved
_TIMED_OUT: Final = "timed out"  # how the adapters word a call given up on waiting
_BUSY_STATUSES = frozenset({503, 529})
_CONCURRENCY_WORDS = ("concurren", "parallel", "in flight", "in-flight")


def _is_overload(exc: RetryableError) -> bool:
    """Whether *exc* says the endpoint has more than it can take (not that it is down)."""
    if isinstance(exc, RateLimitError) or exc.status_code in _OVERLOAD_STATUSES:
        return True
    return _TIMED_OUT in exc.provider_message


def _says_busy(exc: RetryableError) -> bool:
    """Whether *exc* says "too many calls at once" (not a rate, not a Retry-After to honour)."""
    if exc.retry_after_s is not None:
        return False
    if exc.status_code in _BUSY_STATUSES:
        return True
    message = exc.provider_message.lower()
    return exc.status_code == _TOO_MANY_REQUESTS and any(w in message for w in _CONCURRENCY_WORDS)


def counts_against_breaker(exc: BaseException) -> bool:
    """The default rule: whether *exc* counts as a failure of its endpoint's breaker."""
    # Under this rule the caller also leaves out, without counting them either way, the 429s
    # of an endpoint that may still be answering (see _paces); a Retry-After holds the
    # endpoint in its pace. A provider answering nothing but 429s, Retry-After or not, is
    # refusing everyone: those count, so its circuit opens and its tasks give up or move on.
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
        async_sleep: Callable[[float], Awaitable[object]] = asyncio_sleep,
        limits: Mapping[str, Limits] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rate_store: RedisRateStore | None = None,
    ) -> None:
        """Call through *pool*; *tools* gives the registry when a tool is first needed.

        *limits* declares what models' accounts allow (see :class:`~aegis_gov.Limits`);
        *rate_store* keeps their buckets in Redis, shared between processes.
        """
        self.pool = pool
        self._limits: dict[str, Limits] = dict(limits or {})
        self._rate_store = rate_store
        self._clock = clock
        self._limiters: dict[str, EndpointLimiter | None] = {}
        self._tools = tools
        self.retry = retry
        self._rng = rng
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._adaptive: dict[str, AdaptiveLimit] = {}
        self._adaptive_lock = threading.Lock()
        self._learned: dict[str, LearnedRate | None] = {}
        self._unmatched_warned: set[str] = set()
        self._overlap_warned: set[str] = set()  # endpoints named by keys that disagree
        self._paced: dict[str, int] = {}  # requests waiting for their turn, by endpoint
        self._free_turns: dict[str, _Turn] = {}  # a turn to go at once, by endpoint (see _pace)
        self._progress: dict[str, float] = {}  # when a call last started or ended, by endpoint
        self._answered_at: dict[str, float] = {}  # when a call last succeeded, by endpoint
        self._held: dict[str, float] = {}  # until when a Retry-After holds each endpoint
        self._reprobes: dict[str, _Reprobe] = {}  # circuits 429s opened: when to probe again
        self._busy: dict[str, Waiters] = {}  # tasks over an endpoint's adaptive limit
        self._probing: dict[str, Waiters] = {}  # tasks waiting on a half-open circuit
        own_rule = pool.settings.is_failure
        # The facade's default pool passes the default rule itself: that is no rule of the user's.
        self._own_rule = None if own_rule is counts_against_breaker else own_rule
        self._counts: Callable[[BaseException], bool] = (
            self._own_rule if self._own_rule is not None else counts_against_breaker
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
            fallbacks=route.fallback_keys,
            fall_back_on_permanent_errors=agent.fall_back_on_permanent_errors,
            max_tool_rounds=agent.max_tool_rounds,
            max_tool_calls_per_reply=agent.max_tool_calls_per_reply,
            max_tool_output_chars=agent.max_tool_output_chars,
            output=route.output,
            output_retries=agent.output_retries,
            native_output=route.native_output,
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
        budget: BudgetMeter | None = None,
        trace: TaskTrace | None = None,
    ) -> Outcome:
        """Run one agent's conversation with threads; return its outcome.

        With a *slot*, the task gives it up while it waits between requests; with a *trace*,
        the conversation is traced (see :mod:`aegis_gov._tracing`).
        """
        if trace is not None:
            emit = trace.observe(emit)
        conversation = self.conversation(route, prompt, emit, task_id=task_id)
        steps = conversation.steps()
        job = _Job(self, route, sink, executor, slot, budget, trace)
        if slot is not None:
            slot.progress = _progress(conversation, job)
        if trace is None:
            return self._drive(steps, job)
        return trace.run(functools.partial(self._drive, steps, job), prompt)

    async def arun(
        self,
        route: Route,
        prompt: str,
        emit: EventHandler,
        *,
        task_id: str = "",
        sink: Sink | None = None,
        slot: Slot | None = None,
        budget: BudgetMeter | None = None,
        trace: TaskTrace | None = None,
    ) -> Outcome:
        """Run one agent's conversation on the running event loop; return its outcome."""
        if trace is not None:
            emit = trace.observe(emit)
        conversation = self.conversation(route, prompt, emit, task_id=task_id)
        steps = conversation.steps()
        job = _Job(self, route, sink, None, slot, budget, trace)
        if slot is not None:
            slot.progress = _progress(conversation, job)
        if trace is None:
            return await self._adrive(steps, job)
        return await trace.arun(functools.partial(self._adrive, steps, job), prompt)

    # -- carrying out a conversation's commands --------------------------------------------

    def _drive(self, steps: Generator[Command, object, Outcome], job: _Job) -> Outcome:
        """Carry out the conversation's commands with threads; return its outcome.

        An exception a request or a tool raises is caught here, once, and sent to the
        conversation as a :class:`Raised` value.
        """
        answer: object = None
        while True:
            try:
                command = steps.send(answer)
            except StopIteration as stop:
                return cast("Outcome", stop.value)
            if isinstance(command, Sleep):
                self._wait(job, command.seconds)
                answer = None
                continue
            try:
                if isinstance(command, ChatRequest):
                    answer = self._request(job, command)
                else:
                    answer = self._tool(job, command.call)
            except Exception as exc:  # noqa: BLE001  # handed to the conversation to decide
                answer = self._raised(job, command, exc)

    async def _adrive(self, steps: Generator[Command, object, Outcome], job: _Job) -> Outcome:
        """The asyncio twin of :meth:`_drive`."""
        answer: object = None
        while True:
            try:
                command = steps.send(answer)
            except StopIteration as stop:
                outcome: Outcome = stop.value  # (not typing.cast: a call per task)
                return outcome
            if isinstance(command, Sleep):
                await self._await(job, command.seconds)
                answer = None
                continue
            try:
                if isinstance(command, ChatRequest):
                    if job.trace is not None:
                        answer = await self._arequest(job, command)
                        continue
                    # `_arequest`, inlined for an untraced task: one coroutine fewer a request
                    slot = job.slot
                    if slot is not None and slot.abandoned:
                        raise _Abandoned  # noqa: TRY301  # handed over below, as from _arequest
                    answer = await self.achat(
                        job.route,
                        command,
                        sink=job.sink,
                        pause=None if slot is None else job.apause,
                        budget=job.budget,
                        alarms=None if slot is None else job,
                    )
                else:
                    answer = await self._atool(job, command.call)
            except Exception as exc:  # noqa: BLE001  # handed to the conversation to decide
                answer = self._raised(job, command, exc)

    def _raised(self, job: _Job, command: Command, exc: Exception) -> Raised:
        """*exc* as the conversation sees it; a 429 says how much its endpoint has served."""
        if isinstance(exc, RateLimitError) and isinstance(command, ChatRequest):
            key = job.route.target(command.endpoint)[1]
            limit = self._adaptive.get(key)
            return Raised(exc, None if limit is None else limit.answered, self._answering(key))
        return Raised(exc)

    def _answering(self, key: str) -> bool:
        """Whether the endpoint answered a call within its breaker's recovery timeout."""
        answered_at = self._answered_at.get(key)
        return (
            answered_at is not None
            and self._clock() - answered_at < self.pool.settings.recovery_timeout_s
        )

    def _request(self, job: _Job, request: ChatRequest) -> ChatResponse:
        if job.slot is not None and job.slot.abandoned:
            raise _Abandoned  # the run gave the task up (its thread lives on): send no more
        send = functools.partial(
            self.chat,
            job.route,
            request,
            sink=job.sink,
            executor=job.executor,
            pause=None if job.slot is None else job.pause,
            budget=job.budget,
            alarms=job.alarms(),
        )
        trace = job.trace
        if trace is None:
            return send()
        with trace.attempt(request):
            return send(trace=trace)

    async def _arequest(self, job: _Job, request: ChatRequest) -> ChatResponse:
        if job.slot is not None and job.slot.abandoned:
            raise _Abandoned
        send = functools.partial(
            self.achat,
            job.route,
            request,
            sink=job.sink,
            pause=None if job.slot is None else job.apause,
            budget=job.budget,
            alarms=job.alarms(),
        )
        trace = job.trace
        if trace is None:
            return await send()
        with trace.attempt(request):
            return await send(trace=trace)

    def _tool(self, job: _Job, call: ToolCall) -> str:
        agent = job.route.agent
        if job.trace is None:
            return self.run_tool(agent, call)
        return job.trace.tool(call, functools.partial(self.run_tool, agent, call))

    async def _atool(self, job: _Job, call: ToolCall) -> str:
        agent = job.route.agent
        if job.trace is None:
            return await self.arun_tool(agent, call)
        return await job.trace.atool(call, functools.partial(self.arun_tool, agent, call))

    def _wait(self, job: _Job, seconds: float) -> None:
        """A conversation's wait: parked, and cut short by the alarm a refusal left."""
        slot = job.slot
        if slot is None:
            self._sleep(seconds)
        else:
            slot.sleep(seconds, self._sleep, job.take())

    async def _await(self, job: _Job, seconds: float) -> None:
        slot = job.slot
        if slot is None:
            await self._async_sleep(seconds)
        else:
            await slot.asleep(seconds, self._async_sleep, job.take())

    def task_runner(
        self,
        routes: Mapping[str, Route],
        emit: EventHandler,
        *,
        streaming: bool,
        executor: Executor | None = None,
        budget: BudgetMeter | None = None,
        trace: RunTrace | None = None,
    ) -> Callable[[Work, Slot], Outcome]:
        """What the thread driver calls for each task of a run: its agent's conversation."""
        self.check_limits(routes.values())

        def execute(work: Work, slot: Slot) -> Outcome:
            route = routes[work.agent.name]
            return self.run(
                route,
                work.prompt,
                emit,
                task_id=work.task.id,
                sink=_delta_sink(emit, work.task.id) if streaming else None,
                executor=executor,
                slot=slot,
                budget=budget,
                trace=None if trace is None else _task_trace(trace, work, route),
            )

        return execute

    def task_gate(self, routes: Mapping[str, Route]) -> Callable[[Work], bool]:
        """Whether a task's endpoints would take its call now (for the thread driver)."""

        def takes(work: Work) -> bool:
            route = routes[work.agent.name]
            return any(
                self._takes_now(route.target(index)[1]) for index in range(len(route.fallbacks) + 1)
            )

        return takes

    def _takes_now(self, key: str) -> bool:
        """Whether *key* would let a new call through now (read only: nothing is taken).

        Not if a Retry-After holds it, its adaptive limit is full, or its circuit is open
        (or half-open with tasks already waiting for the probe). A forced-open circuit
        turns a task away at once, so that task is let start: it ends or falls over.
        """
        if self._held and self._held_for(key) > 0.0:
            return False
        limit = self._adaptive.get(key)
        if limit is not None and limit.free <= 0:
            return False
        breaker = self.pool.breakers.get(key)
        if breaker is None:
            return True
        state = breaker.state
        if state is CircuitState.OPEN:
            reprobe = self._reprobes.get(key)
            return reprobe is not None and reprobe.at <= self._clock()
        return not (state is CircuitState.HALF_OPEN and self._probing.get(key))

    def async_task_runner(
        self,
        routes: Mapping[str, Route],
        emit: EventHandler,
        *,
        streaming: bool,
        budget: BudgetMeter | None = None,
        trace: RunTrace | None = None,
    ) -> Callable[[Work, Slot], Coroutine[object, object, Outcome]]:
        """The asyncio twin of :meth:`task_runner`."""
        self.check_limits(routes.values())

        async def execute(work: Work, slot: Slot) -> Outcome:
            route = routes[work.agent.name]
            sink = _delta_sink(emit, work.task.id) if streaming else None
            if trace is None:  # `arun`, inlined: one coroutine fewer a task
                conversation = self.conversation(route, work.prompt, emit, task_id=work.task.id)
                job = _Job(self, route, sink, None, slot, budget, None)
                slot.progress = _progress(conversation, job)
                return await self._adrive(conversation.steps(), job)
            return await self.arun(
                route,
                work.prompt,
                emit,
                task_id=work.task.id,
                sink=sink,
                slot=slot,
                budget=budget,
                trace=_task_trace(trace, work, route),
            )

        return execute

    # -- requests ------------------------------------------------------------------------

    def chat(  # noqa: C901, PLR0915  # pacing, admission, budget, the call and its outcome
        self,
        route: Route,
        request: ChatRequest,
        *,
        sink: Sink | None = None,
        executor: Executor | None = None,
        pause: Callable[[float], object] | None = None,
        budget: BudgetMeter | None = None,
        trace: TaskTrace | None = None,
        alarms: _AlarmBox | None = None,
    ) -> ChatResponse:
        """Send *request* through the pool to *route*'s endpoint; raise what it raised.

        The endpoint's pace (declared, or learned from 429s) is waited out first, with
        *pause* (the task's parked sleep). Turned away (over the endpoint's limit, or by a
        half-open circuit), the task leaves an alarm in *alarms* for its next wait.
        """
        adapter, key = route.target(request.endpoint)
        if self._held:
            self._move_on_if_held(route, request, key)

        def send() -> ChatResponse:
            if executor is not None:
                return executor.submit(_send, adapter, request).result()
            if sink is None:
                return _send(adapter, request)
            return _send_streaming(adapter, request, sink, route.agent.name)

        def attempt(call: _Call) -> ChatResponse | _Declined:
            call.sent()
            try:
                if trace is not None:  # the provider call's span, inside breaker and bulkhead
                    streaming = sink is not None and executor is None
                    return trace.call(send, adapter, request, streaming=streaming)
                return send()
            except Exception as exc:
                if isinstance(exc, RetryableError) and self._refused(exc, call):
                    raise _Crowded(exc) from None
                if isinstance(exc, RateLimitError) and self._paces(call):
                    raise _Throttled(exc) from None
                if self._counts(exc):
                    raise
                return _Declined(exc)

        turn = self._pace(adapter, key, request)
        if turn.wait > 0:
            turn = self._wait_turn(key, turn, pause or self._sleep, alarms)
        call = self._start(adapter, key, turn, alarms, None)
        admitted = False
        try:
            if budget is not None:
                budget.admit()  # raises once the run's budget is spent: nothing is sent
                admitted = True
            self._probe_if_due(key)  # a circuit 429s opened, once its backoff is over
            answer = self.pool.run_on(key, attempt, call)
            if isinstance(answer, _Declined):  # not the breaker's business; still an error
                raise answer.error
            if budget is not None:
                budget.record(adapter.endpoint, key, _billed(request, answer))
            call.answer = answer
        except RetryableError as exc:
            if call.refused:  # a refusal a pool's own is_failure judged: still a wait
                raise call.crowded(alarms, None, exc) from exc
            # Whether or not it counted against the breaker, a 429 still says "overloaded"
            # and its Retry-After still holds the endpoint.
            self._after_retryable(
                route, call, exc, sink, counted=True, budget=budget, request=request
            )
            raise
        except CircuitOpenError as exc:
            raise self._turned_away(call, exc, alarms, None) from None
        except _Throttled as throttled:
            self._after_retryable(
                route, call, throttled.error, sink, budget=budget, request=request
            )
            raise throttled.error from None
        except _Crowded as crowded:
            raise call.crowded(alarms, None, crowded.error) from crowded.error
        finally:
            if budget is not None and admitted and not call.went:
                budget.give_back()  # the circuit (or bulkhead) sent nothing: not spent
            self._end(call)
        return answer

    async def achat(  # noqa: C901, PLR0912  # the twin of chat, which says why
        self,
        route: Route,
        request: ChatRequest,
        *,
        sink: Sink | None = None,
        pause: Callable[[float], Awaitable[object]] | None = None,
        budget: BudgetMeter | None = None,
        trace: TaskTrace | None = None,
        alarms: _AlarmBox | None = None,
    ) -> ChatResponse:
        """The asyncio twin of :meth:`chat`."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        if request.endpoint == 0:  # route.target(0), inlined
            adapter, key = route.adapter, route.key
        else:
            adapter, key = route.target(request.endpoint)
        if self._held:
            self._move_on_if_held(route, request, key)
        loop = asyncio.get_running_loop()
        shared = self._rate_store is not None  # a round trip to Redis: keep it off the loop
        # A pace in memory is taken here: a turn with no wait then starts with no coroutine.
        turn = None if shared else self._pace(adapter, key, request)
        if turn is None or turn.wait > 0:
            call = await self._astart(
                adapter, key, request, pause or self._async_sleep, alarms, loop, turn=turn
            )
        else:
            call = self._start(adapter, key, turn, alarms, loop)
        admitted = False
        try:
            if budget is not None:
                budget.admit()  # raises once the run's budget is spent: nothing is sent
                admitted = True
            self._probe_if_due(key)  # a circuit 429s opened, once its backoff is over
            answer = await self.pool.arun_on(
                key, self._aattempt, call, route, adapter, request, sink, trace
            )
            if isinstance(answer, _Declined):  # not the breaker's business; still an error
                raise answer.error
            if budget is not None:
                budget.record(adapter.endpoint, key, _billed(request, answer))
            call.answer = answer
        except RetryableError as exc:
            if call.refused:
                raise call.crowded(alarms, loop, exc) from exc
            self._after_retryable(
                route, call, exc, sink, counted=True, budget=budget, request=request
            )
            raise
        except CircuitOpenError as exc:
            raise self._turned_away(call, exc, alarms, loop) from None
        except _Throttled as throttled:
            self._after_retryable(
                route, call, throttled.error, sink, budget=budget, request=request
            )
            raise throttled.error from None
        except _Crowded as crowded:
            raise call.crowded(alarms, loop, crowded.error) from crowded.error
        finally:
            if budget is not None and admitted and not call.went:
                budget.give_back()  # the circuit (or bulkhead) sent nothing: not spent
            if shared and call.turn.limiter is not None:
                await asyncio.to_thread(self._end, call)  # reconciles its tokens in Redis
            else:
                self._end(call)
        return answer

    async def _aattempt(  # noqa: PLR0917  # achat's own step, its arguments in order
        self,
        call: _Call,
        route: Route,
        adapter: ChatAdapter,
        request: ChatRequest,
        sink: Sink | None,
        trace: TaskTrace | None,
    ) -> ChatResponse | _Declined:
        """One request inside the breaker and the bulkhead (the twin of ``chat``'s ``attempt``).

        A method given its arguments, not a closure made per request: the pool passes them on.
        """
        call.sent()
        try:
            if trace is not None:  # the provider call's span, inside breaker and bulkhead
                send = functools.partial(_asend_either, adapter, request, sink, route.agent.name)
                return await trace.acall(send, adapter, request, streaming=sink is not None)
            if sink is None:
                if request.output_schema is None:  # `asend`, inlined: one coroutine fewer
                    return await adapter.achat(
                        request.messages, system=request.system, tools=request.tools
                    )
                return await asend(adapter, request)
            return await _asend_streaming(adapter, request, sink, route.agent.name)
        except Exception as exc:
            if isinstance(exc, RetryableError) and self._refused(exc, call):
                raise _Crowded(exc) from None
            if isinstance(exc, RateLimitError) and self._paces(call):
                raise _Throttled(exc) from None
            if self._counts(exc):
                raise
            return _Declined(exc)

    async def _astart(  # noqa: PLR0917  # achat's own step, its arguments in order
        self,
        adapter: ChatAdapter,
        key: str,
        request: ChatRequest,
        pause: Callable[[float], Awaitable[object]],
        alarms: _AlarmBox | None,
        loop: asyncio.AbstractEventLoop,
        *,
        turn: _Turn | None,
    ) -> _Call:
        """Take the request's turn (unless given it), wait it out, count the call in flight.

        Without a *turn*, the pace is a shared (Redis) one: its round trips run off the loop.
        """
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        shared = turn is None
        if turn is None:
            turn = await asyncio.to_thread(self._pace, adapter, key, request)
        if turn.wait > 0:
            turn = await self._await_turn(key, turn, pause, alarms)
        try:
            return self._start(adapter, key, turn, alarms, loop, give_back=not shared)
        except EndpointBusyError:
            if shared and turn.limiter is not None:  # the unused turn, given back off the loop
                await asyncio.to_thread(turn.limiter.cancel, turn.taken)
            raise

    def _wait_turn(
        self,
        key: str,
        turn: _Turn,
        pause: Callable[[float], object],
        alarms: _AlarmBox | None,
    ) -> _Turn:
        """Wait out the request's turn in the endpoint's pace (shown as paced meanwhile)."""
        self._count_paced(key, 1)
        try:
            while turn.wait > 0:
                pause(turn.wait)
                if alarms is not None and alarms.abandoned:
                    raise _Abandoned  # noqa: TRY301  # the run gave the task up while it waited
                turn = self._again(key, turn)
        except BaseException:
            _give_back(turn)  # a task given up (deadline, Ctrl-C) leaves no phantom turn
            raise
        finally:
            self._count_paced(key, -1)
        return turn

    async def _await_turn(
        self,
        key: str,
        turn: _Turn,
        pause: Callable[[float], Awaitable[object]],
        alarms: _AlarmBox | None,
    ) -> _Turn:
        """The asyncio twin of :meth:`_wait_turn`."""
        self._count_paced(key, 1)
        try:
            while turn.wait > 0:
                await pause(turn.wait)
                if alarms is not None and alarms.abandoned:
                    raise _Abandoned  # noqa: TRY301  # handed back below, like a cancellation
                turn = self._again(key, turn)
        except BaseException:
            _give_back(turn)  # cancelled while waiting: its reserved turn goes back
            raise
        finally:
            self._count_paced(key, -1)
        return turn

    def _again(self, key: str, turn: _Turn) -> _Turn:
        """The turn after its wait, held longer if a Retry-After came meanwhile."""
        turn = turn.again()
        if turn.wait <= 0:
            held = self._held_for(key)
            if held > 0:
                return attrs.evolve(turn, wait=held)
        return turn

    def circuit_opened(self, key: str) -> None:
        """The endpoint's circuit opened: its recovery is ramped up (see ``recovered``)."""
        limit = self._adaptive.get(key)
        if limit is not None:
            limit.outage()

    def _hold(self, key: str, seconds: float) -> None:
        """Send no request to *key* for *seconds* (a Retry-After): its pace waits it out."""
        until = self._clock() + seconds
        with self._adaptive_lock:
            if until > self._held.get(key, -math.inf):
                self._held[key] = until

    def _move_on_if_held(self, route: Route, request: ChatRequest, key: str) -> None:
        """Raise :class:`_HeldError` to move a task with a fallback left off a held *key*.

        Only for a hold longer than a retry's first wait, as from an open circuit. A shorter
        one is waited out: no task would retry sooner anyway, and a provider's passing 429
        should not send every task to the (often dearer) fallback.
        """
        if request.endpoint < len(route.fallbacks):
            held = self._held_for(key)
            if held > self.retry.initial_delay_s:
                raise _HeldError(key, held)

    def _held_for(self, key: str) -> float:
        """Seconds *key* is still held for (0.0: not held)."""
        until = self._held.get(key)
        return 0.0 if until is None else max(until - self._clock(), 0.0)

    def _refusals_opened(self, key: str, exc: RetryableError) -> None:
        """A refusal (429, 503, 529) counted against *key*'s breaker: if it opened it, probe sooner.

        An endpoint answering nothing but 429s is refusing everyone (a used-up quota, the rest
        of a minute's window), and one answering 503 or 529 is overloaded or restarting: not
        down for long, as a 500 or a refused connection may be. Its circuit opens, so its
        tasks stop sending and wait or move to a fallback, but it is probed again after a
        backoff -- the provider's Retry-After, at least :attr:`RetryPolicy.initial_delay_s`
        doubled with each opening since the endpoint last answered -- rather than the
        breaker's whole ``recovery_timeout_s`` (30 s by default, for a window of 429s that
        ended in 3 s, or a 0.3 s restart answered with 503s in a millisecond each).
        """
        breaker = self.pool.breakers.get(key)
        if breaker is None or breaker.state is not CircuitState.OPEN:
            return
        generation = breaker.generation
        with self._adaptive_lock:
            last = self._reprobes.get(key)
            if last is not None and last.generation == generation:
                return  # this opening's probe is already set
            level = 0 if last is None else last.level + 1
            backoff = self.retry.initial_delay_s * 2.0 ** min(level, 64)
            wait = min(max(backoff, exc.retry_after_s or 0.0), breaker.settings.recovery_timeout_s)
            now = self._clock()
            opened_for = now + breaker.retry_after_s
            self._reprobes[key] = _Reprobe(generation, now + wait, level, opened_for)

    def _probe_if_due(self, key: str) -> None:
        """Move a circuit 429s opened to half-open once its backoff is over (this call probes)."""
        if not self._reprobes:
            return
        reprobe = self._reprobes.get(key)
        if reprobe is None or self._clock() < reprobe.at:
            return
        breaker = self.pool.breaker(key)
        with self._adaptive_lock:
            if self._reprobes.get(key) is not reprobe:
                return  # another task got here first
            self._reprobes[key] = attrs.evolve(reprobe, at=math.inf)  # one move per opening
        if breaker.state is CircuitState.OPEN and self._probe_in(key) is not None:
            breaker.transition_to_half_open()

    def _probe_in(self, key: str) -> float | None:
        """Seconds until the early probe of *key*'s circuit (None: no early probe applies).

        None when 429s did not open it, or the breaker moved on since they did (another
        state), or someone held it open longer (``open_for``); inf while the probe is out.
        """
        reprobe = self._reprobes.get(key) if self._reprobes else None
        if reprobe is None:
            return None
        breaker = self.pool.breaker(key)
        now = self._clock()
        if breaker.generation != reprobe.generation or _held_open(breaker, reprobe, now):
            return None
        return max(reprobe.at - now, 0.0)

    def _turned_away(
        self,
        call: _Call,
        exc: CircuitOpenError,
        alarms: _AlarmBox | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> CircuitOpenError:
        """The circuit turned *call* away: queue the task for its closing; what to raise."""
        rejection = exc
        if exc.state is CircuitState.OPEN:
            left = self._probe_in(call.key)
            if left is not None and left < exc.retry_after_s:  # it says when it is probed
                rejection = CircuitOpenError(exc.breaker_name, left, exc.state)
        call.rejected(rejection, alarms, loop)
        return rejection

    def probed_status(self, key: str, status: BreakerStatus) -> BreakerStatus:
        """*key*'s breaker *status*, its ``retry_after_s`` the early probe's if 429s opened it."""
        left = self._probe_in(key) if status.state is CircuitState.OPEN else None
        if left is None or not left < status.retry_after_s:
            return status
        return attrs.evolve(status, retry_after_s=left)

    def _count_paced(self, key: str, change: int) -> None:
        with self._adaptive_lock:
            self._paced[key] = self._paced.get(key, 0) + change

    def _refused(self, exc: RetryableError, call: _Call) -> bool:
        """Mark *call* refused if *exc* turned it away as one too many; True: breaker, ignore it.

        A provider that answers "too busy" (503, 529, a 429 about concurrent requests, with no
        Retry-After) while other calls of the endpoint are in flight is at its capacity, not
        down: that is the adaptive limit's business, and the task waits for a call to end as
        it would under the limit. The breaker ignores it under the default failure rule; a
        pool's own ``is_failure`` still decides whether it counts.

        An endpoint that refuses call after call and answers none in between is not full
        but down: past :func:`_refusals_allowed` refusals (of the pool's ``max_concurrent``:
        one burst of calls sent together is refused all at once) since its last answer, "too
        busy" is an ordinary failure again (it counts against the breaker and the retry
        budget). The limit, not this, tells a cap's refusal from a provider busy at random
        (see :meth:`AdaptiveLimit.release`): either way the task waits for a call to end.
        """
        limit = call.limit
        if not (_says_busy(exc) and limit.in_flight > 1):
            return False
        if limit.refusals >= _refusals_allowed(limit.max_limit):
            return False
        call.refused = True
        return self._own_rule is None

    def _paces(self, call: _Call) -> bool:
        """Whether the breaker should leave *call*'s 429 out: a provider pacing, not down.

        Under the default failure rule, a 429 neither counts nor resets the count while its
        endpoint may still be answering: other calls of the endpoint are in flight (a burst,
        or slow answers on their way), or no more than :func:`_refusals_allowed` of the
        pool's ``max_concurrent`` 429s came
        since the endpoint last answered, or it answered within the breaker's recovery
        timeout. Past that, a 429 alone in flight is a provider answering nothing but 429s,
        refusing everyone: it counts, so the circuit opens. The count is of the ceiling, not
        of the limit a run of 429s has just cut. A pool's own ``is_failure`` decides.
        """
        if self._own_rule is not None:
            return False
        limit = call.limit
        throttles = limit.throttled()
        if limit.in_flight > 1:
            return True
        return throttles <= _refusals_allowed(limit.max_limit) or self._answering(call.key)

    def _pace(self, adapter: ChatAdapter, key: str, request: ChatRequest) -> _Turn:
        """Take the request's turn in the endpoint's pace (declared, else learned)."""
        limiter = self._limiter(adapter, key) if self._limits else None
        # A declared limit is waited out within the retry policy's total budget; past it, the
        # limiter's RateLimitExceededError tells the conversation (as a full bulkhead would).
        wait, taken, go_at = (
            limiter.reserve(_estimate(request), max_wait_s=self.retry.max_total_delay_s)
            if limiter
            else (0.0, 0.0, _NO_TURN)
        )
        if self._held:  # a Retry-After holds an endpoint (rare): wait it out first
            wait = max(wait, self._held_for(key))
        learned = self._learned.get(key)
        if learned is None:
            learned = self._learned_rate(adapter, key)  # made at first use (None if declared)
        epoch: int | None = 0
        if learned is not None:
            learned_wait, epoch = learned.reserve()
            wait = max(wait, learned_wait)
            if limiter is None and wait == 0.0:
                # Go at once, nothing reserved: the same turn for every such request of the
                # endpoint until its learned pace changes epoch (a turn is never changed).
                free = self._free_turns.get(key)
                if free is None or free.learned is not learned or free.epoch != epoch:
                    free = self._free_turns[key] = _Turn(0.0, None, 0.0, learned, epoch)
                return free
        return _Turn(wait, limiter, taken, learned, epoch, go_at)

    def _start(
        self,
        adapter: ChatAdapter,
        key: str,
        turn: _Turn,
        alarms: _AlarmBox | None,
        loop: asyncio.AbstractEventLoop | None,
        *,
        give_back: bool = True,
    ) -> _Call:
        """Count the call in flight, or queue the task for a place and raise EndpointBusyError.

        Turned away, the request's turn in a declared pace is given back (if *give_back*).
        """
        limit = self._adaptive.get(key) or self.adaptive_limit(key, adapter)
        now = self._clock()
        if limit.try_acquire():
            self._progress[key] = now
            # Whether the call may be a half-open circuit's probe matters only to a limit that
            # was ever cut (recovering a limit never cut changes nothing): the breaker's state
            # is not read otherwise.
            probe = limit.ever_cut and self.pool.breaker(key).state is CircuitState.HALF_OPEN
            return _Call(self, key, limit, turn, probe=probe, since=limit.cuts, box=alarms)
        if give_back and turn.limiter is not None:  # the turn goes unused: give it back
            turn.limiter.cancel(turn.taken)
        if alarms is not None:
            alarms.queue(self._waiters(self._busy, key), loop, ready=lambda: limit.free > 0)
        # How long the endpoint's calls have made no progress (none started or ended): a
        # queue behind a call that never ends must not be waited in for ever. Only where the
        # queue is there because the limit was cut (overloads, refusals): behind a limit that
        # is all the endpoint allows (a declared max_concurrent, say) slow calls are no fault.
        stalled = now - self._progress.setdefault(key, now)
        if limit.limit >= limit.max_limit:
            stalled = 0.0
        raise EndpointBusyError(
            key, limit.limit, stalled_s=max(stalled, 0.0), queued=alarms is not None
        )

    def _end(self, call: _Call) -> None:
        """A call is over: settle it, then wake who can go now."""
        call.settle()
        key = call.key
        self._progress[key] = now = self._clock()
        if call.answer is not None:
            self._answered_at[key] = now
            if self._reprobes and self.pool.breaker(key).state is CircuitState.CLOSED:
                # Answering again: the next 429s start afresh. (Not an answer to a call sent
                # before the circuit opened: the probe it waits for would be lost.)
                self._reprobes.pop(key, None)
        busy = self._busy.get(key)
        probing = self._probing.get(key)
        if not busy and not probing:  # nobody waits: no need to count what is free
            return
        free = call.limit.free
        if busy and not call.overloaded:  # (settled: an answered call is not overloaded)
            # Not after an overload: the next task would go at once into what just refused
            # a call, and the next after its refusal, a chain of lone calls a millisecond
            # apart that opened the circuit (for 30 s) within a 0.3 s restart. Queued tasks
            # go when a call succeeds, or when their own wait (a retry's first) is over.
            free -= busy.wake(free)
        if probing and free > 0 and self.pool.breaker(key).state is CircuitState.CLOSED:
            probing.wake(free)  # the probe succeeded: as many as the limit lets in

    def _waiters(self, table: dict[str, Waiters], key: str) -> Waiters:
        found = table.get(key)
        if found is None:
            with self._adaptive_lock:
                found = table.setdefault(key, Waiters())
        return found

    def _learned_rate(self, adapter: ChatAdapter, key: str) -> LearnedRate | None:
        """The pace learned from 429s, unless a request rate is declared for the endpoint."""
        if key not in self._learned:
            declared = self._declared(adapter, key)
            learned = (
                LearnedRate(self._clock)
                if declared is None or declared.requests_per_minute is None
                else None
            )
            with self._adaptive_lock:
                self._learned.setdefault(key, learned)
        return self._learned[key]

    def check_limits(self, routes: Iterable[Route]) -> None:
        """Warn (once per key) about declared limits that match no endpoint of a run.

        A key is a model name typed by hand: a typo would silently leave the model unlimited.
        A facade may serve teams with other models, so it is a warning, not an error.
        """
        if not self._limits:
            return
        endpoints = [
            (adapter.endpoint, key)
            for route in routes
            for adapter, key in (route.target(i) for i in range(len(route.fallbacks) + 1))
        ]
        self._warn_overlapping(endpoints)
        for name in self._limits:
            if name in self._unmatched_warned or any(
                name in (key, f"{endpoint.provider}:{endpoint.model}", endpoint.model)
                for endpoint, key in endpoints
            ):
                continue
            self._unmatched_warned.add(name)
            models = sorted({endpoint.model for endpoint, _key in endpoints})
            import difflib  # noqa: PLC0415  # only for this warning

            close = difflib.get_close_matches(name, models, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            warnings.warn(
                f"limits[{name!r}] matches no model of this run (its models: "
                f"{', '.join(map(repr, models)) or 'none'}), so it limits nothing{hint} "
                "(keys are a model name, 'provider:model' or an endpoint key)",
                UserWarning,
                stacklevel=4,
            )

    def _warn_overlapping(self, endpoints: Iterable[tuple[Endpoint, str]]) -> None:
        """Warn (once per endpoint) when two keys that differ name one endpoint of a run.

        The most specific applies (endpoint key, then ``provider:model``, then model): a
        model's limits written twice with different values would otherwise be half ignored.
        """
        for endpoint, key in endpoints:
            names = [
                name
                for name in (key, f"{endpoint.provider}:{endpoint.model}", endpoint.model)
                if name in self._limits
            ]
            if key in self._overlap_warned or all(
                self._limits[name] == self._limits[names[0]] for name in names
            ):
                continue
            self._overlap_warned.add(key)
            warnings.warn(
                f"limits {', '.join(map(repr, names))} all name the endpoint {key!r} with "
                f"different values: only limits[{names[0]!r}] applies (an endpoint key wins "
                "over 'provider:model', which wins over a model name)",
                UserWarning,
                stacklevel=5,
            )

    def adaptive_limit(self, key: str, adapter: ChatAdapter | None = None) -> AdaptiveLimit:
        """The concurrency limit of the endpoint *key* (made at first use).

        Adaptive (AIMD up to the pool's ``max_concurrent``), or fixed at a declared
        ``Limits.max_concurrent``.
        """
        found = self._adaptive.get(key)
        if found is None:
            declared = self._declared(adapter, key)
            fixed = declared.max_concurrent if declared is not None else None
            limit = (
                AdaptiveLimit(self.pool.max_concurrent)
                if fixed is None
                else AdaptiveLimit(fixed, min_limit=fixed)
            )
            with self._adaptive_lock:
                found = self._adaptive.setdefault(key, limit)
        return found

    def _declared(self, adapter: ChatAdapter | None, key: str) -> Limits | None:
        if not self._limits or adapter is None:
            return None
        return resolve_limits(self._limits, adapter.endpoint, key)

    def _limiter(self, adapter: ChatAdapter, key: str) -> EndpointLimiter | None:
        if not self._limits:
            return None
        if key not in self._limiters:
            declared = self._declared(adapter, key)
            limiter = None
            if declared is not None and (
                declared.requests_per_minute is not None or declared.tokens_per_minute is not None
            ):
                limiter = EndpointLimiter(
                    declared, name=key, clock=self._clock, store=self._rate_store
                )
            with self._adaptive_lock:
                self._limiters.setdefault(key, limiter)
        return self._limiters[key]

    def adaptive_status(self) -> dict[str, AdaptiveStatus]:
        """A snapshot of every endpoint's adaptive limit and learned rate, by endpoint key."""
        status = {}
        for key, limit in list(self._adaptive.items()):
            learned = self._learned.get(key)
            rate = learned.rate() if learned is not None else None
            status[key] = attrs.evolve(
                limit.status(),
                rate_per_s=rate,
                paced=self._paced.get(key, 0),
                held_s=self._held_for(key),
            )
        return status

    def _after_retryable(
        self,
        route: Route,
        call: _Call,
        exc: RetryableError,
        sink: Sink | None,
        *,
        counted: bool = False,
        budget: BudgetMeter | None = None,
        request: ChatRequest | None = None,
    ) -> None:
        """*call* ended in *exc* (*counted* by the breaker or not): note it, hold the endpoint.

        A stream broken after some of its answer came is counted against *budget* by
        estimate (its input, and the characters streamed): the provider bills what it
        generated, and a retry streams it again.
        """
        call.failed(exc)
        key = call.key
        if budget is not None and request is not None and sink is not None and sink.turn_chars:
            output = (sink.turn_chars + 3) // 4
            usage = Usage(input_tokens=_estimate(request), output_tokens=output)
            budget.record(route.target(request.endpoint)[0].endpoint, key, usage)
        if counted and (isinstance(exc, RateLimitError) or exc.status_code in _BUSY_STATUSES):
            self._refusals_opened(key, exc)
        if isinstance(exc, RateLimitError) and exc.retry_after_s:
            # The provider asked every caller to wait: hold the whole endpoint back, but no
            # longer than the retry policy waits for anyone: a lying or broken Retry-After
            # (a year, an HTTP date in 2099) must not close the endpoint for good. Held in
            # the endpoint's pace, not by forcing its circuit open: an open circuit ends in
            # a half-open probe, and every other task then waited for that one call's whole
            # answer (seconds, for a model) although the provider had only asked for 0.2 s.
            self._hold(key, min(exc.retry_after_s, self.retry.max_delay_s))
        # Only this turn's chunks matter: a request that follows a tool round and fails
        # before it streams anything can be retried without the reader seeing a seam.
        if sink is not None and sink.turn_emitted and not sink.restartable:
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
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        return await asyncio.to_thread(self.run_tool, agent, call)


class _Abandoned(Exception):  # noqa: N818  # a signal to stop, not an error of the task's
    """The run gave up on this task (its deadline, or a cancel): send no more requests."""


def _progress(conversation: Conversation, job: _Job) -> Callable[[Exception], Failure]:
    """What a run giving the task up reports: its usage and tools, and the requests that left.

    Not the conversation's own count: a request waiting for its turn (a declared rate, a
    place under the limit, the budget's check) is counted there before it goes.
    """
    return lambda error: conversation.given_up(error, sent=job.sent)


def _task_trace(trace: RunTrace, work: Work, route: Route) -> TaskTrace:
    return trace.task(work.task.id, route.agent.name, route.adapter.endpoint)


def _delta_sink(emit: EventHandler, task_id: str) -> Sink:
    if not getattr(emit, "active", True):  # streamed as asked, but nobody reads the chunks
        return Sink(_discard, restartable=True)

    def on_delta(text: str) -> None:
        emit(TaskOutputDelta(task_id, text))

    # In a run, a retried turn's chunks start again after its TaskRetrying or FellBack event
    # (as TaskOutputDelta's docstring tells consumers).
    return Sink(on_delta, restartable=True)


def _discard(_text: str) -> None:
    pass


@attrs.frozen
class _Reprobe:
    """When a circuit refusals opened is probed again (see ``EndpointCaller._refusals_opened``)."""

    generation: int  # the breaker's generation the opening began
    at: float  # when, on the caller's clock (inf: the probe is under way)
    level: int  # openings by 429s in a row, since the endpoint last answered, less one
    opened_for: float  # until when the breaker itself meant to stay open


def _held_open(breaker: CircuitBreaker, reprobe: _Reprobe, now: float) -> bool:
    """Whether someone held the circuit open longer since 429s opened it (``open_for``)."""
    return now + breaker.retry_after_s > reprobe.opened_for + _OPEN_FOR_SLACK_S


@attrs.define
class _Turn:
    """A request's turn in its endpoint's pace: how long to wait, and what it reserved.

    Never changed once made (:meth:`again` makes another), so one may serve many requests.
    """

    wait: float
    limiter: EndpointLimiter | None
    taken: float
    learned: LearnedRate | None
    epoch: int | None  # None: no turn taken yet (the queue was too long), look again
    go_at: tuple[float, float] = (0.0, 0.0)  # when the declared buckets' turns come

    def again(self) -> _Turn:
        """After the wait: go, unless no turn was taken or a 429 cut the pace meanwhile."""
        if self.learned is None or (self.epoch is not None and self.learned.epoch == self.epoch):
            return attrs.evolve(self, wait=0.0)
        wait, epoch = self.learned.reserve()
        return attrs.evolve(self, wait=wait, epoch=epoch)


class _AlarmBox:
    """One task's alarm for its next wait, left by the request that was turned away."""

    __slots__ = ("_alarm", "_slot", "sent")

    def __init__(self, slot: Slot) -> None:
        self._alarm: Alarm | None = None
        self._slot = slot
        self.sent = 0  # requests of the task that left (a run giving it up reports them)

    @property
    def abandoned(self) -> bool:
        """Whether the run gave the task up."""
        return self._slot.abandoned

    def queue(
        self,
        waiters: Waiters,
        loop: asyncio.AbstractEventLoop | None,
        *,
        ready: Callable[[], bool],
    ) -> None:
        """Queue a new alarm with *waiters*; ring it at once if *ready* already holds."""
        alarm = Alarm(loop)
        waiters.join(alarm)
        if ready():  # freed between the refusal and the queueing: do not sleep it out
            alarm.ring()
        self._alarm = alarm

    def take(self) -> Alarm | None:
        """The alarm for the wait about to start (each is used once)."""
        alarm, self._alarm = self._alarm, None
        return alarm


class _Job(_AlarmBox):
    """One task's conversation as the caller carries it out: where its requests go, how it waits.

    A task with a slot is its own alarm box (one object a task, not two).
    """

    __slots__ = ("budget", "caller", "executor", "route", "sink", "slot", "trace")

    def __init__(  # noqa: PLR0917  # built in one place, from run's arguments
        self,
        caller: EndpointCaller,
        route: Route,
        sink: Sink | None,
        executor: Executor | None,
        slot: Slot | None,
        budget: BudgetMeter | None,
        trace: TaskTrace | None,
    ) -> None:
        self.caller = caller
        self.route = route
        self.sink = sink
        self.executor = executor
        self.slot = slot
        self.budget = budget
        self.trace = trace
        self._alarm = None
        self._slot = slot  # type: ignore[assignment]  # read only through alarms(): never None
        self.sent = 0

    def alarms(self) -> _AlarmBox | None:
        """This task's alarm box: itself when it has a slot (its waits may be cut short)."""
        return None if self.slot is None else self

    def pause(self, seconds: float) -> None:
        """Wait out an endpoint's pace, parked (the task has a slot)."""
        assert self.slot is not None  # noqa: S101  # only handed to chat with a slot
        self.slot.sleep(seconds, self.caller._sleep)  # noqa: SLF001  # one mechanism

    async def apause(self, seconds: float) -> None:
        """The asyncio twin of :meth:`pause`."""
        assert self.slot is not None  # noqa: S101
        await self.slot.asleep(seconds, self.caller._async_sleep)  # noqa: SLF001


@attrs.define
class _Call:
    """One call in flight on an endpoint, and what its end tells the endpoint."""

    caller: EndpointCaller
    key: str
    limit: AdaptiveLimit
    turn: _Turn
    probe: bool = False  # sent while the circuit was half-open: it may be the probe
    since: int | None = None  # the limit's cuts when the call started
    box: _AlarmBox | None = None  # the task's, which counts its requests that left
    sent_at: float | None = None  # when the request left, by the learned pace's clock
    answer: ChatResponse | None = None
    overloaded: bool | None = None
    refused: bool = False  # turned away as one call too many
    unsent: bool = False  # turned away by the circuit: no request left
    went: bool = False  # the breaker let the request go (it was sent)
    timed_out: bool = False  # no answer came in time
    paced: bool = False  # a 429 its endpoint's learned pace took as a rate limit

    def sent(self) -> None:
        """The request leaves now (inside the breaker): the learned pace counts it."""
        self.went = True
        if self.box is not None:
            self.box.sent += 1
        learned = self.turn.learned
        if learned is not None:
            self.sent_at = learned.sent()

    def failed(self, exc: RetryableError) -> None:
        """The call ended in a retryable error: was that overload, and a 429 to learn from?"""
        self.overloaded = True if _is_overload(exc) else None  # a 500 says nothing of load
        self.timed_out = _TIMED_OUT in exc.provider_message
        if self.learn(exc):
            self.paced = True  # a rate limit: the pace deals with it, the limit sets no plateau
        elif self.sent_at is not None and self.turn.learned is not None:
            self.turn.learned.failed(self.sent_at)  # not taken: no rate is learned from it

    def learn(self, exc: RetryableError) -> bool:
        """If *exc* is a 429, let the endpoint's learned pace know (refusals included).

        Return whether it was one.
        """
        learned = self.turn.learned
        if (
            learned is not None
            # Every 429 teaches the pace, "too many concurrent requests" included: providers
            # word rate limits that way too, and a limit on calls in flight alone would leave
            # a rate limit worded so to fail tasks.
            and (isinstance(exc, RateLimitError) or exc.status_code == _TOO_MANY_REQUESTS)
        ):
            # A Retry-After longer than the policy honours is the circuit's business (tasks
            # then fail with CircuitWaitTooLongError); the pace holds only for what they wait.
            hold = exc.retry_after_s
            if hold is not None and hold > self.caller.retry.max_delay_s:
                hold = None
            learned.throttled(self.turn.epoch or 0, hold, sent_at=self.sent_at)
            return True
        return False

    def rejected(
        self,
        exc: CircuitOpenError,
        alarms: _AlarmBox | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        """The circuit turned the call away: wait to be woken when a probe closes it.

        No request left, so the declared turn it took goes back as the call ends (else a
        task parked behind an open circuit would spend one each time it looks again).
        """
        self.unsent = True
        if alarms is not None and exc.state in {CircuitState.OPEN, CircuitState.HALF_OPEN}:
            breaker = self.caller.pool.breaker(self.key)
            alarms.queue(
                self.caller._waiters(self.caller._probing, self.key),  # noqa: SLF001  # one mechanism
                loop,
                ready=lambda: breaker.state is CircuitState.CLOSED,
            )

    def crowded(
        self,
        alarms: _AlarmBox | None,
        loop: asyncio.AbstractEventLoop | None,
        error: BaseException | None = None,
    ) -> EndpointBusyError:
        """The provider was too busy beside the endpoint's other calls: wait for one to end.

        The limit is cut (as for any overload) and the task queues with those over the limit,
        woken when a call ends with room under it; no request counts against its budget. A
        429 still teaches the endpoint's pace: "too many concurrent requests" is sometimes
        how a provider words its rate limit, and concurrency alone would not fix that.
        """
        self.overloaded = self.refused = True
        if isinstance(error, RetryableError):
            self.learn(error)
        if alarms is not None:
            caller = self.caller
            limit = self.limit
            alarms.queue(
                caller._waiters(caller._busy, self.key),  # noqa: SLF001  # one mechanism
                loop,
                ready=lambda: limit.free > 0,
            )
        return EndpointBusyError(self.key, self.limit.limit)

    def settle(self) -> None:
        """Free the call's place; reconcile its tokens; count an answer for the learned pace."""
        if self.answer is not None:
            self.overloaded = False
            if self.turn.learned is not None:
                self.turn.learned.answered()
        self.limit.release(
            overloaded=self.overloaded,
            refused=self.refused,
            since=self.since,
            timed_out=self.timed_out,
            paced=self.paced,
        )
        if self.probe and self.answer is not None:
            self.limit.recovered()
        if self.turn.limiter is not None:
            if self.unsent:
                self.turn.limiter.cancel(self.turn.taken)
            else:
                self.turn.limiter.reconcile(self.turn.taken, self.answer)


def _give_back(turn: _Turn) -> None:
    """Hand back the declared-rate turn (request and tokens) of a request that was not sent."""
    if turn.limiter is not None:
        with contextlib.suppress(Exception):  # a shared bucket that is down has nothing to undo
            turn.limiter.cancel_waiting(turn.taken, turn.go_at)


_MIN_REFUSALS: Final = 8
"""Refusals in a row an endpoint may give (with no answer between) before they are failures."""


def _refusals_allowed(limit: int) -> int:
    """How many refusals with no answer between still read as "full", at *limit* in flight."""
    return max(2 * limit, _MIN_REFUSALS)


def _billed(request: ChatRequest, answer: ChatResponse) -> Usage:
    """What a budget counts for *answer*: its reported usage, each count missing estimated.

    A provider (or gateway) that reports no usage must not leave token and cost budgets
    unspent for ever: the input is estimated as a declared limit does (about four
    characters a token), the output from the text and tool calls returned. So is a count
    reported alone: adapters read one they cannot believe (over 2**40, not a number) as
    0, and a prompt of 0 tokens beside a real output count is not one (an empty answer's
    output estimate is 0).
    """
    usage = answer.usage
    if usage.input_tokens and usage.output_tokens:
        return usage
    return Usage(
        input_tokens=usage.input_tokens or _estimate(request),
        output_tokens=usage.output_tokens or estimate_output(answer),
    )


def _estimate(request: ChatRequest) -> int:
    """The request's input tokens, estimated before it is sent (see :mod:`aegis_gov._limits`)."""
    chars = sum(len(m.content) for m in request.messages)
    schemas = [(t.name, t.description, dict(t.input_schema)) for t in request.tools]
    if request.output_schema is not None:  # sent natively, beside the tools
        schemas.append((request.output_schema.name, "", dict(request.output_schema.schema)))
    return estimate_tokens(chars, request.system, tools_chars(schemas) if schemas else 0)


def _send(adapter: ChatAdapter, request: ChatRequest) -> ChatResponse:
    return send(adapter, request)


def _send_streaming(
    adapter: ChatAdapter, request: ChatRequest, sink: Sink, agent: str
) -> ChatResponse:
    """Stream one request, handing each chunk to *sink*; return the whole response."""
    response: ChatResponse | None = None
    sink.start_turn()
    for item in open_stream(adapter, request):
        if isinstance(item, ChatResponse):
            response = item
        elif item.text:
            sink(item.text)
    if response is None:  # the adapter contract promises a final response
        raise StreamInterruptedError(agent, RuntimeError("the stream ended without a response"))
    sink.end_turn(response)
    return response


async def _asend_either(
    adapter: ChatAdapter, request: ChatRequest, sink: Sink | None, agent: str
) -> ChatResponse:
    """One request, streamed into *sink* when there is one."""
    if sink is None:
        return await asend(adapter, request)
    return await _asend_streaming(adapter, request, sink, agent)


async def _asend_streaming(
    adapter: ChatAdapter, request: ChatRequest, sink: Sink, agent: str
) -> ChatResponse:
    response: ChatResponse | None = None
    sink.start_turn()
    stream = aopen_stream(adapter, request)
    async for item in stream:
        if isinstance(item, ChatResponse):
            response = item
        elif item.text:
            sink(item.text)
    if response is None:
        raise StreamInterruptedError(agent, RuntimeError("the stream ended without a response"))
    sink.end_turn(response)
    return response
