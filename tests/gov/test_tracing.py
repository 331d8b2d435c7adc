"""OpenTelemetry traces of runs: the span tree, the GenAI attributes, events and parenting."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aegis_gov import (
    AgentConfig,
    AgentPool,
    ChatResponse,
    Checkpoint,
    Limits,
    Message,
    OpenMultiAgent,
    PermanentError,
    ProviderUnavailableError,
    RetryPolicy,
    RunResult,
    ScriptedAdapter,
    Task,
    TaskState,
    Team,
    ToolCall,
    ToolRegistry,
    ToolSpec,
    Tracing,
    Usage,
)
from aegis_gov._task_trace import _server
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from tests.gov.conftest import FakeClock

SECRET_PROMPT = "the launch codes are 0000"
SECRET_ANSWER = "the answer is 3"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def _tools() -> ToolRegistry:
    tools = ToolRegistry()
    tools.define_tool(
        "add",
        "Add two integers.",
        lambda a, b: str(a + b),
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    )

    def explode() -> str:
        raise RuntimeError(f"tool broke on {SECRET_PROMPT}")

    tools.define_tool("explode", "Always fails.", explode, {"type": "object", "properties": {}})
    return tools


def _facade(
    clock: FakeClock,
    adapter: ScriptedAdapter,
    provider: TracerProvider,
    *,
    capture_content: bool = False,
    max_concurrent: int = 1,
) -> OpenMultiAgent:
    # One failure opens the breaker; it half-opens after 5 s of the fake clock.
    pool = AgentPool(
        max_concurrent, consecutive_failure_limit=1, recovery_timeout_s=5.0, clock=clock
    )
    return OpenMultiAgent(
        pool,
        default_adapter=adapter,
        tools=_tools(),
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        clock=clock,
        seed=1,
        tracing=Tracing(tracer_provider=provider, capture_content=capture_content),
    )


def _eventful_script() -> ScriptedAdapter:
    """A 503 (a retry, the breaker opens), a tool call, an answer; then the second task."""
    return ScriptedAdapter(
        [
            ProviderUnavailableError("scripted", "down", status_code=503),
            ChatResponse(
                "",
                tool_calls=(ToolCall("call-1", "add", {"a": 1, "b": 2}),),
                usage=Usage(10, 5),
                stop_reason="tool_use",
                model="scripted-2026",
            ),
            ChatResponse(SECRET_ANSWER, usage=Usage(20, 3), stop_reason="end_turn"),
            ChatResponse("summary", usage=Usage(7, 2), stop_reason="end_turn"),
        ],
        name="model-x",
    )


TASKS = [
    Task(id="research", description=SECRET_PROMPT, agent="researcher"),
    Task(id="write", description="write it up", agent="writer", depends_on=["research"]),
]


def _team(oma: OpenMultiAgent) -> Team:
    return oma.create_team(
        "crew", AgentConfig(name="researcher", tools=["add"]), AgentConfig(name="writer")
    )


class Tree:
    """The finished spans, navigable by parent."""

    def __init__(self, spans: Sequence[ReadableSpan]) -> None:
        self.spans = sorted(spans, key=lambda s: s.start_time or 0)

    def roots(self) -> list[ReadableSpan]:
        return [s for s in self.spans if s.parent is None]

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        return [
            s
            for s in self.spans
            if s.parent is not None
            and span.context is not None
            and s.parent.span_id == span.context.span_id
        ]

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span

    def ancestor(self, span: ReadableSpan, prefix: str) -> ReadableSpan:
        by_id = {s.context.span_id: s for s in self.spans if s.context is not None}
        current: ReadableSpan | None = span
        while current is not None and not current.name.startswith(prefix):
            current = by_id.get(current.parent.span_id) if current.parent else None
        assert current is not None, f"{span.name} has no {prefix} ancestor"
        return current


def _attrs(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def _assert_eventful_tree(tree: Tree) -> None:
    (run,) = tree.roots()
    assert run.name == "invoke_workflow crew"
    assert _attrs(run)["gen_ai.operation.name"] == "invoke_workflow"
    assert _attrs(run)["gen_ai.workflow.name"] == "crew"
    assert _attrs(run)["aegis.tasks"] == 2
    assert _attrs(run)["aegis.tasks.done"] == 2
    assert _attrs(run)["aegis.tasks.failed"] == 0
    assert _attrs(run)["aegis.tasks.skipped"] == 0
    assert run.status.status_code is StatusCode.UNSET
    # Breaker transitions are events of the run: opened by the 503, probed, closed again.
    transitions = [
        (e.attributes or {}).get("aegis.breaker.new_state")
        for e in run.events
        if e.name == "aegis.breaker.state_change"
    ]
    assert transitions == ["open", "half_open", "closed"]
    assert all(
        (e.attributes or {}).get("aegis.endpoint") == "scripted|scripted://model-x|model-x"
        for e in run.events
    )

    research, write = tree.children(run)
    assert research.name == "invoke_agent researcher"
    assert write.name == "invoke_agent writer"
    assert (
        _attrs(research).items()
        >= {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "researcher",
            "gen_ai.provider.name": "scripted",
            "gen_ai.request.model": "model-x",
            "aegis.task.id": "research",
            "gen_ai.usage.input_tokens": 30,
            "gen_ai.usage.output_tokens": 8,
            "aegis.attempts": 3,
        }.items()
    )
    assert research.kind is SpanKind.INTERNAL
    # The retry after the 503 and the wait for the open breaker are events of the task.
    retries = [e for e in research.events if e.name == "aegis.retry"]
    assert [(e.attributes or {}).get("aegis.retry.rejected") for e in retries] == [False, True]
    assert (retries[0].attributes or {}).get("aegis.attempt") == 2

    names = [s.name for s in tree.children(research)]
    assert names == [
        "aegis.attempt",  # the 503
        "aegis.attempt",  # turned away by the open breaker: no provider call
        "aegis.attempt",  # the probe: asks for the tool
        "execute_tool add",
        "aegis.attempt",  # the answer
    ]
    failed, rejected, probe, tool, answer = tree.children(research)
    assert _attrs(failed)["error.type"] == "ProviderUnavailableError"
    assert _attrs(failed)["aegis.attempt"] == 1
    assert failed.status.status_code is StatusCode.ERROR
    (failed_call,) = tree.children(failed)
    assert failed_call.name == "chat model-x"
    assert failed_call.kind is SpanKind.CLIENT
    assert _attrs(failed_call)["error.type"] == "ProviderUnavailableError"
    assert [e.name for e in failed_call.events] == ["exception"]

    assert _attrs(rejected)["error.type"] == "CircuitOpenError"
    assert "aegis.attempt" not in _attrs(rejected)
    assert tree.children(rejected) == []

    (probe_call,) = tree.children(probe)
    assert _attrs(probe)["aegis.attempt"] == 2
    assert (
        _attrs(probe_call).items()
        >= {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "scripted",
            "gen_ai.request.model": "model-x",
            "gen_ai.response.model": "scripted-2026",
            "gen_ai.response.finish_reasons": ("tool_use",),
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 5,
        }.items()
    )
    assert probe_call.status.status_code is StatusCode.UNSET

    assert _attrs(tool) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "gen_ai.tool.call.id": "call-1",
        "gen_ai.tool.type": "function",
    }
    (answer_call,) = tree.children(answer)
    assert _attrs(answer_call)["gen_ai.response.finish_reasons"] == ("end_turn",)

    (write_attempt,) = tree.children(write)
    (write_call,) = tree.children(write_attempt)
    assert _attrs(write_call)["gen_ai.usage.output_tokens"] == 2
    # Every span of the run is in one trace.
    assert {s.context.trace_id for s in tree.spans if s.context} == {run.context.trace_id}


def _assert_no_content(tree: Tree) -> None:
    for span in tree.spans:
        values = [str(v) for v in (span.attributes or {}).values()]
        values += [str(v) for e in span.events for v in (e.attributes or {}).values()]
        values.append(span.status.description or "")
        for value in values:
            assert SECRET_PROMPT not in value, span.name
            assert SECRET_ANSWER not in value, span.name
        assert not any(key.endswith(("messages", "arguments", "result")) for key in _attrs(span))


def test_a_run_is_a_tree_of_spans_with_genai_attributes(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    oma = _facade(clock, _eventful_script(), provider)
    result = oma.run_tasks(TASKS, _team(oma))
    assert result.summary() == {"done": 2}
    tree = Tree(exporter.get_finished_spans())
    _assert_eventful_tree(tree)
    _assert_no_content(tree)


def test_an_async_run_makes_the_same_tree(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    oma = _facade(clock, _eventful_script(), provider)
    result = asyncio.run(oma.arun_tasks(TASKS, _team(oma)))
    assert result.summary() == {"done": 2}
    tree = Tree(exporter.get_finished_spans())
    _assert_eventful_tree(tree)
    _assert_no_content(tree)


def test_content_is_recorded_only_when_asked(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    oma = _facade(clock, _eventful_script(), provider, capture_content=True)
    oma.run_tasks(TASKS, _team(oma))
    tree = Tree(exporter.get_finished_spans())
    research = tree.named("invoke_agent researcher")[0]
    assert SECRET_PROMPT in str(_attrs(research)["gen_ai.input.messages"])
    assert SECRET_ANSWER in str(_attrs(research)["gen_ai.output.messages"])
    tool = tree.one("execute_tool add")
    assert _attrs(tool)["gen_ai.tool.call.arguments"] == '{"a": 1, "b": 2}'
    assert _attrs(tool)["gen_ai.tool.call.result"] == "3"
    calls = [s for s in tree.named("chat model-x") if s.status.status_code is StatusCode.UNSET]
    last = calls[1]  # the answer to the tool's result
    assert '"type": "tool_call_response", "id": "call-1", "result": "3"' in str(
        _attrs(last)["gen_ai.input.messages"]
    )
    assert SECRET_ANSWER in str(_attrs(last)["gen_ai.output.messages"])


def test_failures_fallbacks_and_tool_errors_are_recorded(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    backup = ScriptedAdapter(
        [
            ChatResponse("", tool_calls=(ToolCall("c9", "explode", {}),)),
            "recovered",
        ],
        name="backup",
    )
    primary = ScriptedAdapter(
        [
            ProviderUnavailableError("scripted", "down", status_code=503),
            PermanentError("scripted", "bad request", status_code=400),
        ],
        name="primary",
    )
    oma = _facade(clock, primary, provider)
    oma.retry = RetryPolicy(max_attempts=1)
    team = oma.create_team(
        "crew",
        AgentConfig(name="a", tools=["explode"], fallbacks=[backup]),
        AgentConfig(name="b"),
    )
    tasks = [Task(id="t1", description="go", agent="a"), Task(id="t2", description="x", agent="b")]
    result = oma.run_tasks(tasks, team)
    assert result["t1"].status is TaskState.DONE
    assert result["t2"].status is TaskState.FAILED
    tree = Tree(exporter.get_finished_spans())

    (run,) = tree.roots()
    assert _attrs(run)["aegis.tasks.failed"] == 1
    assert run.status.status_code is StatusCode.ERROR

    a = tree.one("invoke_agent a")
    (fell,) = [e for e in a.events if e.name == "aegis.fallback"]
    assert (fell.attributes or {}).get("aegis.fallback.to") == "scripted|scripted://backup|backup"
    assert _attrs(a)["aegis.endpoint"] == "scripted|scripted://backup|backup"
    attempts = [s for s in tree.children(a) if s.name == "aegis.attempt"]
    assert [_attrs(s)["aegis.endpoint.index"] for s in attempts] == [0, 1, 1]
    assert [tree.children(s)[0].name for s in attempts] == [
        "chat primary",
        "chat backup",
        "chat backup",
    ]
    tool = tree.one("execute_tool explode")
    assert _attrs(tool)["error.type"] == "ToolExecutionError"
    assert tool.status.status_code is StatusCode.ERROR
    assert tool.status.description is None  # its message may quote content
    assert [(e.name, dict(e.attributes or {})) for e in tool.events] == [
        ("exception", {"exception.type": "ToolExecutionError"})  # the type only
    ]

    b = tree.one("invoke_agent b")
    assert _attrs(b)["error.type"] == "PermanentError"
    assert b.status.status_code is StatusCode.ERROR
    # Providers' messages may quote the prompt: without capture_content only the type is kept.
    assert b.status.description is None
    assert all("bad request" not in str(e.attributes) for e in b.events)


def test_concurrent_tasks_parent_their_spans_explicitly(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    both_in_flight = threading.Barrier(4, timeout=10)

    def reply(messages: Sequence[Message]) -> ChatResponse:
        both_in_flight.wait()  # four tasks' calls are in flight at once, on four threads
        return ChatResponse(f"answer to {messages[0].content}", usage=Usage(1, 1))

    oma = _facade(clock, ScriptedAdapter(reply), provider, max_concurrent=4)
    team = oma.create_team("crew", AgentConfig(name="w"))
    tasks = [Task(id=f"t{i}", description=f"t{i}", agent="w") for i in range(4)]
    assert oma.run_tasks(tasks, team).summary() == {"done": 4}
    _assert_calls_under_their_tasks(Tree(exporter.get_finished_spans()), 4)


def test_concurrent_async_tasks_parent_their_spans_explicitly(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    oma_wide = OpenMultiAgent(
        AgentPool(8, clock=clock),
        default_adapter=ScriptedAdapter(lambda m: f"answer to {m[0].content}", delay_s=0.01),
        clock=clock,
        tracing=Tracing(tracer_provider=provider),
    )
    team = oma_wide.create_team("crew", AgentConfig(name="w"))
    tasks = [Task(id=f"t{i}", description=f"t{i}", agent="w") for i in range(8)]
    result = asyncio.run(oma_wide.arun_tasks(tasks, team))
    assert result.summary() == {"done": 8}
    _assert_calls_under_their_tasks(Tree(exporter.get_finished_spans()), 8)


def _assert_calls_under_their_tasks(tree: Tree, count: int) -> None:
    (run,) = tree.roots()
    tasks = tree.children(run)
    assert sorted(str(_attrs(t)["aegis.task.id"]) for t in tasks) == [f"t{i}" for i in range(count)]
    for task in tasks:
        # Each task's own request hangs under it: none leaked to a neighbour's span.
        (attempt,) = tree.children(task)
        (call,) = tree.children(attempt)
        assert call.name.startswith("chat ")
        assert tree.ancestor(call, "invoke_workflow") is run
    assert len([s for s in tree.spans if s.name.startswith("chat ")]) == count


def test_run_agent_is_an_agent_span_under_the_callers_span(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    oma = _facade(clock, ScriptedAdapter(["hi"], name="m"), provider)
    with provider.get_tracer("app").start_as_current_span("request") as outer:
        assert str(oma.run_agent(AgentConfig(name="solo"), "hello")) == "hi"
    tree = Tree(exporter.get_finished_spans())
    agent = tree.one("invoke_agent solo")
    assert agent.parent == outer.get_span_context()
    assert "aegis.task.id" not in _attrs(agent)
    (attempt,) = tree.children(agent)
    assert [s.name for s in tree.children(attempt)] == ["chat m"]


def test_run_agent_async_and_streamed_runs_mark_streaming(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    oma = _facade(clock, ScriptedAdapter(["hi", "there"], name="m"), provider)
    assert str(asyncio.run(oma.arun_agent(AgentConfig(name="solo"), "hello"))) == "hi"
    team = oma.create_team("crew", AgentConfig(name="solo"))
    oma.run_tasks([Task(id="t", description="x", agent="solo")], team, on_event=lambda e: None)
    first, second = Tree(exporter.get_finished_spans()).named("chat m")
    assert "gen_ai.request.stream" not in _attrs(first)
    assert _attrs(second)["gen_ai.request.stream"] is True


def test_streamed_agents_are_traced_under_the_callers_span(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    oma = _facade(clock, ScriptedAdapter(["one two", "three four"], name="m"), provider)
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("sync request") as sync_outer:
        # The chunks are produced on a helper thread: the span still hangs under this one.
        assert "".join(oma.stream_agent(AgentConfig(name="s"), "go")) == "one two"

    async_parent: list[SpanContext] = []

    async def run() -> str:
        with tracer.start_as_current_span("async request") as outer:
            async_parent.append(outer.get_span_context())
            return "".join(
                [chunk async for chunk in oma.astream_agent(AgentConfig(name="s"), "go")]
            )

    assert asyncio.run(run()) == "three four"
    tree = Tree(exporter.get_finished_spans())
    first, second = tree.named("invoke_agent s")
    assert first.parent == sync_outer.get_span_context()
    assert second.parent == async_parent[0]
    for agent in (first, second):
        (attempt,) = tree.children(agent)
        (call,) = tree.children(attempt)
        assert _attrs(call)["gen_ai.request.stream"] is True


def test_a_checkpointed_run_names_its_run_id(
    clock: FakeClock,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    oma = _facade(clock, ScriptedAdapter(["done"], name="m"), provider)
    team = oma.create_team("crew", AgentConfig(name="a"))
    store = Checkpoint(tmp_path / "runs.db")
    result = oma.run_tasks([Task(id="t", description="x", agent="a")], team, checkpoint=store)
    assert result.run_id
    (run,) = Tree(exporter.get_finished_spans()).roots()
    assert _attrs(run)["aegis.run.id"] == result.run_id


def test_system_prompts_are_content_too(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    agent = AgentConfig(name="a", system_prompt=f"never say {SECRET_PROMPT}")
    quiet = _facade(clock, ScriptedAdapter(["ok"], name="m"), provider)
    quiet.run_agent(agent, "hello")
    (call,) = Tree(exporter.get_finished_spans()).named("chat m")
    assert "gen_ai.system_instructions" not in _attrs(call)
    exporter.clear()
    chatty = _facade(clock, ScriptedAdapter(["ok"], name="m"), provider, capture_content=True)
    chatty.run_agent(agent, "hello")
    (call,) = Tree(exporter.get_finished_spans()).named("chat m")
    assert json.loads(str(_attrs(call)["gen_ai.system_instructions"])) == [
        {"type": "text", "content": f"never say {SECRET_PROMPT}"}
    ]


def test_calls_sent_through_an_executor_are_spans_and_not_streamed(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    oma = _facade(clock, ScriptedAdapter(["a", "b"], name="m"), provider)
    team = oma.create_team("crew", AgentConfig(name="w"))
    tasks = [Task(id="t1", description="x", agent="w"), Task(id="t2", description="y", agent="w")]
    with ThreadPoolExecutor(2) as executor:
        result = oma.run_tasks(tasks, team, executor=executor, on_event=lambda e: None)
    assert result.summary() == {"done": 2}
    tree = Tree(exporter.get_finished_spans())
    calls = tree.named("chat m")
    assert len(calls) == 2
    assert all("gen_ai.request.stream" not in _attrs(c) for c in calls)
    assert {tree.ancestor(c, "invoke_agent").name for c in calls} == {"invoke_agent w"}


def test_server_address_comes_from_the_endpoint_url() -> None:
    assert _server("https://api.example.com/v1") == ("api.example.com", 443)
    assert _server("http://127.0.0.1:11434") == ("127.0.0.1", 11434)
    assert _server("scripted://m") is None
    assert _server("http://[::1:bad") is None


def test_tracing_must_be_a_bool_or_tracing() -> None:
    with pytest.raises(TypeError, match="tracing must be True, False or a Tracing"):
        OpenMultiAgent(tracing="yes")  # type: ignore[arg-type]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )


def test_importing_aegis_gov_does_not_import_opentelemetry() -> None:
    done = _python(
        "import sys, aegis_gov\n"
        "from aegis_gov import OpenMultiAgent, ScriptedAdapter, AgentConfig\n"
        "oma = OpenMultiAgent(default_adapter=ScriptedAdapter(['x']))\n"
        "oma.run_agent(AgentConfig(name='a'), 'hi')\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_tracing_without_opentelemetry_says_what_to_install() -> None:
    done = _python(
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if it were not installed\n"
        "from aegis_gov import OpenMultiAgent\n"
        "try:\n"
        "    OpenMultiAgent(tracing=True)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'aegis-gov[otel]'" in done.stdout


def test_tracing_true_follows_the_global_provider() -> None:
    done = _python(
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import "
        "InMemorySpanExporter\n"
        "from aegis_gov import OpenMultiAgent, ScriptedAdapter, AgentConfig\n"
        "oma = OpenMultiAgent(default_adapter=ScriptedAdapter(['x']), tracing=True)\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)  # after the facade was made\n"
        "oma.run_agent(AgentConfig(name='a'), 'hi')\n"
        "print(sorted(s.name for s in exporter.get_finished_spans()))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['aegis.attempt', 'chat scripted', 'invoke_agent a']"


def test_tracing_settings_are_checked() -> None:
    with pytest.raises(TypeError, match="tracer_provider must be an OpenTelemetry"):
        Tracing(tracer_provider="collector:4317")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="capture_content"):
        Tracing(capture_content="yes")  # type: ignore[arg-type]


def test_a_request_queued_behind_the_limit_is_no_failed_attempt(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # Found by an adversarial pass: tasks waiting for a place under an endpoint's limit
    # painted ~90% of attempt spans ERROR in runs where every task succeeded.
    gate = asyncio.Event()

    class Slow(ScriptedAdapter):
        async def achat(
            self,
            messages: Sequence[Message],
            *,
            system: str | None = None,
            tools: Sequence[ToolSpec] = (),
        ) -> ChatResponse:
            await gate.wait()
            return ChatResponse("ok")

    adapter = Slow(["unused"], name="m")
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=4),
        default_adapter=adapter,
        retry=RetryPolicy(initial_delay_s=0.001),
        limits={"m": Limits(max_concurrent=1)},
        tracing=Tracing(tracer_provider=provider),
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))

    async def main() -> RunResult:
        run = asyncio.ensure_future(
            oma.arun_tasks([Task(f"t{i}", agent="w") for i in range(3)], team)
        )
        for _ in range(50):  # let the two others queue (and look again) a few times
            await asyncio.sleep(0.001)
        gate.set()
        return await run

    result = asyncio.run(main())
    assert {r.status for r in result.values()} == {TaskState.DONE}
    attempts = [s for s in exporter.get_finished_spans() if s.name == "aegis.attempt"]
    queued = [s for s in attempts if _attrs(s).get("aegis.attempt.queued")]
    assert queued  # the two others did queue
    assert all(s.status.status_code is not StatusCode.ERROR for s in attempts)
