"""OpenTelemetry traces of runs, following the GenAI semantic conventions (``aegis-gov[otel]``).

A run is a tree of spans: ``invoke_workflow {team}`` (the run) → ``invoke_agent {agent}`` (a
task) → ``aegis.attempt`` (one request: admission, breaker, pacing) → ``chat {model}`` (the
provider call, kind CLIENT), with ``execute_tool {tool}`` spans under the task. Retries and
fallbacks are events on the task span; breaker transitions are events on the run span.

Nothing here imports :mod:`opentelemetry` until a facade is made with ``tracing=``: without it,
the hooks in :mod:`aegis_gov._caller` and :mod:`aegis_gov._facade` are ``None`` checks, chosen
once per run. Parents are passed explicitly (``context=``); a span is made current only around
the code it covers (a provider call, a tool), on the thread or asyncio task that runs it, so
that SDK and HTTP instrumentation nests below it and nothing leaks between tasks.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import attrs
from aegis_adapters import ChatAdapter, ChatResponse, Endpoint, Message, ToolCall, Usage

from aegis_gov._conversation import ChatRequest
from aegis_gov._events import (
    CircuitStateChanged,
    EventHandler,
    FellBack,
    RunEvent,
    TaskRetrying,
)
from aegis_gov._outcome import Outcome
from aegis_gov._results import AgentResult

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanKind, Tracer, TracerProvider

__all__ = ["RunTrace", "RunTracer", "TaskTrace", "Tracing", "make_tracer", "run_span"]

_SCOPE = "aegis_gov"
_MAX_ERROR_CHARS = 500
T = TypeVar("T")


@attrs.frozen
class Tracing:
    """How an :class:`~aegis_gov.OpenMultiAgent` traces its runs with OpenTelemetry.

    Needs the ``otel`` extra (``pip install 'aegis-gov[otel]'``, the OpenTelemetry API); the
    application installs the SDK and an exporter. ``OpenMultiAgent(tracing=True)`` is
    ``Tracing()``.

    Raises:
        TypeError: ``tracer_provider`` has no ``get_tracer``, or ``capture_content`` is not a
            bool.

    Attributes:
        tracer_provider: where spans go; None: the global provider, as set with
            ``opentelemetry.trace.set_tracer_provider`` (even if it is set later).
        capture_content: also record prompts, system prompts, answers, tool arguments and
            tool results (``gen_ai.input.messages`` and the like). Off by default: they may
            hold secrets or personal data.
    """

    tracer_provider: TracerProvider | None = attrs.field(default=None)
    capture_content: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))

    @tracer_provider.validator
    def _check_provider(self, _attribute: object, value: object) -> None:
        if value is not None and not callable(getattr(value, "get_tracer", None)):
            raise TypeError(
                f"tracer_provider must be an OpenTelemetry TracerProvider, got {value!r:.80}"
            )


class RunTracer:
    """A facade's tracer, made once from its :class:`Tracing`; imports OpenTelemetry.

    Raises:
        ImportError: opentelemetry-api is not installed (install ``aegis-gov[otel]``).
    """

    def __init__(self, config: Tracing) -> None:
        """Get the tracer of *config*'s provider (or of the global one)."""
        try:
            from opentelemetry import trace  # noqa: PLC0415  # only when tracing is asked for
        except ImportError as exc:
            raise ImportError(
                "tracing needs the OpenTelemetry API: pip install 'aegis-gov[otel]' "
                "(and an OpenTelemetry SDK with an exporter to see the spans)"
            ) from exc
        version = _version()
        provider = config.tracer_provider
        self.tracer: Tracer = (
            trace.get_tracer(_SCOPE, version)
            if provider is None
            else provider.get_tracer(_SCOPE, version)
        )
        self.capture_content = config.capture_content

    @contextlib.contextmanager
    def run(self, team: str, tasks: int) -> Iterator[RunTrace]:
        """The span of one run of *team* over *tasks* tasks, around the block."""
        span = self.tracer.start_span(
            f"invoke_workflow {team}",
            attributes={
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": team,
                "aegis.tasks": tasks,
            },
        )
        run = RunTrace(self, span)
        try:
            yield run
        except BaseException as exc:
            _failed(span, exc, record=True)
            raise
        finally:
            run.close()

    def agent(self, agent: str, endpoint: Endpoint) -> TaskTrace:
        """The span of a single-agent call, a child of the current span (no run around it)."""
        return TaskTrace(self, None, agent, endpoint, task_id=None)


def make_tracer(tracing: object) -> RunTracer | None:
    """The tracer a facade's ``tracing=`` argument asks for (False: None, no tracing).

    Raises:
        TypeError: *tracing* is neither a bool nor a :class:`Tracing`.
        ImportError: tracing is asked for and opentelemetry-api is not installed.
    """
    if tracing is False:
        return None
    if tracing is True:
        return RunTracer(Tracing())
    if isinstance(tracing, Tracing):
        return RunTracer(tracing)
    raise TypeError(f"tracing must be True, False or a Tracing, got {tracing!r:.80}")


