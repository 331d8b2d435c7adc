"""The span of one agent's conversation and of what it does: requests, provider calls, tools.

Made by :mod:`aegis_gov._tracing` (which holds the tracer and the run's span) for each task of
a traced run, or for a traced ``run_agent``; the functions here import :mod:`opentelemetry`
lazily, and only traced runs reach them.

A little over 400 lines: the sync and async twin of each wrapper sit side by side.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from aegis_adapters import ChatAdapter, ChatResponse, Endpoint, Message, ToolCall, Usage

from aegis_gov._conversation import ChatRequest
from aegis_gov._errors import EndpointBusyError
from aegis_gov._events import EventHandler, FellBack, RunEvent, TaskRetrying
from aegis_gov._outcome import Outcome
from aegis_gov._results import AgentResult

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanKind, Tracer

__all__ = ["TaskTrace", "mark_failed"]

_MAX_ERROR_CHARS = 500


class TaskTrace:
    """One agent's conversation: its span and the wrappers that make its children.

    A conversation makes one request at a time, so the attempt in progress is plain state.
    """

    def __init__(
        self,
        tracer: Tracer,
        *,
        agent: str,
        endpoint: Endpoint,
        task_id: str | None = None,
        parent: Context | None = None,
        capture_content: bool = False,
    ) -> None:
        """Prepare (not start) the span of *agent*'s conversation with *endpoint*.

        *parent* is the run's context (None: the current span's).
        """
        self._tracer = tracer
        self._agent = agent
        self._endpoint = endpoint
        self._task_id = task_id
        self._parent = parent
        self._capture = capture_content
        self._attempts = 0
        self._span: Span | None = None
        self._context: Context | None = None
        self._attempt: Context | None = None
        self._attempt_now: Span | None = None

    # -- the task span --------------------------------------------------------------------

    def _start(self) -> None:
        """Start the span, under the run's span (or the current span for a single agent)."""
        from opentelemetry import trace  # noqa: PLC0415

        attributes: dict[str, str | int] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": self._agent,
            "gen_ai.provider.name": self._endpoint.provider,
            "gen_ai.request.model": self._endpoint.model,
        }
        if self._task_id is not None:
            attributes["aegis.task.id"] = self._task_id
        self._span = self._tracer.start_span(
            f"invoke_agent {self._agent}",
            context=self._parent,
            attributes=attributes,
        )
        self._context = trace.set_span_in_context(self._span)

    def _crashed(self, exc: BaseException) -> None:
        """An exception escaped the conversation (a bug, or asyncio cancelling the task)."""
        if self._span is not None:
            mark_failed(self._span, exc, record=self._capture)

    def run(self, body: Callable[[], Outcome], prompt: str) -> Outcome:
        """``body()``, the conversation answering *prompt*, in the task's span."""
        self._start()
        try:
            return self._done(body(), prompt=prompt)
        except BaseException as exc:
            self._crashed(exc)
            raise
        finally:
            self._end()

    async def arun(self, body: Callable[[], Awaitable[Outcome]], prompt: str) -> Outcome:
        """The asyncio twin of :meth:`run`."""
        self._start()
        try:
            return self._done(await body(), prompt=prompt)
        except BaseException as exc:
            self._crashed(exc)
            raise
        finally:
            self._end()

    def _end(self) -> None:
        if self._span is not None:
            self._span.end()

    def _done(self, outcome: Outcome, *, prompt: str) -> Outcome:
        """Record the conversation's *outcome* on the span; return it."""
        span = self._span
        if span is None:
            return outcome
        _usage(span, outcome.usage)
        span.set_attribute("aegis.attempts", outcome.attempts)
        if isinstance(outcome, AgentResult):
            if outcome.endpoint:
                span.set_attribute("aegis.endpoint", outcome.endpoint)
            if self._capture:
                span.set_attribute(
                    "gen_ai.input.messages", _capped(_messages([Message.user(prompt)]))
                )
                span.set_attribute(
                    "gen_ai.output.messages", _messages([Message.assistant(outcome.output)])
                )
        else:
            mark_failed(span, outcome.error, record=self._capture)  # messages quote content
        return outcome

    def observe(self, emit: EventHandler) -> EventHandler:
        """*emit*, also recording retries and fallbacks as events of the task's span."""

        def observed(event: RunEvent) -> None:
            span = self._span
            if span is not None:
                if isinstance(event, TaskRetrying):
                    span.add_event(
                        "aegis.retry",
                        {
                            "aegis.attempt": event.attempt,
                            "aegis.retry.delay_s": event.delay_s,
                            "aegis.retry.rejected": event.rejected,
                            **self._error_text("aegis.retry.error", event.error),
                        },
                    )
                elif isinstance(event, FellBack):
                    span.add_event(
                        "aegis.fallback",
                        {
                            "aegis.fallback.from": event.from_endpoint,
                            "aegis.fallback.to": event.to_endpoint,
                            **self._error_text("aegis.fallback.error", event.error),
                        },
                    )
            emit(event)

        return observed

    def _error_text(self, key: str, error: str) -> dict[str, str]:
        """An error's message as an attribute, only when content is captured.

        Providers' and validators' messages quote what was sent or answered (an invalid
        answer, a rejected prompt), so they are content.
        """
        return {key: error[:_MAX_ERROR_CHARS]} if self._capture else {}

    # -- attempts and provider calls --------------------------------------------------------

    @contextlib.contextmanager
    def attempt(self, request: ChatRequest) -> Iterator[None]:
        """The block, one request of the conversation, in an ``aegis.attempt`` span.

        The provider call (:meth:`call`), if the request gets that far, is its child.
        """
        from opentelemetry import trace  # noqa: PLC0415

        span = self._tracer.start_span(
            "aegis.attempt",
            context=self._context,
            attributes={"aegis.endpoint.index": request.endpoint},
        )
        self._attempt_now = span
        self._attempt = trace.set_span_in_context(span)
        try:
            yield
        except EndpointBusyError:
            # Queued behind the endpoint's limit: a wait, not a failure (a provider's refusal
            # is marked failed on the provider call's own span, the child of this one).
            span.set_attribute("aegis.attempt.queued", True)  # noqa: FBT003  # a span attribute
            raise
        except BaseException as exc:
            # The provider call (if one was made) holds the exception event; not again here.
            mark_failed(span, exc, record=self._capture, event=False)
            raise
        finally:
            self._attempt = self._attempt_now = None
            span.end()

    def call(
        self,
        send: Callable[[], ChatResponse],
        adapter: ChatAdapter,
        request: ChatRequest,
        *,
        streaming: bool,
    ) -> ChatResponse:
        """``send()``, the provider call of the attempt in progress, in a ``chat`` span."""
        span = self._call_span(adapter, request, streaming=streaming)
        with _current(span, record=self._capture):
            response = send()
        self._answered(span, response)
        return response

    async def acall(
        self,
        send: Callable[[], Awaitable[ChatResponse]],
        adapter: ChatAdapter,
        request: ChatRequest,
        *,
        streaming: bool,
    ) -> ChatResponse:
        """The asyncio twin of :meth:`call`."""
        span = self._call_span(adapter, request, streaming=streaming)
        with _current(span, record=self._capture):
            response = await send()
        self._answered(span, response)
        return response

    def _call_span(self, adapter: ChatAdapter, request: ChatRequest, *, streaming: bool) -> Span:
        # Numbered like the conversation's attempts: a request the breaker, the bulkhead or
        # the budget turned away is an attempt span without a number (and without a call).
        self._attempts += 1
        if self._attempt_now is not None:
            self._attempt_now.set_attribute("aegis.attempt", self._attempts)
        endpoint = adapter.endpoint
        attributes: dict[str, str | int | bool] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": endpoint.provider,
            "gen_ai.request.model": endpoint.model,
        }
        address = _server(endpoint.base_url)
        if address is not None:
            attributes["server.address"], attributes["server.port"] = address
        if streaming:
            attributes["gen_ai.request.stream"] = True
        span = self._tracer.start_span(
            f"chat {endpoint.model}",
            context=self._attempt if self._attempt is not None else self._context,
            kind=_client_kind(),
            attributes=attributes,
        )
        if self._capture:
            span.set_attribute("gen_ai.input.messages", _capped(_messages(request.messages)))
            if request.system:
                span.set_attribute(
                    "gen_ai.system_instructions",
                    json.dumps([{"type": "text", "content": request.system}]),
                )
        return span

    def _answered(self, span: Span, response: ChatResponse) -> None:
        if response.model:
            span.set_attribute("gen_ai.response.model", response.model)
        if response.stop_reason is not None:
            span.set_attribute("gen_ai.response.finish_reasons", [response.stop_reason])
        _usage(span, response.usage)
        if self._capture:
            reply = Message.assistant(response.text, response.tool_calls)
            span.set_attribute("gen_ai.output.messages", _capped(_messages([reply])))
        span.end()

    # -- tools ----------------------------------------------------------------------------

    def tool(self, call: ToolCall, run: Callable[[], str]) -> str:
        """``run()``, which runs tool *call*, in an ``execute_tool`` span."""
        span = self._tool_span(call)
        with _current(span, record=self._capture):
            result = run()
        return self._tool_done(span, result)

    async def atool(self, call: ToolCall, run: Callable[[], Awaitable[str]]) -> str:
        """The asyncio twin of :meth:`tool`."""
        span = self._tool_span(call)
        with _current(span, record=self._capture):
            result = await run()
        return self._tool_done(span, result)

    def _tool_span(self, call: ToolCall) -> Span:
        span = self._tracer.start_span(
            f"execute_tool {call.name}",
            context=self._context,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": call.name,
                "gen_ai.tool.call.id": call.id,
                "gen_ai.tool.type": "function",
            },
        )
        if self._capture:
            span.set_attribute("gen_ai.tool.call.arguments", _capped(_json(call.arguments)))
        return span

    def _tool_done(self, span: Span, result: str) -> str:
        if self._capture:
            span.set_attribute("gen_ai.tool.call.result", _capped(result))
        span.end()
        return result


