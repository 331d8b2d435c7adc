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
from aegis_gov._tools import ToolError


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
    attempts: int = 0
    usage: Usage = Usage()
    tool_calls: list[ToolCallRecord] = attrs.Factory(list)
    _waited_s: float = 0.0
    _failures: int = 0

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
            for call in response.tool_calls:
                try:
                    result = yield RunTool(call)
                    text, error = str(result), None
                except ToolError as exc:
                    text, error = f"error: {exc}", str(exc)
                self.tool_calls.append(ToolCallRecord(call.name, call.arguments, text, error))
                self.emit(
                    ToolCalled(self.task_id, self.agent, call.name, call.arguments, text, error)
                )
                messages.append(Message.tool_result(call, text, is_error=error is not None))

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
        delay = self.retry.next_delay_s(
            max(self._failures, 1), retry_after_s, waited_s=self._waited_s, rng=self.rng
        )
        if delay is not None and rejected:
            # A rejection costs nothing, so never spin: wait at least the initial delay.
            delay = max(delay, self.retry.initial_delay_s)
            if self._waited_s + delay > self.retry.max_total_delay_s:
                delay = None
        if delay is None:
            raise exc
        self.emit(TaskRetrying(self.task_id, self.agent, self.attempts + 1, delay, str(exc)))
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
