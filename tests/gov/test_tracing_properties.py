"""Whatever a run goes through, its trace agrees with its result (Hypothesis, sync and async)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence

import pytest
from aegis_gov import (
    AgentConfig,
    AgentPool,
    ChatResponse,
    Message,
    OpenMultiAgent,
    PermanentError,
    ProviderUnavailableError,
    RunResult,
    ScriptedAdapter,
    Task,
    TaskState,
    ToolCall,
    ToolRegistry,
    Tracing,
    Usage,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.gov.conftest import FakeClock

STEPS = ("ok", "retryable", "permanent", "tool")


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[Task], dict[str, list[str]]]:
    """A small DAG and, for each task, what its requests meet in turn."""
    count = draw(st.integers(1, 5))
    tasks = []
    for i in range(count):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=2)) if i else set()
        tasks.append(
            Task(id=f"t{i}", description=f"t{i}", agent="a", depends_on=[f"t{d}" for d in deps])
        )
    scripts = {t.id: draw(st.lists(st.sampled_from(STEPS), min_size=0, max_size=4)) for t in tasks}
    return tasks, scripts


def _facade(
    clock: FakeClock, scripts: dict[str, list[str]], provider: TracerProvider
) -> OpenMultiAgent:
    lock = threading.Lock()
    remaining = {task_id: list(steps) for task_id, steps in scripts.items()}

    def reply(messages: Sequence[Message]) -> ChatResponse:
        task_id = messages[0].content.splitlines()[0]
        with lock:
            step = remaining[task_id].pop(0) if remaining[task_id] else "ok"
        if step == "retryable":
            raise ProviderUnavailableError("scripted", "down", status_code=503)
        if step == "permanent":
            raise PermanentError("scripted", "refused", status_code=400)
        if step == "tool":
            call = ToolCall(f"{task_id}-{len(messages)}", "add", {"a": 1, "b": 2})
            return ChatResponse("", tool_calls=(call,), usage=Usage(2, 1))
        return ChatResponse("done", usage=Usage(3, 1), stop_reason="end_turn")

    tools = ToolRegistry()
    tools.define_tool(
        "add",
        "Add.",
        lambda a, b: str(a + b),
        {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
    )
    return OpenMultiAgent(
        AgentPool(2, consecutive_failure_limit=2, recovery_timeout_s=1.0, clock=clock),
        default_adapter=ScriptedAdapter(reply, name="m"),
        tools=tools,
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        clock=clock,
        seed=3,
        tracing=Tracing(tracer_provider=provider),
    )


def _children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def _assert_trace_matches(spans: Sequence[ReadableSpan], result: RunResult) -> None:
    (run,) = [s for s in spans if s.parent is None]
    attributes = dict(run.attributes or {})
    summary = result.summary()
    assert attributes["aegis.tasks.done"] == summary.get("done", 0)
    assert attributes["aegis.tasks.failed"] == summary.get("failed", 0)
    assert attributes["aegis.tasks.skipped"] == summary.get("skipped", 0)
    assert {s.context.trace_id for s in spans if s.context} == {run.context.trace_id}

    task_spans = _children(spans, run)
    ran = {k: r for k, r in result.results.items() if r.status is not TaskState.SKIPPED}
    assert sorted(str((s.attributes or {})["aegis.task.id"]) for s in task_spans) == sorted(ran)
    for task_span in task_spans:
        task = dict(task_span.attributes or {})
        record = ran[str(task["aegis.task.id"])]
        assert task["gen_ai.usage.input_tokens"] == record.usage.input_tokens
        assert task["gen_ai.usage.output_tokens"] == record.usage.output_tokens
        assert task["aegis.attempts"] == record.attempts
        assert task.get("error.type") == record.error_type
        below = _children(spans, task_span)
        attempts = [s for s in below if s.name == "aegis.attempt"]
        numbered = [s for s in attempts if "aegis.attempt" in (s.attributes or {})]
        # A request that reached the provider is numbered and has its call; one turned away
        # (open breaker, full endpoint) has neither.
        assert [(s.attributes or {})["aegis.attempt"] for s in numbered] == list(
            range(1, record.attempts + 1)
        )
        for attempt in attempts:
            calls = _children(spans, attempt)
            assert [c.name for c in calls] == (["chat m"] if attempt in numbered else [])
        tools = [s for s in below if s.name == "execute_tool add"]
        assert len(tools) == len(record.tool_calls)
        assert len(below) == len(attempts) + len(tools)


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=runs())
def test_the_trace_agrees_with_the_result(
    drawn: tuple[list[Task], dict[str, list[str]]],
    driver: str,
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tasks, scripts = drawn
    provider, exporter = traced
    exporter.clear()
    oma = _facade(FakeClock(), scripts, provider)
    team = oma.create_team("crew", AgentConfig(name="a", tools=["add"]))
    if driver == "threads":
        result = oma.run_tasks(tasks, team)
    else:
        result = asyncio.run(oma.arun_tasks(tasks, team))
    _assert_trace_matches(exporter.get_finished_spans(), result)
