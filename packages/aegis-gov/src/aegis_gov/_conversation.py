"""One agent's conversation as a sans-I/O generator, and the sync and async drivers around it.

The generator decides everything — retries and their waits, the tool-calling loop, the
events — and only *asks* for I/O by yielding a command: make a request (:class:`ChatRequest`),
wait (:class:`Sleep`) or run a tool (:class:`RunTool`). :func:`drive` and :func:`adrive`
carry the commands out with threads or asyncio, so both share one behaviour.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Generator

import attrs
from aegis_adapters import (
    ChatResponse,
    Message,
    RateLimitError,
    RetryableError,
    ToolCall,
    ToolSpec,
    Usage,
)
from aegis_breaker import BreakerError, CircuitOpenError

from aegis_gov._errors import ToolLoopError
from aegis_gov._events import EventHandler, TaskRetrying, ToolCalled
from aegis_gov._results import AgentResult, ToolCallRecord
from aegis_gov._retry import RetryPolicy
from aegis_gov._tools import ToolCallLimitError, ToolError, ToolNotOfferedError


@attrs.frozen
class ChatRequest:
    """Command: make one request to the agent's adapter."""

    messages: tuple[Message, ...]
    system: str | None
    tools: tuple[ToolSpec, ...]


@attrs.frozen
class Sleep:
    """Command: wait this many seconds before going on."""

    seconds: float


@attrs.frozen
class RunTool:
    """Command: run one tool call through the registry; the answer is its text result."""

    call: ToolCall


Command = ChatRequest | Sleep | RunTool


