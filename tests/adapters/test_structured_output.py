"""Structured output through each real SDK (or requests) against loopback servers: the native
mechanism is in the request, and the reply's text is the JSON answer, streamed or not."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aegis_adapters import (
    ChatResponse,
    EchoAdapter,
    Message,
    OutputSchema,
    ScriptedAdapter,
    StructuredChatAdapter,
    TextDelta,
    supports_output_schema,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.adapters._structured import (
    ANSWER_NAME,
    STRUCTURED_WIRES,
    USAGE_IN,
    USAGE_OUT,
    Answers,
    assert_native,
)
from tests.adapters._support import ANTHROPIC, MODES, WEATHER, Mode, Wire, sse

pytestmark = pytest.mark.timeout(20)

SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "score": {"type": "integer"}},
    "required": ["title", "score"],
}
OUTPUT = OutputSchema(ANSWER_NAME, SCHEMA)
ANSWER = {"title": "Q3 \u00e9t\u00e9", "score": 7}


def _call(
    adapter: StructuredChatAdapter, mode: Mode, output: OutputSchema, deltas: list[str]
) -> ChatResponse:
    messages = [Message.user("Write the report.")]
    if mode == "chat":
        return adapter.chat(messages, system="Be brief.", output_schema=output)
    if mode == "achat":
        return asyncio.run(adapter.achat(messages, system="Be brief.", output_schema=output))
    items: list[TextDelta | ChatResponse] = []
    if mode == "stream":
        items = list(adapter.chat_stream(messages, system="Be brief.", output_schema=output))
    else:

        async def consume() -> None:
            stream = adapter.achat_stream(messages, system="Be brief.", output_schema=output)
            items.extend([item async for item in stream])

        asyncio.run(consume())
    deltas.extend(item.text for item in items if isinstance(item, TextDelta))
    final = items[-1]
    assert isinstance(final, ChatResponse)
    return final


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", STRUCTURED_WIRES, ids=lambda w: w.name)
def test_the_native_mechanism_is_sent_and_the_text_is_the_json_answer(
    httpserver: HTTPServer, wire: Wire, mode: Mode
) -> None:
    served = Answers(httpserver, wire, [ANSWER])
    adapter = wire.make(httpserver.url_for("").rstrip("/"))
    assert supports_output_schema(adapter)
    deltas: list[str] = []

    response = _call(adapter, mode, OUTPUT, deltas)

    assert json.loads(response.text) == ANSWER
    assert response.tool_calls == ()  # Anthropic's answer tool is not a tool call to run
    assert response.stop_reason == "end_turn"
    assert response.usage.input_tokens == USAGE_IN
    assert response.usage.output_tokens == USAGE_OUT
    if mode in {"stream", "astream"}:
        assert len(deltas) == 3
        assert "".join(deltas) == response.text  # the answer's JSON streams as text
    assert len(served.bodies) == 1
    assert_native(wire, served.bodies[0], SCHEMA)


def test_openai_sends_strict_and_description_when_asked(httpserver: HTTPServer) -> None:
    wire = next(w for w in STRUCTURED_WIRES if w.name == "openai")
    served = Answers(httpserver, wire, [ANSWER])
    adapter = wire.make(httpserver.url_for("").rstrip("/"))
    assert supports_output_schema(adapter)
    closed = {**SCHEMA, "additionalProperties": False}

    adapter.chat(
        [Message.user("go")],
        output_schema=OutputSchema(ANSWER_NAME, closed, strict=True, description="A report."),
    )

    assert served.bodies[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": ANSWER_NAME,
            "schema": closed,
            "strict": True,
            "description": "A report.",
        },
    }


def test_without_an_output_schema_nothing_is_added(httpserver: HTTPServer) -> None:
    for wire in STRUCTURED_WIRES:
        httpserver.clear()
        served = Answers(httpserver, wire, [ANSWER])
        adapter = wire.make(httpserver.url_for("").rstrip("/"))
        adapter.chat([Message.user("go")])
        body = served.bodies[0]
        assert not {"response_format", "format", "tool_choice"} & set(body), wire.name


@pytest.mark.parametrize("mode", MODES)
def test_anthropic_with_the_agents_tools_must_call_one_and_answers_through_its_own(
    httpserver: HTTPServer, mode: Mode
) -> None:
    """With other tools, tool_choice is "any": a tool call comes back as a call, the answer
    tool's input as the text."""
    both: dict[str, Any] = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": ANSWER_NAME, "input": ANSWER},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }  # fmt: skip
    stream_events: list[tuple[str | None, object]] = [
        ("message_start", {"type": "message_start", "message": {**both, "content": [],
                                                                "stop_reason": None}}),
    ]  # fmt: skip
    for index, block in enumerate(both["content"]):
        stream_events += [
            ("content_block_start", {"type": "content_block_start", "index": index,
                                     "content_block": {**block, "input": {}}}),
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                "type": "input_json_delta", "partial_json": json.dumps(block["input"])}}),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]  # fmt: skip
    stream_events += [
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                           "usage": {"output_tokens": 4}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    bodies: list[dict[str, Any]] = []

    def handler(request: Request) -> Response:
        body = json.loads(request.data)
        bodies.append(body)
        if body["stream"]:
            return Response(sse(stream_events), content_type="text/event-stream")
        return Response(json.dumps(both), content_type="application/json")

    httpserver.expect_request(ANTHROPIC.path, method="POST").respond_with_handler(handler)
    adapter = ANTHROPIC.make(httpserver.url_for("").rstrip("/"))
    assert supports_output_schema(adapter)
    messages = [Message.user("go")]
    if mode == "chat":
        response = adapter.chat(messages, tools=[WEATHER], output_schema=OUTPUT)
    elif mode == "achat":
        response = asyncio.run(adapter.achat(messages, tools=[WEATHER], output_schema=OUTPUT))
    else:
        items = _drain(adapter, mode, messages)
        assert "".join(i.text for i in items if isinstance(i, TextDelta)) == json.dumps(ANSWER)
        final = items[-1]
        assert isinstance(final, ChatResponse)
        response = final

    assert json.loads(response.text) == ANSWER
    assert [(c.name, dict(c.arguments)) for c in response.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert response.stop_reason == "tool_use"
    assert bodies[0]["tool_choice"] == {"type": "any"}
    assert [t["name"] for t in bodies[0]["tools"]] == ["get_weather", ANSWER_NAME]


def _drain(
    adapter: StructuredChatAdapter, mode: Mode, messages: list[Message]
) -> list[TextDelta | ChatResponse]:
    if mode == "stream":
        return list(adapter.chat_stream(messages, tools=[WEATHER], output_schema=OUTPUT))

    async def consume() -> list[TextDelta | ChatResponse]:
        stream = adapter.achat_stream(messages, tools=[WEATHER], output_schema=OUTPUT)
        return [item async for item in stream]

    return asyncio.run(consume())


def test_offline_and_plain_adapters_have_no_native_mechanism() -> None:
    class Plain:
        def generate(self, prompt: str, *, system: str | None = None) -> str:
            return prompt

        def stream(self, prompt: str, *, system: str | None = None) -> Any:
            yield prompt

    for adapter in (ScriptedAdapter(["x"]), EchoAdapter(), Plain(), object()):
        assert not supports_output_schema(adapter)


@pytest.mark.parametrize(
    ("name", "schema", "message"),
    [
        ("", SCHEMA, "1 to 64"),
        ("has space", SCHEMA, "1 to 64"),
        ("x" * 65, SCHEMA, "1 to 64"),
        ("ok", {"type": "array", "items": {"type": "string"}}, "JSON object"),
        ("ok", {"properties": {}}, "JSON object"),
    ],
)
def test_an_output_schema_names_its_problem(
    name: str, schema: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        OutputSchema(name, schema)


def test_an_output_schema_keeps_a_copy() -> None:
    schema = dict(SCHEMA)
    output = OutputSchema("x", schema)
    schema["type"] = "array"
    assert output.schema["type"] == "object"
    assert hash(output) == hash(OutputSchema("x", {"type": "object"}))  # the schema is not hashed


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_an_anthropic_answer_cut_short_is_returned_as_text_not_raised(
    httpserver: HTTPServer, mode: Mode
) -> None:
    """An answer tool's input cut by max_tokens is not valid JSON: it comes back as the text
    (for the caller's check to send back), where another tool's would be a malformed reply."""
    events: list[tuple[str | None, object]] = [
        ("message_start", {"type": "message_start", "message": {
            "id": "m", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [], "stop_reason": None, "usage": {"input_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "t", "name": ANSWER_NAME, "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": '{"title": "Q'}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                           "usage": {"output_tokens": 256}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    httpserver.expect_request(ANTHROPIC.path, method="POST").respond_with_data(
        sse(events), content_type="text/event-stream"
    )
    adapter = ANTHROPIC.make(httpserver.url_for("").rstrip("/"))
    assert supports_output_schema(adapter)
    deltas: list[str] = []

    response = _call(adapter, mode, OUTPUT, deltas)

    assert response.text == '{"title": "Q'
    assert deltas == ['{"title": "Q']
    assert response.stop_reason == "max_tokens"
    assert response.tool_calls == ()


@pytest.mark.parametrize("mode", MODES)
def test_an_openai_refusal_is_the_text_with_a_content_filter_stop(
    httpserver: HTTPServer, mode: Mode
) -> None:
    openai = next(w for w in STRUCTURED_WIRES if w.name == "openai")
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    reply = {
        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-test",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }  # fmt: skip
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test"}
    stream = sse([
        (None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                            "refusal": "I can't"}}]}),
        (None, {**chunk, "choices": [{"index": 0, "delta": {"refusal": " help with that."}}]}),
        (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        (None, "[DONE]"),
    ])  # fmt: skip

    def handler(request: Request) -> Response:
        if json.loads(request.data)["stream"]:
            return Response(stream, content_type="text/event-stream")
        return Response(json.dumps(reply), content_type="application/json")

    httpserver.expect_request(openai.path, method="POST").respond_with_handler(handler)
    adapter = openai.make(httpserver.url_for("").rstrip("/"))
    assert supports_output_schema(adapter)

    response = _call(adapter, mode, OUTPUT, [])

    assert response.text == "I can't help with that."
    assert response.stop_reason == "content_filter"
