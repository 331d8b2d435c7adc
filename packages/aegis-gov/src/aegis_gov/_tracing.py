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
from collections.abc import Iterator
from typing import TYPE_CHECKING

import attrs
from aegis_adapters import Endpoint

from aegis_gov._events import CircuitStateChanged, RunEvent
from aegis_gov._results import RunResult
from aegis_gov._task_trace import TaskTrace, mark_failed

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from aegis_gov._run import RunState

__all__ = ["RunTrace", "RunTracer", "Tracing", "make_tracer", "run_span"]

_SCOPE = "aegis_gov"


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
    def run(self, state: RunState) -> Iterator[RunTrace]:
        """The span of the run *state* describes, around the block."""
        span = self.tracer.start_span(
            f"invoke_workflow {state.team.name}",
            attributes={
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": state.team.name,
                "aegis.tasks": len(state.queue.tasks),
            },
        )
        run = RunTrace(self, span)
        try:
            yield run
        except BaseException as exc:
            mark_failed(span, exc, record=True)
            raise
        finally:
            run.close(state.result())

    def agent(self, agent: str, endpoint: Endpoint) -> TaskTrace:
        """The span of a single-agent call: a child of the span current now, in this thread.

        The parent is taken now because a streamed call runs on a helper thread or task.
        """
        from opentelemetry import context  # noqa: PLC0415  # imported by __init__ already

        return TaskTrace(
            self.tracer,
            agent=agent,
            endpoint=endpoint,
            parent=context.get_current(),
            capture_content=self.capture_content,
        )


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
    tracer: RunTracer | None, state: RunState
) -> contextlib.AbstractContextManager[RunTrace | None]:
    """The span of *state*'s run around the block, or nothing when *tracer* is None."""
    return contextlib.nullcontext() if tracer is None else tracer.run(state)


class RunTrace:
    """One run's span: the parent of its tasks' spans; breaker transitions are its events."""

    def __init__(self, tracer: RunTracer, span: Span) -> None:
        """Trace into *span*, already started."""
        from opentelemetry import trace  # noqa: PLC0415  # imported by RunTracer already

        self._tracer = tracer
        self.span = span
        self.context: Context = trace.set_span_in_context(span)

    def task(self, task_id: str, agent: str, endpoint: Endpoint) -> TaskTrace:
        """The span of task *task_id*, run by *agent* on *endpoint*: a child of the run's."""
        return TaskTrace(
            self._tracer.tracer,
            agent=agent,
            endpoint=endpoint,
            task_id=task_id,
            parent=self.context,
            capture_content=self._tracer.capture_content,
        )

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

    def close(self, result: RunResult) -> None:
        """End the run's span with how many tasks ended in each state, and the run's id.

        Tasks kept from a resumed result count as done. The id is a checkpointed run's.
        """
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        if result.run_id:
            self.span.set_attribute("aegis.run.id", result.run_id)
        summary = result.summary()
        failed = summary.get("failed", 0)
        for state in ("done", "failed", "skipped"):
            self.span.set_attribute(f"aegis.tasks.{state}", summary.get(state, 0))
        if failed and self.span.is_recording():
            self.span.set_status(Status(StatusCode.ERROR, f"{failed} task(s) failed"))
        self.span.end()


def _version() -> str | None:
    import importlib.metadata  # noqa: PLC0415  # lazy: its email imports cost more than this module

    try:
        return importlib.metadata.version("aegis-gov")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover  # run from a checkout
        return None