class AgentFailedError(Exception):
    """Internal: carries the error that ended a conversation plus what it had done so far."""

    def __init__(
        self, error: Exception, attempts: int, usage: Usage, tool_calls: tuple[ToolCallRecord, ...]
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts
        self.usage = usage
        self.tool_calls = tool_calls


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
    max_tool_rounds: int = 8
    max_tool_calls_per_reply: int = 16
    max_tool_output_chars: int = 256_000
    attempts: int = 0
    usage: Usage = Usage()
    tool_calls: list[ToolCallRecord] = attrs.Factory(list)
    _waited_s: float = 0.0
    _failures: int = 0
    _tool_output_chars: int = 0

    def steps(self) -> Generator[Command, object, AgentResult]:
        """The conversation: yields commands, receives their answers, returns the result."""
        try:
            return (yield from self._talk())
        except Exception as exc:
            raise AgentFailedError(exc, self.attempts, self.usage, tuple(self.tool_calls)) from exc

    def _talk(self) -> Generator[Command, object, AgentResult]:
        messages: list[Message] = [Message.user(self.prompt)]
        rounds = 0
        while True:
            response = yield from self._request(
                ChatRequest(tuple(messages), self.system, self.tools)
            )
            if not response.tool_calls:
                return AgentResult(
                    output=response.text,
                    agent=self.agent,
                    usage=self.usage,
                    attempts=self.attempts,
                    endpoint=self.endpoint,
                    tool_calls=tuple(self.tool_calls),
                )
            rounds += 1
            if rounds > self.max_tool_rounds:
                raise ToolLoopError(self.agent, self.max_tool_rounds)
            messages.append(Message.assistant(response.text, response.tool_calls))
            offered = frozenset(spec.name for spec in self.tools)
            for index, call in enumerate(response.tool_calls):
                # Every call gets an answer (providers require one per call), but only calls
                # within the agent's tools and limits are run.
                refusal = self._refusal(call, index, len(response.tool_calls), offered)
                if refusal is not None:
                    text, error = f"error: {refusal}", str(refusal)
                else:
                    try:
                        result = yield RunTool(call)
                        text, error = self._within_budget(str(result)), None
                    except ToolError as exc:
                        text, error = self._within_budget(f"error: {exc}"), str(exc)
                self.tool_calls.append(ToolCallRecord(call.name, call.arguments, text, error))
                self.emit(
                    ToolCalled(self.task_id, self.agent, call.name, call.arguments, text, error)
                )
                messages.append(Message.tool_result(call, text, is_error=error is not None))

    def _refusal(
        self, call: ToolCall, index: int, calls: int, offered: frozenset[str]
    ) -> ToolError | None:
        """Why *call* must not run, or None when it may."""
        if call.name not in offered:
            given = ", ".join(sorted(offered)) or "none"
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
        """*text*, cut to what is left of the conversation's tool-output budget."""
        left = self.max_tool_output_chars - self._tool_output_chars
        if len(text) > left:
            text = text[:left] + (
                f"\n[cut: the tools' results reached {self.max_tool_output_chars} characters, "
                "the most this conversation feeds back (max_tool_output_chars)]"
            )
            self._tool_output_chars = self.max_tool_output_chars
        else:
            self._tool_output_chars += len(text)
        return text

    def _request(self, request: ChatRequest) -> Generator[Command, object, ChatResponse]:
        """One request, retried as the policy allows."""
        while True:
            try:
                self.attempts += 1
                answer = yield request
            except CircuitOpenError as exc:
                # Rejected without a request: not an attempt, but it spends the delay budget.
                self.attempts -= 1
                yield from self._wait_or_raise(exc, exc.retry_after_s, rejected=True)
                continue
            except BreakerError as exc:  # a full bulkhead: no request was made either
                self.attempts -= 1
                yield from self._wait_or_raise(exc, None, rejected=True)
                continue
            except RetryableError as exc:
                self._failures += 1
                if self._failures >= self.retry.max_attempts:
                    raise
                yield from self._wait_or_raise(exc, exc.retry_after_s, rejected=False)
                continue
            assert isinstance(answer, ChatResponse)  # noqa: S101  # the drivers' contract
            self.usage = self.usage + answer.usage if self.usage.total_tokens else answer.usage
            return answer

    def _wait_or_raise(
        self, exc: Exception, retry_after_s: float | None, *, rejected: bool
    ) -> Generator[Command, object, None]:
        if rejected and retry_after_s is not None:
            # Turned away without a request (an open breaker): wait as long as it says, and
            # never spin. No backoff: nothing failed, so there is nothing to back off from.
            wait = max(retry_after_s, self.retry.initial_delay_s)
            too_long = retry_after_s > self.retry.max_delay_s
            delay = (
                None if too_long or self._waited_s + wait > self.retry.max_total_delay_s else wait
            )
        else:
            delay = self.retry.next_delay_s(
                max(self._failures, 1), retry_after_s, waited_s=self._waited_s, rng=self.rng
            )
            if delay is not None and rejected:
                # A full bulkhead costs nothing either: wait at least the initial delay.
                delay = max(delay, self.retry.initial_delay_s)
                if self._waited_s + delay > self.retry.max_total_delay_s:
                    delay = None
        if delay is None:
            raise exc
        self.emit(
            TaskRetrying(
                self.task_id, self.agent, self.attempts + 1, delay, str(exc), rejected=rejected
            )
        )
        self._waited_s += delay
        yield Sleep(delay)


def retry_after_hint(exc: BaseException) -> float | None:
    """The wait a rate limit asks every caller of that endpoint to respect, if any."""
    if isinstance(exc, RateLimitError) and exc.retry_after_s:
        return exc.retry_after_s
    return None


def drive(
    steps: Generator[Command, object, AgentResult],
    *,
    chat: Callable[[ChatRequest], ChatResponse],
    run_tool: Callable[[ToolCall], str],
    sleep: Callable[[float], object],
) -> AgentResult:
    """Carry out a conversation's commands synchronously; return its result."""
    answer: object = None
    error: Exception | None = None
    while True:
        try:
            command = steps.throw(error) if error is not None else steps.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        answer, error = None, None
        try:
            if isinstance(command, ChatRequest):
                answer = chat(command)
            elif isinstance(command, Sleep):
                sleep(command.seconds)
            else:
                answer = run_tool(command.call)
        except Exception as exc:  # noqa: BLE001  # handed to the conversation to decide
            error = exc


async def adrive(
    steps: Generator[Command, object, AgentResult],
    *,
    chat: Callable[[ChatRequest], Awaitable[ChatResponse]],
    run_tool: Callable[[ToolCall], Awaitable[str]],
    sleep: Callable[[float], Awaitable[object]],
) -> AgentResult:
    """Carry out a conversation's commands on the running event loop; return its result."""
    answer: object = None
    error: Exception | None = None
    while True:
        try:
            command = steps.throw(error) if error is not None else steps.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        answer, error = None, None
        try:
            if isinstance(command, ChatRequest):
                answer = await chat(command)
            elif isinstance(command, Sleep):
                await sleep(command.seconds)
            else:
                answer = await run_tool(command.call)
        except Exception as exc:  # noqa: BLE001  # handed to the conversation to decide
            error = exc