def run_span(
    tracer: RunTracer | None, team: str, tasks: int
) -> contextlib.AbstractContextManager[RunTrace | None]:
    """The run's span around the block, or nothing when *tracer* is None."""
    return contextlib.nullcontext() if tracer is None else tracer.run(team, tasks)


class RunTrace:
    """One run's span: the parent of its tasks' spans; breaker transitions are its events."""

    def __init__(self, tracer: RunTracer, span: Span) -> None:
        """Trace into *span*, already started."""
        from opentelemetry import trace  # noqa: PLC0415  # imported by RunTracer already

        self._tracer = tracer
        self.span = span
        self.context: Context = trace.set_span_in_context(span)
        self._done = 0
        self._failed = 0

    def task(self, task_id: str, agent: str, endpoint: Endpoint) -> TaskTrace:
        """The span of task *task_id*, run by *agent* on *endpoint*: a child of the run's."""
        return TaskTrace(self._tracer, self, agent, endpoint, task_id=task_id)

    def on_event(self, event: RunEvent) -> None:
        """Record a breaker transition (the run watches every endpoint's breaker)."""
        if isinstance(event, CircuitStateChanged):
            self.span.add_event(
                "aegis.breaker.state_change",
                {
                    "aegis.endpoint": event.endpoint,
                    "aegis.breaker.old_state": str(event.old.value),
                    "aegis.breaker.new_state": str(event.new.value),
                },
            )

    def landed(self, *, success: bool) -> None:
        """Count a task that ended (tasks' spans call this)."""
        if success:
            self._done += 1
        else:
            self._failed += 1

    def close(self) -> None:
        """End the run's span with how many tasks succeeded and failed."""
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        self.span.set_attribute("aegis.tasks.done", self._done)
        self.span.set_attribute("aegis.tasks.failed", self._failed)
        if self._failed and self.span.is_recording():
            self.span.set_status(Status(StatusCode.ERROR, f"{self._failed} task(s) failed"))
        self.span.end()


