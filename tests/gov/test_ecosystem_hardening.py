"""What an adversarial pass found in structured output, function tools and tracing."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator, Sequence

import pytest
from aegis_gov import (
    AgentConfig,
    InvalidToolArgumentsError,
    InvalidToolSchemaError,
    Message,
    OpenMultiAgent,
    RetryPolicy,
    RunEvent,
    ScriptedAdapter,
    Task,
    TaskState,
    ToolRegistry,
    Tracing,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

REMOTE = {"type": "object", "properties": {"x": {"$ref": "http://169.254.169.254/latest"}}}
LOCAL_FILE = {"type": "object", "properties": {"x": {"$ref": "file:///etc/hostname"}}}


def _noop(**_kwargs: object) -> str:
    return "ok"


@pytest.mark.parametrize("schema", [REMOTE, LOCAL_FILE])
def test_a_tool_schema_pointing_outside_itself_is_refused(schema: dict[str, object]) -> None:
    with pytest.raises(InvalidToolSchemaError, match="outside itself"):
        ToolRegistry(builtins=False).define_tool("t", "d", _noop, schema)


def test_an_output_schema_pointing_outside_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="outside itself"):
        AgentConfig(name="a", output_type=LOCAL_FILE)


def test_references_inside_a_schema_still_work() -> None:
    schema = {
        "type": "object",
        "$defs": {"n": {"type": "integer"}},
        "properties": {"x": {"$ref": "#/$defs/n"}},
    }
    registry = ToolRegistry(builtins=False)
    registry.define_tool("t", "d", lambda x: x * 2, schema)
    assert registry.call("t", {"x": 21}) == "42"
    with pytest.raises(InvalidToolArgumentsError):
        registry.call("t", {"x": "no"})


def test_validation_messages_name_the_rule_not_the_value() -> None:
    registry = ToolRegistry(builtins=False)
    schema = {
        "type": "object",
        "properties": {"pin": {"type": "integer"}},
        "additionalProperties": False,
    }
    registry.define_tool("t", "d", _noop, schema)
    with pytest.raises(InvalidToolArgumentsError) as info:
        registry.call("t", {"pin": "SECRET-1234"})
    assert "SECRET" not in str(info.value)
    assert "$.pin" in str(info.value)
    assert "'type'" in str(info.value)
    with pytest.raises(InvalidToolArgumentsError, match="unexpected properties: 'extra'"):
        registry.call("t", {"pin": 1, "extra": "SECRET-2"})


def test_a_result_that_cannot_become_text_is_the_tools_error() -> None:
    registry = ToolRegistry(builtins=False)

    @registry.tool
    def raw() -> bytes:
        """Return bytes that are not UTF-8."""
        return b"\xff\xfe"

    outcome = registry.try_call("raw", {})
    assert outcome.error is not None
    assert "UnicodeDecodeError" in outcome.output


def test_generator_functions_are_refused_as_tools() -> None:
    registry = ToolRegistry(builtins=False)

    async def agen() -> object:  # an async generator: calling it never runs the body
        yield 1

    def gen() -> object:
        yield 1

    for fn in (agen, gen):
        with pytest.raises(InvalidToolSchemaError, match="generator function"):
            registry.add_function(fn)


@dataclasses.dataclass
class Report:
    title: str


def test_a_tool_named_like_the_output_type_is_refused() -> None:
    registry = ToolRegistry(builtins=False)
    registry.define_tool("Report", "clashes", _noop, {"type": "object"})
    agent = AgentConfig(name="a", tools=["Report"], output_type=Report)
    with pytest.raises(ValueError, match="has the name of its output type"):
        OpenMultiAgent(tools=registry, default_adapter=ScriptedAdapter(["{}"])).run_agent(
            agent, "go"
        )


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_without_capture_no_answer_or_error_text_reaches_a_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    secret = '{"ssn": "PATIENT-123-45-6789"}'
    schema = {
        "type": "object",
        "properties": {"ssn": {"type": "string", "pattern": "^[0-9]{3}$"}},
        "required": ["ssn"],
    }
    oma = OpenMultiAgent(
        default_adapter=ScriptedAdapter([secret] * 3),
        retry=RetryPolicy(max_attempts=1),
        tracing=Tracing(tracer_provider=provider),
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w", output_type=schema))
    result = oma.run_tasks([Task(id="x", agent="w")], team)
    assert result["x"].status is TaskState.FAILED
    dumped = json.dumps(
        [
            {
                "attributes": dict(span.attributes or {}),
                "status": span.status.description,
                "events": [dict(e.attributes or {}) for e in span.events],
            }
            for span in exporter.get_finished_spans()
        ],
        default=str,
    )
    assert "PATIENT" not in dumped
    assert "OutputValidationError" in dumped  # the type is kept


def test_a_call_still_going_after_its_run_returned_reports_nothing() -> None:
    threads_before = set(threading.enumerate())
    release = threading.Event()
    returned = threading.Event()
    late: list[RunEvent] = []

    def reply(messages: Sequence[Message]) -> str:
        release.wait(timeout=10)
        return "late"

    def on_event(event: RunEvent) -> None:
        if returned.is_set():
            late.append(event)

    oma = OpenMultiAgent(default_adapter=ScriptedAdapter(reply))
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    result = oma.run_tasks([Task(id="x", agent="w")], team, task_timeout_s=0.05, on_event=on_event)
    returned.set()
    assert result["x"].error_type == "DeadlineExceededError"
    release.set()
    oma.close()
    for thread in set(threading.enumerate()) - threads_before:
        thread.join(timeout=5)
    assert late == []