@contextlib.contextmanager
def _current(span: Span, *, record: bool) -> Iterator[None]:
    """Make *span* current around the block (on this thread or task); end it on an error.

    The error is recorded with its message when *record* (see :func:`mark_failed`).
    """
    from opentelemetry import trace  # noqa: PLC0415

    try:
        with trace.use_span(span, end_on_exit=False, record_exception=False):
            yield
    except BaseException as exc:
        mark_failed(span, exc, record=record)
        span.end()
        raise


def mark_failed(span: Span, exc: BaseException, *, record: bool, event: bool = True) -> None:
    """Mark *span* as ended by *exc*: ``error.type`` and an ERROR status.

    With *event*, the span gets an exception event; with *record*, that event and the status
    carry the message and stack trace too (only when content is captured).
    """
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

    if not span.is_recording():
        return
    span.set_attribute("error.type", type(exc).__qualname__)
    if record:
        if event:
            span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, str(exc)[:_MAX_ERROR_CHARS]))
    else:  # the type only: messages quote content (an answer, a prompt, an argument)
        if event:
            span.add_event("exception", {"exception.type": type(exc).__qualname__})
        span.set_status(Status(StatusCode.ERROR))


def _client_kind() -> SpanKind:
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    return SpanKind.CLIENT


def _usage(span: Span, usage: Usage) -> None:
    span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)


