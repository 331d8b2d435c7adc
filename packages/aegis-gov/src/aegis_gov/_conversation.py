"""One agent's conversation as a sans-I/O generator.

The generator decides everything — retries and their waits, the tool-calling loop, the
checks of a structured answer (sent back while it is invalid), the events — and only *asks*
for I/O by yielding a command: make a request (:class:`ChatRequest`), wait (:class:`Sleep`)
or run a tool (:class:`RunTool`). The endpoint caller (:mod:`aegis_gov._caller`) steps it and
carries each command out itself, with threads or asyncio, so both share one behaviour. A
command's answer is its result, or the exception it raised as a :class:`Raised` value; the
conversation ends with an :data:`Outcome` value, never by raising.

Over 400 lines on purpose: the conversation's rules are one state machine.
"""

from __future__ import annotations

import json
import random
from collections.abc import Generator

import attrs
from aegis_adapters import (
    ChatResponse,
    Message,
    OutputSchema,
    RateLimitError,
    RetryableError,
    ToolCall,
    ToolSpec,
    Usage,
)
from aegis_breaker import BreakerError, CircuitOpenError

from aegis_gov._budget import BudgetSpentError
from aegis_gov._errors import (
    CircuitWaitTooLongError,
    EndpointBusyError,
    RetryAfterTooLongError,
    ToolLoopError,
)
from aegis_gov._events import EventHandler, FellBack, TaskRetrying, ToolCalled
from aegis_gov._outcome import Failure, Outcome, Raised
from aegis_gov._output import Invalid, OutputSpec, OutputValidationError
from aegis_gov._results import AgentResult, ToolCallRecord
from aegis_gov._retry import RetryPolicy
from aegis_gov._tool_errors import ToolCallLimitError, ToolError, ToolNotOfferedError

__all__ = ["ChatRequest", "Command", "Conversation", "RunTool", "Sleep"]

# A reply asking for more than this many times max_tool_calls_per_reply calls ends the task.
_FLOOD_FACTOR = 4
_MAX_LISTED_CHARS = 200  # a refusal names the agent's tools only while the list is short
_SPENT = "error: refused (max_tool_output_chars reached)"
_FELL_OVER = -1.0  # what _after returns when the conversation moved to its next endpoint
# How long a task queued for a busy endpoint waits before looking again if no call's end
# woke it (a safety net: a call's end wakes it first), at most RetryPolicy.max_delay_s.
_QUEUED_LOOK_S = 5.0

_FREE_429S_PER_ATTEMPT = 10
"""A task's 429s that cost no attempt are at most this many per ``RetryPolicy.max_attempts``."""


def _json_size(arguments: object) -> int:
    try:
        return len(json.dumps(arguments, default=repr))
    except (TypeError, ValueError, RecursionError):
        return len(repr(arguments))


@attrs.frozen
class ChatRequest:
    """Command: make one request to endpoint number ``endpoint`` of the agent.

    0 is the agent's own adapter; 1 and on are its fallbacks, in order. ``output_schema``
    is set only for an endpoint that takes it natively (others have it in ``system``).
    """

    messages: tuple[Message, ...]
    system: str | None
    tools: tuple[ToolSpec, ...]
    endpoint: int = 0
    output_schema: OutputSchema | None = None


@attrs.frozen
class Sleep:
    """Command: wait this many seconds before going on."""

    seconds: float


@attrs.frozen
class RunTool:
    """Command: run one tool call through the registry; the answer is its text result."""

    call: ToolCall


Command = ChatRequest | Sleep | RunTool


