"""Structured output end to end: ``AgentConfig(output_type=...)`` through the three real SDK
adapters against loopback servers (native mechanisms), and through offline and plain adapters
(the schema in the prompt); an invalid first answer is corrected on retry."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pickle
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import attrs
import pydantic
import pytest
from aegis_gov import (
    AgentConfig,
    OpenMultiAgent,
    OutputSchema,
    OutputValidationError,
    ProviderUnavailableError,
    RetryPolicy,
    RunEvent,
    RunResult,
    ScriptedAdapter,
    Task,
    TaskOutputDelta,
    TaskRetrying,
    TaskState,
    ToolRegistry,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12
from werkzeug import Request, Response

from tests.adapters._structured import (
    ANSWER_NAME,
    BODIES,
    STRUCTURED_WIRES,
    Answers,
    assert_native,
)
from tests.adapters._support import Wire

pytestmark = pytest.mark.timeout(30)


class Report(pydantic.BaseModel):
    title: str
    score: int


SCHEMA = pydantic.TypeAdapter(Report).json_schema()
GOOD = {"title": "Q3", "score": 7}
BAD = {"title": "draft"}  # no score

Mode = Literal["run_agent", "arun_agent", "run_tasks", "arun_tasks"]
MODES: tuple[Mode, ...] = ("run_agent", "arun_agent", "run_tasks", "arun_tasks")


async def _no_wait(_seconds: float) -> None:
    return None


def _oma(adapter: Any) -> OpenMultiAgent:
    return OpenMultiAgent(
        default_adapter=adapter,
        sleep=lambda _s: None,
        async_sleep=_no_wait,
        retry=RetryPolicy(max_attempts=2),
        seed=1,
    )


def _run(oma: OpenMultiAgent, agent: AgentConfig[Report], mode: Mode) -> tuple[object, str]:
    """Run *agent* once in *mode*: (its value, its output text)."""
    events: list[RunEvent] = []
    if mode == "run_agent":
        result = oma.run_agent(agent, "Write the report.")
        return result.value, result.output
    if mode == "arun_agent":
        result = asyncio.run(oma.arun_agent(agent, "Write the report."))
        return result.value, result.output
    team = OpenMultiAgent.create_team("t", agent)
    tasks = [Task("report", "Write the report.", agent=agent.name)]
    if mode == "run_tasks":
        run = oma.run_tasks(tasks, team, on_event=events.append)
    else:
        run = asyncio.run(oma.arun_tasks(tasks, team, on_event=events.append))
    assert run["report"].status is TaskState.DONE, run["report"].error
    retried = [e for e in events if isinstance(e, TaskRetrying)]
    assert [e.error.split("\n")[0] for e in retried] == ["invalid output: /score: Field required"]
    chunks = "".join(e.text for e in events if isinstance(e, TaskOutputDelta))
    # Streamed: the invalid answer's chunks, then (after TaskRetrying) the corrected one's.
    assert json.loads(chunks[chunks.index("}") + 1 :]) == GOOD
    return run["report"].value, run["report"].output or ""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", STRUCTURED_WIRES, ids=lambda w: w.name)
def test_an_invalid_answer_is_sent_back_and_the_corrected_one_returned(
    httpserver: HTTPServer, wire: Wire, mode: Mode
) -> None:
    served = Answers(httpserver, wire, [BAD, GOOD])
    adapter = wire.make(httpserver.url_for("").rstrip("/"))
    agent = AgentConfig("writer", "You write reports.", output_type=Report)
    assert agent.output_schema is not None
    assert agent.output_schema.name == ANSWER_NAME
    assert agent.output_schema.schema == SCHEMA

    value, output = _run(_oma(adapter), agent, mode)

    assert value == Report(title="Q3", score=7)
    assert json.loads(output) == GOOD
    assert len(served.bodies) == 2
    for body in served.bodies:
        assert_native(wire, body, SCHEMA)
    correction = served.bodies[1]["messages"][-1]
    assert correction["role"] == "user"
    assert "/score: Field required" in correction["content"]
    previous = served.bodies[1]["messages"][-2]
    assert previous["role"] == "assistant"
    assert json.loads(previous["content"]) == BAD


@pytest.mark.parametrize("wire", STRUCTURED_WIRES, ids=lambda w: w.name)
def test_answers_still_invalid_after_the_retries_fail_the_task_with_the_problem(
    httpserver: HTTPServer, wire: Wire
) -> None:
    served = Answers(httpserver, wire, [BAD])
    adapter = wire.make(httpserver.url_for("").rstrip("/"))
    agent = AgentConfig("writer", output_type=Report, output_retries=1)
    oma = _oma(adapter)

    with pytest.raises(OutputValidationError, match="2 answer") as caught:
        oma.run_agent(agent, "Write the report.")
    assert caught.value.agent == "writer"
    assert caught.value.answers == 2
    assert caught.value.problem == "/score: Field required"
    assert json.loads(caught.value.answer) == BAD
    assert len(served.bodies) == 2

    run = oma.run_tasks([Task("r", "Write.", agent="writer")], oma.create_team("t", agent))
    assert run["r"].status is TaskState.FAILED
    assert run["r"].error_type == "OutputValidationError"
    assert "/score: Field required" in (run["r"].error or "")
    assert run["r"].attempts == 2


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Person(TypedDict):
    name: str
    age: int


POINT_SCHEMA: dict[str, object] = {
    "type": "object",
    "title": "Point",
    "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
    "required": ["x", "y"],
}


@pytest.mark.parametrize(
    ("output_type", "answers", "expected"),
    [
        (Point, ['{"x": 1}', '{"x": 1, "y": 2}'], Point(1, 2)),
        (Person, ['{"name": "Ada", "age": "old"}', '{"name": "Ada", "age": 36}'],
         {"name": "Ada", "age": 36}),
        (POINT_SCHEMA, ['{"x": 1, "y": "2"}', '```json\n{"x": 1, "y": 2}\n```'],
         {"x": 1, "y": 2}),
        (Report, ["Sure! Here it is.", '{"title": "t", "score": 1}'], Report(title="t", score=1)),
    ],
    ids=["dataclass", "typeddict", "json-schema", "prose"],
)  # fmt: skip
def test_without_a_native_mechanism_the_schema_is_in_the_prompt(
    output_type: Any, answers: list[str], expected: object
) -> None:
    model = ScriptedAdapter(answers)
    agent = AgentConfig("a", "Be exact.", output_type=output_type)

    result = _oma(model).run_agent(agent, "Give it.")

    assert result.value == expected
    assert result.attempts == 2
    first, second = model.calls
    for call in (first, second):
        assert call.system is not None
        assert call.system.startswith("Be exact.\n\nAnswer with one JSON object")
        schema = json.loads(call.system.split("\n", 3)[-1])
        assert schema["type"] == "object"
    assert [m.role for m in second.messages] == ["user", "assistant", "user"]
    assert second.messages[1].content == answers[0]
    assert second.messages[2].content.startswith("Your answer does not match")


def test_a_plain_adapter_gets_the_schema_and_the_problem_in_its_prompt() -> None:
    class Plain:
        """Only generate and stream: it sees the system prompt and the last message."""

        def __init__(self) -> None:
            self.prompts: list[tuple[str, str | None]] = []

        def generate(self, prompt: str, *, system: str | None = None) -> str:
            self.prompts.append((prompt, system))
            return '{"title": "t"}' if len(self.prompts) == 1 else '{"title": "t", "score": 2}'

        def stream(self, prompt: str, *, system: str | None = None) -> Iterator[str]:
            yield self.generate(prompt, system=system)

    plain = Plain()
    result = _oma(plain).run_agent(AgentConfig("a", output_type=Report), "Go.")

    assert result.value == Report(title="t", score=2)
    assert "score" in (plain.prompts[0][1] or "")
    assert "/score: Field required" in plain.prompts[1][0]


def test_later_tasks_get_the_answer_as_json_and_the_run_round_trips_it() -> None:
    model = ScriptedAdapter(['{"title": "Q3", "score": 7}', "Looks good."])
    writer = AgentConfig("writer", output_type=Report)
    reviewer = AgentConfig("reviewer")
    oma = _oma(model)
    tasks = [
        Task("write", "Write the report.", agent="writer"),
        Task("review", "Review it.", agent="reviewer", depends_on=["write"]),
    ]

    run = oma.run_tasks(tasks, oma.create_team("t", writer, reviewer))

    assert run["write"].value == Report(title="Q3", score=7)
    assert run["review"].value is None  # no output_type: the answer is the text
    assert run["review"].output == "Looks good."
    assert model.calls[1].prompt.endswith('--- write ---\n{"title": "Q3", "score": 7}')
    data = json.loads(run.to_json())
    assert data["tasks"][0]["value"] == GOOD
    assert "value" not in data["tasks"][1]
    back = RunResult.from_json(run.to_json())
    assert back["write"].value == GOOD  # JSON data once read back
    assert back == run
    assert back.to_json() == run.to_json()


def test_stream_agent_refuses_an_agent_with_an_output_type() -> None:
    oma = _oma(ScriptedAdapter(["{}"]))
    agent = AgentConfig("a", output_type=Report)
    with pytest.raises(TypeError, match="output_type"):
        oma.stream_agent(agent, "go")
    with pytest.raises(TypeError, match="output_type"):
        oma.astream_agent(agent, "go")


@pytest.mark.parametrize(
    ("output_type", "error", "message"),
    [
        (int, ValueError, "must describe a JSON object"),
        (list[int], ValueError, "must describe a JSON object"),
        ({"type": "array"}, ValueError, "must describe a JSON object"),
        ({"type": "object", "properties": {"x": {"type": 5}}}, ValueError, "not a valid JSON"),
        (object(), TypeError, "has no JSON Schema"),
    ],
    ids=["int", "list", "array-schema", "bad-schema", "object"],
)
def test_an_output_type_that_cannot_be_a_json_object_is_refused_at_once(
    output_type: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        AgentConfig("a", output_type=output_type)


@pytest.mark.parametrize("retries", [-1, True, 1.5])
def test_output_retries_must_be_a_count(retries: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="output_retries"):
        AgentConfig("a", output_type=Report, output_retries=retries)


def test_an_agent_config_evolves_with_its_output_type() -> None:
    agent = AgentConfig("a", "p", output_type=Report, output_retries=0)
    other = attrs.evolve(agent, name="b")
    assert other.output_type is Report
    assert other.output_schema is not None
    assert other.output_schema.schema == SCHEMA
    assert other.output_schema.strict is False  # pydantic's schema is not closed
    assert other.output_retries == 0
    assert AgentConfig("c").output_schema is None
    assert other == attrs.evolve(other)
    assert AgentConfig("d", output_type=POINT_SCHEMA) == AgentConfig("d", output_type=POINT_SCHEMA)
    points: object = AgentConfig("d", output_type=Point)
    assert points != AgentConfig("d", output_type=Report)


def test_the_mechanism_is_chosen_per_endpoint_when_a_task_falls_back(
    httpserver: HTTPServer,
) -> None:
    """The agent's own (scripted, prompted) endpoint is down; its OpenAI fallback is asked
    natively, without the schema in its prompt."""
    openai = next(w for w in STRUCTURED_WIRES if w.name == "openai")
    served = Answers(httpserver, openai, [GOOD])
    failing = ScriptedAdapter([ProviderUnavailableError("scripted", "down")], cycle=True)
    fallback = openai.make(httpserver.url_for("").rstrip("/"))
    agent = AgentConfig("a", "Be exact.", adapter=failing, fallbacks=[fallback], output_type=Report)

    result = _oma(None).run_agent(agent, "go")

    assert result.value == Report(title="Q3", score=7)
    assert result.endpoint.startswith("openai|")
    assert failing.calls[0].system is not None
    assert "JSON Schema" in failing.calls[0].system
    assert_native(openai, served.bodies[0], SCHEMA)
    assert served.bodies[0]["messages"][0] == {"role": "system", "content": "Be exact."}


class Closed(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    title: str


class ClosedNested(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    inner: Closed
    items: list[Closed]


class WithDefault(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    title: str = "x"


class OpenMap(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    counts: dict[str, int]


@pytest.mark.parametrize(
    ("output_type", "strict"),
    [(Closed, True), (ClosedNested, True), (Report, False), (WithDefault, False),
     (OpenMap, False)],
)  # fmt: skip
def test_strict_is_asked_only_for_schemas_openai_strict_mode_takes(
    output_type: type[object], strict: bool
) -> None:
    schema = AgentConfig("a", output_type=output_type).output_schema
    assert schema is not None
    assert schema.strict is strict


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answers=st.lists(st.booleans(), min_size=1, max_size=6),
    retries=st.integers(min_value=0, max_value=4),
)
def test_an_answer_is_accepted_iff_a_valid_one_comes_within_the_retries(
    answers: list[bool], retries: int
) -> None:
    """Against a model whose answers are valid or not in a given order: success exactly when
    a valid answer is among the first ``retries + 1``, after that many requests."""
    replies = [f'{{"title": "t{i}", "score": {i}}}' if ok else '{"title": "bad"}'
               for i, ok in enumerate(answers)]  # fmt: skip
    model = ScriptedAdapter(replies, cycle=True)
    agent = AgentConfig("a", output_type=Report, output_retries=retries)
    first_valid = answers.index(True) if True in answers else None
    events: list[RunEvent] = []
    run = _oma(model).run_tasks(
        [Task("t", "go", agent="a")], OpenMultiAgent.create_team("t", agent), on_event=events.append
    )
    if first_valid is not None and first_valid <= retries:
        assert run["t"].status is TaskState.DONE
        assert run["t"].value == Report(title=f"t{first_valid}", score=first_valid)
        assert len(model.calls) == first_valid + 1
    else:
        assert run["t"].status is TaskState.FAILED
        assert run["t"].error_type == "OutputValidationError"
        assert len(model.calls) == retries + 1
    assert run["t"].attempts == len(model.calls)
    retried = [e for e in events if isinstance(e, TaskRetrying)]
    assert len(retried) == len(model.calls) - 1  # one per answer sent back


def _tool_call_reply(wire: Wire) -> dict[str, Any]:
    """Each provider's complete reply asking for add(a=2, b=3)."""
    if wire.name == "anthropic":
        return {
            "id": "m", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "add",
                         "input": {"a": 2, "b": 3}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1},
        }  # fmt: skip
    if wire.name == "openai":
        call = {"id": "call_1", "type": "function",
                "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}  # fmt: skip
        return {
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-test",
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }  # fmt: skip
    return {
        "model": "llama-test", "created_at": "2026-01-01T00:00:00Z", "done": True,
        "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 1,
        "message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]},
    }  # fmt: skip


@pytest.mark.parametrize("wire", STRUCTURED_WIRES, ids=lambda w: w.name)
def test_an_agent_with_tools_uses_them_then_answers_in_its_output_type(
    httpserver: HTTPServer, wire: Wire
) -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: Request) -> Response:
        body = json.loads(request.data)
        bodies.append(body)
        if len(bodies) == 1:
            return Response(json.dumps(_tool_call_reply(wire)), content_type="application/json")
        text, kind = BODIES[wire.name]({"title": "sum", "score": 5}, stream=False, name="Report")
        return Response(text, content_type=kind)

    httpserver.expect_request(wire.path, method="POST").respond_with_handler(handler)
    registry = ToolRegistry()
    registry.define_tool(
        name="add",
        description="Add two integers",
        fn=lambda a, b: str(a + b),
        schema={
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    )
    oma = OpenMultiAgent(
        default_adapter=wire.make(httpserver.url_for("").rstrip("/")), tools=registry
    )
    agent = AgentConfig("calc", tools=["add"], output_type=Report)

    result = oma.run_agent(agent, "Add 2 and 3, report it.")

    assert result.value == Report(title="sum", score=5)
    assert [(c.tool, c.result) for c in result.tool_calls] == [("add", "5")]
    assert len(bodies) == 2
    for body in bodies:
        tools = body["tools"]
        names = [t.get("name") or t["function"]["name"] for t in tools]
        if wire.name == "anthropic":  # the agent's tool, then the answer tool; some call forced
            assert names == ["add", "Report"]
            assert body["tool_choice"] == {"type": "any"}
        else:
            assert names == ["add"]
            assert_native(wire, body, SCHEMA)


def test_requests_made_on_an_executor_carry_the_schema_too(httpserver: HTTPServer) -> None:
    """With ``executor=``, only the provider call moves (pickled for a process pool): the
    request still asks natively, and the answer is checked here."""
    openai = next(w for w in STRUCTURED_WIRES if w.name == "openai")
    served = Answers(httpserver, openai, [BAD, GOOD])
    agent = AgentConfig("writer", output_type=Report)
    oma = _oma(openai.make(httpserver.url_for("").rstrip("/")))
    assert pickle.loads(pickle.dumps(agent.output_schema)) == agent.output_schema

    with ThreadPoolExecutor(max_workers=1) as executor:
        run = oma.run_tasks(
            [Task("r", "Write.", agent="writer")],
            oma.create_team("t", agent),
            executor=executor,
        )

    assert isinstance(agent.output_schema, OutputSchema)
    assert run["r"].value == Report(title="Q3", score=7)
    assert len(served.bodies) == 2
    for body in served.bodies:
        assert_native(openai, body, SCHEMA)


def test_a_schema_that_is_not_json_or_a_type_with_an_unknown_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not JSON data"):
        AgentConfig("a", output_type={"type": "object", "default": {1, 2}})

    class Later(pydantic.BaseModel):
        child: Missing  # type: ignore[name-defined]  # noqa: F821  # never defined

    with pytest.raises(TypeError, match="has no JSON Schema"):
        AgentConfig("a", output_type=Later)
