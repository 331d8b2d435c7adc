"""Loopback servers that answer in each provider's structured-output wire format.

Each answer is a JSON object (Anthropic delivers it as a forced tool call's input, OpenAI and
Ollama as the message content), complete or streamed in pieces.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.adapters._support import ANTHROPIC, OLLAMA, OPENAI, Wire, ndjson, sse

ANSWER_NAME = "Report"
USAGE_IN, USAGE_OUT = 11, 5


def _pieces(text: str) -> list[str]:
    """*text* in three pieces that join back to it (a stream sends them one by one)."""
    third = max(len(text) // 3, 1)
    return [text[:third], text[third : 2 * third], text[2 * third :]]


def anthropic_body(answer: Mapping[str, object], *, stream: bool, name: str) -> tuple[str, str]:
    if not stream:
        reply = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [{"type": "tool_use", "id": "toolu_9", "name": name, "input": answer}],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT},
        }
        return json.dumps(reply), "application/json"
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": USAGE_IN, "output_tokens": 1},
        },
    }  # fmt: skip
    events: list[tuple[str | None, object]] = [
        ("message_start", start),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_9", "name": name, "input": {}}}),
    ]  # fmt: skip
    events += [
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "input_json_delta", "partial_json": piece}})
        for piece in _pieces(json.dumps(answer))
    ]  # fmt: skip
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": USAGE_OUT}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    return sse(events), "text/event-stream"


def _o_chunk(delta: Mapping[str, object], finish: str | None = None) -> dict[str, object]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def openai_body(answer: Mapping[str, object], *, stream: bool, name: str) -> tuple[str, str]:
    del name
    text = json.dumps(answer)
    usage = {"prompt_tokens": USAGE_IN, "completion_tokens": USAGE_OUT, "total_tokens": 16}
    if not stream:
        reply = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-test",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        return json.dumps(reply), "application/json"
    events: list[tuple[str | None, object]] = [
        (None, _o_chunk({"role": "assistant", "content": ""}))
    ]
    events += [(None, _o_chunk({"content": piece})) for piece in _pieces(text)]
    events += [
        (None, _o_chunk({}, "stop")),
        (None, {**_o_chunk({}), "choices": [], "usage": usage}),
        (None, "[DONE]"),
    ]
    return sse(events), "text/event-stream"


def ollama_body(answer: Mapping[str, object], *, stream: bool, name: str) -> tuple[str, str]:
    del name
    text = json.dumps(answer)
    done = {"done": True, "done_reason": "stop", "prompt_eval_count": USAGE_IN,
            "eval_count": USAGE_OUT}  # fmt: skip
    base = {"model": "llama-test", "created_at": "2026-01-01T00:00:00Z"}
    if not stream:
        reply = {**base, "message": {"role": "assistant", "content": text}, **done}
        return json.dumps(reply), "application/json"
    lines: list[object] = [
        {**base, "message": {"role": "assistant", "content": piece}, "done": False}
        for piece in _pieces(text)
    ]
    lines.append({**base, "message": {"role": "assistant", "content": ""}, **done})
    return ndjson(lines), "application/x-ndjson"


BODIES: dict[str, Callable[..., tuple[str, str]]] = {
    "anthropic": anthropic_body,
    "openai": openai_body,
    "ollama": ollama_body,
}
STRUCTURED_WIRES: tuple[Wire, ...] = (ANTHROPIC, OPENAI, OLLAMA)


class Answers:
    """Serves *answers* in order, one per request, in the wire's structured format."""

    def __init__(
        self, httpserver: HTTPServer, wire: Wire, answers: Sequence[Mapping[str, object]]
    ) -> None:
        self.wire = wire
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        httpserver.expect_request(wire.path, method="POST").respond_with_handler(self._handle)

    def _handle(self, request: Request) -> Response:
        body: dict[str, Any] = json.loads(request.data)
        with self._lock:
            index = len(self.bodies)
            self.bodies.append(body)
        answer = self.answers[min(index, len(self.answers) - 1)]
        name = ANSWER_NAME
        if self.wire.name == "anthropic" and body.get("tools"):
            name = body["tools"][-1]["name"]  # the answer tool comes last
        text, content_type = BODIES[self.wire.name](
            answer, stream=bool(body.get("stream")), name=name
        )
        return Response(text, content_type=content_type)


def assert_native(wire: Wire, body: Mapping[str, Any], schema: Mapping[str, object]) -> None:
    """*body* asked the provider for *schema* its own way, and kept it out of the prompt."""
    if wire.name == "openai":
        response_format = body["response_format"]
        assert response_format["type"] == "json_schema"
        assert response_format["json_schema"]["name"] == ANSWER_NAME
        assert response_format["json_schema"]["schema"] == schema
        assert isinstance(response_format["json_schema"]["strict"], bool)
        system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    elif wire.name == "ollama":
        assert body["format"] == schema
        system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    else:
        assert body["tool_choice"] == {"type": "tool", "name": ANSWER_NAME}
        assert body["tools"][-1]["name"] == ANSWER_NAME
        assert body["tools"][-1]["input_schema"] == schema
        system = body.get("system", "")
    assert "JSON Schema" not in system  # the schema is not in the prompt as well