@attrs.define
class Conversation:
    """The state and rules of one agent answering one prompt."""

    agent: str
    prompt: str
    system: str | None
    tools: tuple[ToolSpec, ...]
    retry: RetryPolicy
    rng: random.Random
    emit: EventHandler
    endpoint: str
    task_id: str = ""
    fallbacks: tuple[str, ...] = ()
    fall_back_on_permanent_errors: bool = False
    max_tool_rounds: int = 8
    max_tool_calls_per_reply: int = 16
    max_tool_output_chars: int = 256_000
    output: OutputSpec | None = None
    output_retries: int = 2
    native_output: tuple[bool, ...] = ()  # by endpoint: whether it takes output_schema
    attempts: int = 0
    usage: Usage = Usage()
    tool_calls: list[ToolCallRecord] = attrs.Factory(list)
    _waited_s: float = 0.0
    _failures: int = 0
    _tool_output_chars: int = 0
    _rejections: int = 0
    _throttles: int = 0  # 429s on the last endpoint, which spend the wait budget only
    _served_mark: int | None = None  # the endpoint's answers at this task's last 429
    _using: int = 0  # which endpoint: 0 the agent's own, then its fallbacks
    _invalid_answers: int = 0
    _emitting: bool = attrs.field(init=False, default=True)

    def __attrs_post_init__(self) -> None:
        # An Emitter without a handler says so: then no event object is built at all.
        self._emitting = getattr(self.emit, "active", True)

    def steps(self) -> Generator[Command, object, Outcome]:
        """The conversation: yields commands, receives their answers, returns the outcome."""
        messages: list[Message] = [Message.user(self.prompt)]
        rounds = 0
        while True:
            response = yield from self._request(tuple(messages))
            if isinstance(response, Failure):
                return response
            if not response.tool_calls:
                text = response.text
                # (a plain-text agent's answer ends it: _answer's first case, without a call)
                answer = self._result(text, text) if self.output is None else self._answer(text)
                if isinstance(answer, Invalid):
                    # Sent back with what was wrong, for the model to correct.
                    messages.append(Message.assistant(response.text))
                    messages.append(Message.user(answer.problem))
                    continue
                return answer
            rounds += 1
            if rounds > self.max_tool_rounds:
                return self._failure(ToolLoopError(self.agent, self.max_tool_rounds))
            flood = self._flood(response.tool_calls)
            if flood is not None:
                return self._failure(flood)
            messages.append(Message.assistant(response.text, response.tool_calls))
            failure = yield from self._run_tools(response.tool_calls, messages)
            if failure is not None:
                return failure

    def _run_tools(
        self, calls: tuple[ToolCall, ...], messages: list[Message]
    ) -> Generator[Command, object, Failure | None]:
        """Answer one reply's tool calls, adding each result to *messages*; None unless a bug."""
        offered = frozenset(spec.name for spec in self.tools)
        for index, call in enumerate(calls):
            # Every call gets an answer (providers require one per call), but only calls
            # within the agent's tools and limits are run.
            refusal = self._refusal(call, index, len(calls), offered)
            if refusal is not None:
                # Refusals are fed back too, so they are short and counted.
                text, error = self._within_budget(f"error: {refusal}"), str(refusal)
            else:
                result = yield RunTool(call)
                if isinstance(result, Raised):
                    if not isinstance(result.error, ToolError):
                        return self._failure(result.error)  # a bug, not the model's doing
                    text = self._within_budget(f"error: {result.error}")
                    error = str(result.error)
                else:
                    text, error = self._within_budget(str(result)), None
            self.tool_calls.append(ToolCallRecord(call.name, call.arguments, text, error))
            if self._emitting:
                self.emit(
                    ToolCalled(self.task_id, self.agent, call.name, call.arguments, text, error)
                )
            messages.append(Message.tool_result(call, text, is_error=error is not None))
        return None

    def _answer(self, text: str) -> Outcome | Invalid:
        """The conversation's end, or (when retries are left) the feedback on an invalid answer."""
        if self.output is None:
            return self._result(text, text)
        value = self.output.check(text)
        if not isinstance(value, Invalid):
            return self._result(self.output.to_json_text(value), value)
        self._invalid_answers += 1
        if self._invalid_answers > self.output_retries:
            return self._failure(
                OutputValidationError(self.agent, self._invalid_answers, value.problem, text)
            )
        if self._emitting:
            self.emit(
                TaskRetrying(
                    self.task_id,
                    self.agent,
                    self.attempts + 1,
                    0.0,
                    f"invalid output: {value.problem}",
                )
            )
        return Invalid(self.output.feedback(value.problem))

    def _result(self, text: str, value: object) -> AgentResult:
        return AgentResult(
            output=text,
            agent=self.agent,
            usage=self.usage,
            attempts=self.attempts,
            endpoint=self.endpoint if self._using == 0 else self._endpoint_key(),
            tool_calls=tuple(self.tool_calls),
            value=value,
        )

    def _ask(self, messages: tuple[Message, ...]) -> ChatRequest:
        """The request to the current endpoint: the output schema sent natively, or prompted."""
        if self.output is None:
            return ChatRequest(messages, self.system, self.tools, self._using)
        if self._using < len(self.native_output) and self.native_output[self._using]:
            return ChatRequest(messages, self.system, self.tools, self._using, self.output.request)
        prompt = "\n\n".join(p for p in (self.system, self.output.instructions()) if p)
        return ChatRequest(messages, prompt, self.tools, self._using)

    def _flood(self, calls: tuple[ToolCall, ...]) -> ToolCallLimitError | None:
        """Why a reply's tool calls are too many or too big to even answer, if they are.

        Every call needs an answer, and the calls are echoed back with the answers, so a
        reply far past the limits would make the next request huge: it ends the
        conversation instead.
        """
        if len(calls) > _FLOOD_FACTOR * self.max_tool_calls_per_reply:
            return ToolCallLimitError(
                f"the reply asked for {len(calls)} tool calls, more than {_FLOOD_FACTOR} x "
                f"max_tool_calls_per_reply={self.max_tool_calls_per_reply}; not answered",
                tool_name=calls[0].name[:64],
                limit="max_tool_calls_per_reply",
            )
        size = sum(len(c.id) + len(c.name) + _json_size(c.arguments) for c in calls)
        if size > self.max_tool_output_chars:
            return ToolCallLimitError(
                f"the reply's tool calls take {size} characters, more than "
                f"max_tool_output_chars={self.max_tool_output_chars}; not answered",
                tool_name=calls[0].name[:64],
                limit="max_tool_output_chars",
            )
        return None

    def _refusal(
        self, call: ToolCall, index: int, calls: int, offered: frozenset[str]
    ) -> ToolError | None:
        """Why *call* must not run, or None when it may."""
        if call.name not in offered:
            given = ", ".join(sorted(offered)) or "none"
            if len(given) > _MAX_LISTED_CHARS:
                given = f"{len(offered)} tools"
            return ToolNotOfferedError(
                f"refused: agent {self.agent!r} was not given this tool (its tools: {given})",
                tool_name=call.name[:64],
                agent=self.agent,
            )
        if index >= self.max_tool_calls_per_reply:
            return ToolCallLimitError(
                f"refused: the reply asked for {calls} tool calls and only the first "
                f"{self.max_tool_calls_per_reply} are run (max_tool_calls_per_reply)",
                tool_name=call.name,
                limit="max_tool_calls_per_reply",
            )
        if self._tool_output_chars >= self.max_tool_output_chars:
            return ToolCallLimitError(
                f"refused: the tools' results already add up to {self.max_tool_output_chars} "
                "characters, the most this conversation feeds back (max_tool_output_chars)",
                tool_name=call.name,
                limit="max_tool_output_chars",
            )
        return None

    def _within_budget(self, text: str) -> str:
        """*text*, cut to what is left of the conversation's tool-output budget.

        Once the budget is spent, every later answer (each call still needs one) is the
        same short refusal.
        """
        left = self.max_tool_output_chars - self._tool_output_chars
        if left <= 0:
            return _SPENT
        if len(text) > left:
            self._tool_output_chars = self.max_tool_output_chars
            return text[:left] + (
                f"\n[cut: the tools' results reached {self.max_tool_output_chars} characters, "
                "the most this conversation feeds back (max_tool_output_chars)]"
            )
        self._tool_output_chars += len(text)
        return text

    def _request(
        self, messages: tuple[Message, ...]
    ) -> Generator[Command, object, ChatResponse | Failure]:
        """One request, retried as the policy allows, falling over to the next endpoint."""
        while True:
            self.attempts += 1
            answer = yield self._ask(messages)
            if isinstance(answer, ChatResponse):
                used = self.usage  # (fields, not total_tokens: a property call per request)
                self.usage = (
                    used + answer.usage if used.input_tokens or used.output_tokens else answer.usage
                )
                return answer
            if isinstance(answer, Raised):
                error, served, answering = answer.error, answer.served, answer.answering
            else:
                error, served, answering = TypeError(repr(answer)), None, False
            delay = self._after(error, served, answering=answering)
            if isinstance(delay, Failure):
                return delay
            if delay == _FELL_OVER:
                continue
            if delay is None:
                if self._fall_over(error):
                    continue
                return self._failure(self._too_long(error))
            if self._emitting:
                self.emit(
                    TaskRetrying(
                        self.task_id,
                        self.agent,
                        self.attempts + 1,
                        delay,
                        str(error),
                        rejected=isinstance(error, BreakerError),
                    )
                )
            self._waited_s += delay
            yield Sleep(delay)

    def _after(  # noqa: C901, PLR0911, PLR0912  # one per kind
        self, error: Exception, served: int | None = None, *, answering: bool = False
    ) -> float | Failure | None:
        """What a failed request leads to.

        A wait, None (no wait allowed), a fall-over (:data:`_FELL_OVER`) or the conversation's
        end (a :class:`Failure`). *served*: see :class:`Raised`.
        """
        if isinstance(error, BudgetSpentError):
            self.attempts -= 1  # refused before sending
            return self._failure(error)
        if isinstance(error, CircuitOpenError):
            # Rejected without a request: not an attempt, but it spends the delay budget.
            self.attempts -= 1
            if self._fall_over(error):
                return _FELL_OVER
            delay, budget = self._circuit_delay(error)
            if delay is None:
                return self._failure(
                    CircuitWaitTooLongError(
                        error.breaker_name, error.retry_after_s, error.state, budget
                    )
                )
            return delay
        if isinstance(error, EndpointBusyError):
            # The endpoint is at its adaptive limit: others' calls are in flight. Look again
            # soon; this wait is a queue, not a failure, so it spends no budget -- unless the
            # queue has not moved for the whole budget (a call that never ends).
            self.attempts -= 1
            if error.stalled_s > self.retry.max_total_delay_s:
                return _FELL_OVER if self._fall_over(error) else self._failure(error)
            delay = self._queue_wait(error)
            self._waited_s -= delay
            return delay
        if isinstance(error, BreakerError):  # a full bulkhead, a declared rate: no request
            self.attempts -= 1
            # A declared rate's turn that is further off than the budget left is known now
            # (RateLimitExceededError says when): give up or fall back at once, not by polling.
            turn_in = getattr(error, "retry_after_s", None)
            if (
                isinstance(turn_in, float)
                and self._waited_s + turn_in > self.retry.max_total_delay_s
            ):
                return _FELL_OVER if self._fall_over(error) else self._failure(error)
            return self._delay(None, rejected=True)
        if (
            isinstance(error, RateLimitError)
            and self._using >= len(self.fallbacks)
            and self._throttles < _FREE_429S_PER_ATTEMPT * self.retry.max_attempts
            and self._pacing(served, answering=answering)
        ):
            # A 429 with nowhere else to go, while the endpoint answers others: the provider
            # is up and asks for a slower pace (which the endpoint's pace now keeps). Failing
            # the task would not help, so it is a wait, not a failed attempt: only the wait
            # budget bounds it (and, against tiny delays, ten per allowed attempt). With a
            # fallback left, or from an endpoint that answered nobody since this task's last
            # 429, it counts.
            self._throttles += 1
            return self.retry.next_delay_s(
                self._throttles, error.retry_after_s, waited_s=self._waited_s, rng=self.rng
            )
        if (
            isinstance(error, RateLimitError)
            and error.retry_after_s is not None
            and error.retry_after_s > self.retry.initial_delay_s
            and self._fall_over(error)
        ):
            # Asked to wait longer than a retry's first wait, with a fallback left: move on
            # now, as a task arriving at the held endpoint does, rather than sleep out the
            # Retry-After (and again after the next 429) before falling over.
            return _FELL_OVER
        if isinstance(error, RetryableError):
            self._failures += 1
            if self._failures < self.retry.max_attempts:
                return self._delay(error.retry_after_s, rejected=False)
        elif not self.fall_back_on_permanent_errors:
            return self._failure(error)
        return _FELL_OVER if self._fall_over(error) else self._failure(error)

    def _too_long(self, error: Exception) -> Exception:
        """*error*, or :class:`RetryAfterTooLongError` if its Retry-After is what ended it."""
        if isinstance(error, RateLimitError) and not isinstance(error, RetryAfterTooLongError):
            after = error.retry_after_s
            if after is not None and after > self.retry.max_delay_s:
                return RetryAfterTooLongError(error, self.retry.max_delay_s)
        return error

    def _queue_wait(self, error: EndpointBusyError) -> float:
        """How long a task turned away by a busy endpoint waits before looking again.

        Queued to be woken when a call ends, it needs no quick look: the wait is a safety
        net. Looking every half second (the first retry's wait) cost about 1 ms of CPU a
        task with hundreds queued, and each look sent the task to the back of the queue.
        """
        base = self.retry.initial_delay_s
        if error.queued:
            base = max(base, min(_QUEUED_LOOK_S, self.retry.max_delay_s))
        return self.rng.uniform(0.5, 1.0) * base

    def _pacing(self, served: int | None, *, answering: bool = False) -> bool:
        """Whether a 429 is the provider pacing: its endpoint answered others since the last.

        The task's first 429 is taken as pacing, and so is one from an endpoint that
        answered a call within its breaker's recovery timeout (*answering*: a slow provider
        answers less often than a task retries). Otherwise a 429 is pacing only if the
        endpoint answered a request since the task's previous 429; a provider that answers
        nobody is refusing, and its 429s count as failed attempts.
        """
        last, self._served_mark = self._served_mark, served
        return answering or (served is not None and (last is None or served > last))

    def _endpoint_key(self) -> str:
        return self.endpoint if self._using == 0 else self.fallbacks[self._using - 1]

    def _fall_over(self, error: Exception) -> bool:
        """Move to the next fallback endpoint, with a fresh retry budget; False if none is left."""
        if self._using >= len(self.fallbacks):
            return False
        was = self._endpoint_key()
        self._using += 1
        self._failures = 0
        self._waited_s = 0.0
        self._rejections = 0
        if self._emitting:
            self.emit(FellBack(self.task_id, self.agent, was, self._endpoint_key(), str(error)))
        return True

    def _failure(self, error: Exception) -> Failure:
        return Failure(error, self.attempts, self.usage, tuple(self.tool_calls))

    def given_up(self, error: Exception, *, sent: int | None = None) -> Failure:
        """The failure *error* ends this conversation with if its run gives it up now.

        What it did so far counts: its usage, tool calls and requests -- *sent*, if the
        caller counted those that left (a request waiting to go is counted here already).
        """
        return Failure(
            error, self.attempts if sent is None else sent, self.usage, tuple(self.tool_calls)
        )

    def _circuit_delay(self, error: CircuitOpenError) -> tuple[float | None, str]:
        """How long to wait for an open circuit, or None and the budget that forbids it."""
        left = self.retry.max_total_delay_s - self._waited_s
        if error.state == "half_open":
            # A probe is deciding: its worst case (half_open_max_wait_s) is no guide, as it
            # usually settles at once. Look again at the backoff cadence.
            wait = max(
                self.rng.uniform(0.0, self.retry.backoff_cap_s(self._rejections + 1)),
                self.retry.initial_delay_s,
            )
            self._rejections += 1
        else:
            wait = max(error.retry_after_s, self.retry.initial_delay_s)
            if error.retry_after_s > self.retry.max_delay_s:
                return None, (
                    f"the circuit asks for {error.retry_after_s:.3g} s, more than "
                    f"RetryPolicy.max_delay_s={self.retry.max_delay_s:g}"
                )
        if wait > left:
            return None, (
                f"RetryPolicy.max_total_delay_s={self.retry.max_total_delay_s:g} would be "
                f"exceeded (already waited {self._waited_s:.3g} s)"
            )
        return wait, ""

    def _delay(self, retry_after_s: float | None, *, rejected: bool) -> float | None:
        """How long to wait before the next request, or None to give up."""
        delay = self.retry.next_delay_s(
            max(self._failures, 1), retry_after_s, waited_s=self._waited_s, rng=self.rng
        )
        if delay is not None and rejected:
            # A full bulkhead costs nothing: wait at least the initial delay, never spin.
            delay = max(delay, self.retry.initial_delay_s)
            if self._waited_s + delay > self.retry.max_total_delay_s:
                return None
        return delay
