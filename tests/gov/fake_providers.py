"""Loopback stand-ins for provider APIs, speaking their real wire formats (for gov tests)."""

from __future__ import annotations

import json
from collections.abc import Callable

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

Answer = Callable[[dict[str, object]], str]


def _last_user_text(body: dict[str, object]) -> str:
    messages = body.get("messages")
    assert isinstance(messages, list)
    content = messages[-1]["content"]
    if isinstance(content, list):
        return " ".join(str(block.get("text", "")) for block in content)
    return str(content)


def serve_anthropic(server: HTTPServer, answer: Answer | None = None) -> list[dict[str, object]]:
    """Answer POST /v1/messages like Anthropic's Messages API (JSON or SSE); return requests."""
    seen: list[dict[str, object]] = []

    def handler(request: Request) -> Response:
        body = json.loads(request.get_data())
        seen.append(body)
        text = answer(body) if answer else f"answer to: {_last_user_text(body)[:40]}"
        usage = {"input_tokens": 12, "output_tokens": 7}
        if not body.get("stream"):
            payload = {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage,
            }
            return Response(json.dumps(payload), content_type="application/json")
        events = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "model": body["model"],
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": 12, "output_tokens": 1},
                    },
                },
            ),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            ("ping", {"type": "ping"}),
        ]
        events.extend(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": word + " "},
                },
            )
            for word in text.split(" ")
        )
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 7},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        sse = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
        return Response(sse, content_type="text/event-stream")

    server.expect_request("/v1/messages", method="POST").respond_with_handler(handler)
    return seen