class TaskTrace:
    """One agent's conversation: its span and the wrappers that make its children.

    A conversation makes one request at a time, so the attempt in progress is plain state.
    """

    def __init__(
        self,
        tracer: RunTracer,
        run: RunTrace | None,
        agent: str,
        endpoint: Endpoint,
        *,
        task_id: str | None,
    ) -> None:
        """Prepare (not start) the span of *agent*'s conversation."""
        self._tracer = tracer
        self._run = run
        self._agent = agent
        self._endpoint = endpoint
        self._task_id = task_id
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
        self._span = self._tracer.tracer.start_span(
            f"invoke_agent {self._agent}",
            context=self._run.context if self._run is not None else None,
            attributes=attributes,
        )
        self._context = trace.set_span_in_context(self._span)

    def _crashed(self, exc: BaseException) -> None:
        """An exception escaped the conversation (a bug, or asyncio cancelling the task)."""
        if self._span is not None:
            _failed(self._span, exc, record=True)
        if self._run is not None:
            self._run.landed(success=False)

    def run(self, body: Callable[[], Outcome], prompt: str) -> Outcome:
        """``body()``, the conversation answering *prompt*, in the task's span."""
        self._start()
        try:
            return self.done(body(), prompt=prompt)
        except BaseException as exc:
            self._crashed(exc)
            raise
        finally:
            self._end()

    async def arun(self, body: Callable[[], Awaitable[Outcome]], prompt: str) -> Outcome:
        """The asyncio twin of :meth:`run`."""
        self._start()
        try:
            return self.done(await body(), prompt=prompt)
        except BaseException as exc:
            self._crashed(exc)
            raise
        finally:
            self._end()

    def _end(self) -> None:
        if self._span is not None:
            self._span.end()

    def done(self, outcome: Outcome, *, prompt: str = "") -> Outcome:
        """Record the conversation's *outcome* on the span; return it."""
        span = self._span
        if span is None:
            return outcome
        _usage(span, outcome.usage)
        span.set_attribute("aegis.attempts", outcome.attempts)
        success = isinstance(outcome, AgentResult)
        if isinstance(outcome, AgentResult):
            if outcome.endpoint:
                span.set_attribute("aegis.endpoint", outcome.endpoint)
            if self._tracer.capture_content:
                span.set_attribute("gen_ai.input.messages", _messages([Message.user(prompt)]))
                span.set_attribute(
                    "gen_ai.output.messages", _messages([Message.assistant(outcome.output)])
                )
        else:
            _failed(span, outcome.error, record=True)
        if self._run is not None:
            self._run.landed(success=success)
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
                            "aegis.retry.error": event.error[:_MAX_ERROR_CHARS],
                        },
                    )
                elif isinstance(event, FellBack):
                    span.add_event(
                        "aegis.fallback",
                        {
                            "aegis.fallback.from": event.from_endpoint,
                            "aegis.fallback.to": event.to_endpoint,
                            "aegis.fallback.error": event.error[:_MAX_ERROR_CHARS],
                        },
                    )
            emit(event)

        return observed

    # -- attempts and provider calls --------------------------------------------------------

    def attempts(self, chat: Callable[[ChatRequest], T]) -> Callable[[ChatRequest], T]:
        """*chat*, each request in an ``aegis.attempt`` span (the provider call inside it)."""

        def attempt(request: ChatRequest) -> T:
            with self._attempt_span(request):
                return chat(request)

        return attempt

    def aattempts(
        self, chat: Callable[[ChatRequest], Awaitable[T]]
    ) -> Callable[[ChatRequest], Awaitable[T]]:
        """The asyncio twin of :meth:`attempts`."""

        async def attempt(request: ChatRequest) -> T:
            with self._attempt_span(request):
                return await chat(request)

        return attempt

    @contextlib.contextmanager
    def _attempt_span(self, request: ChatRequest) -> Iterator[None]:
        from opentelemetry import trace  # noqa: PLC0415

        span = self._tracer.tracer.start_span(
            "aegis.attempt",
            context=self._context,
            attributes={"aegis.endpoint.index": request.endpoint},
        )
        self._attempt_now = span
        self._attempt = trace.set_span_in_context(span)
        try:
            yield
        except BaseException as exc:
            # The provider call (if one was made) holds the exception event; not again here.
            _failed(span, exc, record=True, event=False)
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
        with _current(span, record=True):
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
        with _current(span, record=True):
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
        span = self._tracer.tracer.start_span(
            f"chat {endpoint.model}",
            context=self._attempt if self._attempt is not None else self._context,
            kind=_client_kind(),
            attributes=attributes,
        )
        if self._tracer.capture_content:
            span.set_attribute("gen_ai.input.messages", _messages(request.messages))
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
        if self._tracer.capture_content:
            reply = Message.assistant(response.text, response.tool_calls)
            span.set_attribute("gen_ai.output.messages", _messages([reply]))
        span.end()

    # -- tools ----------------------------------------------------------------------------

    def tools(self, run_tool: Callable[[ToolCall], str]) -> Callable[[ToolCall], str]:
        """*run_tool*, each call in an ``execute_tool`` span."""

        def traced(call: ToolCall) -> str:
            span = self._tool_span(call)
            with _current(span, record=self._tracer.capture_content):
                result = run_tool(call)
            return self._tool_done(span, result)

        return traced

    def atools(
        self, run_tool: Callable[[ToolCall], Awaitable[str]]
    ) -> Callable[[ToolCall], Awaitable[str]]:
        """The asyncio twin of :meth:`tools`."""

        async def traced(call: ToolCall) -> str:
            span = self._tool_span(call)
            with _current(span, record=self._tracer.capture_content):
                result = await run_tool(call)
            return self._tool_done(span, result)

        return traced

    def _tool_span(self, call: ToolCall) -> Span:
        span = self._tracer.tracer.start_span(
            f"execute_tool {call.name}",
            context=self._context,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": call.name,
                "gen_ai.tool.call.id": call.id,
                "gen_ai.tool.type": "function",
            },
        )
        if self._tracer.capture_content:
            span.set_attribute("gen_ai.tool.call.arguments", _json(call.arguments))
        return span

    def _tool_done(self, span: Span, result: str) -> str:
        if self._tracer.capture_content:
            span.set_attribute("gen_ai.tool.call.result", result)
        span.end()
        return result


@contextlib.contextmanager
def _current(span: Span, *, record: bool) -> Iterator[None]:
    """Make *span* current around the block (on this thread or task); end it on an error.

    The error is recorded with its message when *record* (see :func:`_failed`).
    """
    from opentelemetry import trace  # noqa: PLC0415

    try:
        with trace.use_span(span, end_on_exit=False, record_exception=False):
            yield
    except BaseException as exc:
        _failed(span, exc, record=record)
        span.end()
        raise


def _failed(span: Span, exc: BaseException, *, record: bool, event: bool = True) -> None:
    """Mark *span* as ended by *exc*: ``error.type`` and an ERROR status.

    With *record*, the status has the message and (with *event*) the span an exception event.
    """
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

    if not span.is_recording():
        return
    span.set_attribute("error.type", type(exc).__qualname__)
    if record:
        if event:
            span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, str(exc)[:_MAX_ERROR_CHARS]))
    else:
        span.set_status(Status(StatusCode.ERROR))


def _client_kind() -> SpanKind:
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    return SpanKind.CLIENT


def _version() -> str | None:
    try:
        return importlib.metadata.version("aegis-gov")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover  # run from a checkout
        return None


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