def _server(base_url: str) -> tuple[str, int] | None:
    """The host and port of an endpoint's URL, when it has them."""
    try:
        parts = urlsplit(base_url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.hostname, port


def _json(value: object) -> str:
    return json.dumps(value, default=repr, ensure_ascii=False)


_MAX_CONTENT_CHARS: Final = 65_536
"""The most of one content attribute recorded: exporters refuse oversized spans."""


def _capped(text: str) -> str:
    """*text*, cut to :data:`_MAX_CONTENT_CHARS` with a note saying how much was left out."""
    if len(text) <= _MAX_CONTENT_CHARS:
        return text
    return f"{text[:_MAX_CONTENT_CHARS]}... [{len(text) - _MAX_CONTENT_CHARS} more characters]"


def _messages(messages: Sequence[Message]) -> str:
    """Messages as the GenAI conventions' JSON: a role and its parts."""
    out: list[dict[str, object]] = []
    for message in messages:
        parts: list[dict[str, object]] = []
        if message.role == "tool":
            parts.append(
                {
                    "type": "tool_call_response",
                    "id": message.tool_call_id,
                    "result": message.content,
                }
            )
        elif message.content:
            parts.append({"type": "text", "content": message.content})
        parts.extend(
            {"type": "tool_call", "id": c.id, "name": c.name, "arguments": dict(c.arguments)}
            for c in message.tool_calls
        )
        out.append({"role": message.role, "parts": parts})
    return _json(out)
