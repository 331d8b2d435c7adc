"""Loopback servers and each provider's wire format, shared by the adapter tests."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs
from aegis_adapters import (
    AnthropicAdapter,
    BaseChatAdapter,
    ChatResponse,
    Message,
    OllamaAdapter,
    OpenAIAdapter,
    TextDelta,
    ToolCall,
    ToolSpec,
)

Mode = Literal["chat", "stream", "achat", "astream"]
MODES: tuple[Mode, ...] = ("chat", "stream", "achat", "astream")
STREAM_MODES: tuple[Mode, ...] = ("stream", "astream")

WEATHER = ToolSpec(
    "get_weather",
    "Current weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
SYSTEM = "Be brief."


OPENAI_REPLY: dict[str, object] = {
    "id": "c1",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
"""A complete OpenAI chat completion answering "hi"."""


def run(
    adapter: BaseChatAdapter,
    mode: Mode,
    messages: Iterable[Message] = (Message.user("Weather in Paris?"),),
    *,
    system: str | None = SYSTEM,
    tools: tuple[ToolSpec, ...] = (WEATHER,),
    deltas: list[str] | None = None,
) -> ChatResponse:
    """Drive one call in *mode*; for streams, check there is exactly one final response."""
    msgs = list(messages)
    seen: list[str] = [] if deltas is None else deltas
    items: list[TextDelta | ChatResponse] = []
    if mode == "chat":
        return adapter.chat(msgs, system=system, tools=tools)
    if mode == "achat":
        return asyncio.run(adapter.achat(msgs, system=system, tools=tools))
    if mode == "stream":
        for item in adapter.chat_stream(msgs, system=system, tools=tools):
            items.append(item)
            if isinstance(item, TextDelta):
                seen.append(item.text)
    else:

        async def consume() -> None:
            async for item in adapter.achat_stream(msgs, system=system, tools=tools):
                items.append(item)
                if isinstance(item, TextDelta):
                    seen.append(item.text)

        asyncio.run(consume())
    finals = [item for item in items if isinstance(item, ChatResponse)]
    assert len(finals) == 1
    assert items[-1] is finals[0]
    assert "".join(seen) == finals[0].text
    return finals[0]


def sse(events: Iterable[tuple[str | None, object]]) -> str:
    """Server-sent events: ``event:`` line (if named) and a JSON (or raw string) ``data:`` line."""
    out = []
    for name, data in events:
        head = f"event: {name}\n" if name else ""
        body = data if isinstance(data, str) else json.dumps(data)
        out.append(f"{head}data: {body}\n\n")
    return "".join(out)


def ndjson(lines: Iterable[object]) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


@attrs.frozen
class Wire:
    """One provider's wire format, as a loopback server must speak it."""

    name: str
    path: str
    stream_type: str
    make: Callable[..., BaseChatAdapter]
    reply: Mapping[str, object]
    stream_ok: str
    stream_incomplete: str
    stream_error: str
    stream_malformed: str
    error_body: Callable[[str, str], object]
    check_request: Callable[[Mapping[str, Any], bool], None]
    check_conversation: Callable[[Mapping[str, Any]], None]
    stream_prefix: str  # a first event, sent before a stream drops or stalls


# -- Anthropic -----------------------------------------------------------------------------

_A_START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1},
    },
}
_A_TEXT = [
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Hello"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": " world"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
]  # fmt: skip
_A_TOOL = [
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": '{"city": '}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta",
                       "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": 7}}),
]  # fmt: skip
_A_STOP = [("message_stop", {"type": "message_stop"})]


def _anthropic_request(body: Mapping[str, Any], stream: bool) -> None:
    assert body["model"] == "claude-test"
    assert body["system"] == SYSTEM
    assert all(m["role"] != "system" for m in body["messages"])
    assert body["messages"][-1] == {"role": "user", "content": "Weather in Paris?"}
    assert body["max_tokens"] == 256
    assert body["temperature"] == 0.25
    assert body["tools"] == [
        {"name": "get_weather", "description": WEATHER.description,
         "input_schema": dict(WEATHER.input_schema)}
    ]  # fmt: skip
    assert body["stream"] is stream


def _anthropic_conversation(body: Mapping[str, Any]) -> None:
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C", "is_error": False},
        ]},
    ]  # fmt: skip


ANTHROPIC = Wire(
    name="anthropic",
    path="/v1/messages",
    stream_type="text/event-stream",
    make=lambda url, **kw: AnthropicAdapter(
        "claude-test", api_key="sk-test", base_url=url, max_tokens=256, temperature=0.25, **kw
    ),
    reply={
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [
            {"type": "text", "text": "Hello world"},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 7},
    },
    stream_ok=sse([("message_start", _A_START), *_A_TEXT, *_A_TOOL, *_A_STOP]),
    stream_incomplete=sse([("message_start", _A_START), *_A_TEXT]),
    stream_error=sse(
        [
            ("message_start", _A_START),
            (
                "error",
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ),
        ]
    ),
    stream_malformed=sse([("message_start", _A_START), ("content_block_delta", "{not json")]),
    error_body=lambda kind, message: {"type": "error", "error": {"type": kind, "message": message}},
    check_request=_anthropic_request,
    check_conversation=_anthropic_conversation,
    stream_prefix=sse([("message_start", _A_START), *_A_TEXT[:3]]),
)

# -- OpenAI --------------------------------------------------------------------------------


def _o_chunk(delta: Mapping[str, object], finish: str | None = None) -> dict[str, object]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


_O_TEXT = [
    (None, _o_chunk({"role": "assistant", "content": ""})),
    (None, _o_chunk({"content": "Hello"})),
    (None, _o_chunk({"content": " world"})),
]
_O_TOOL = [
    (None, _o_chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                     "function": {"name": "get_weather", "arguments": ""}}]})),
    (None, _o_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]})),
    (None, _o_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]})),
    (None, _o_chunk({}, "tool_calls")),
    (None, {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-test", "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}),
    (None, "[DONE]"),
]  # fmt: skip


def _openai_request(body: Mapping[str, Any], stream: bool) -> None:
    assert body["model"] == "gpt-test"
    assert body["messages"][0] == {"role": "system", "content": SYSTEM}
    assert body["messages"][-1] == {"role": "user", "content": "Weather in Paris?"}
    assert body["max_tokens"] == 256
    assert body["temperature"] == 0.25
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather",
         "description": WEATHER.description, "parameters": dict(WEATHER.input_schema)}}
    ]  # fmt: skip
    assert body["stream"] is stream
    if stream:
        assert body["stream_options"] == {"include_usage": True}
    else:
        assert "stream_options" not in body


def _openai_conversation(body: Mapping[str, Any]) -> None:
    assert body["messages"][1:] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]  # fmt: skip


OPENAI = Wire(
    name="openai",
    path="/v1/chat/completions",
    stream_type="text/event-stream",
    make=lambda url, **kw: OpenAIAdapter(
        "gpt-test", api_key="sk-test", base_url=f"{url}/v1", max_tokens=256, temperature=0.25, **kw
    ),
    reply={
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello world",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    },
    stream_ok=sse([*_O_TEXT, *_O_TOOL]),
    stream_incomplete=sse(_O_TEXT),
    stream_error=sse(
        [*_O_TEXT, (None, {"error": {"message": "overloaded", "type": "server_error"}})]
    ),
    stream_malformed=sse([*_O_TEXT, (None, "{not json")]),
    error_body=lambda kind, message: {"error": {"type": kind, "code": kind, "message": message}},
    check_request=_openai_request,
    check_conversation=_openai_conversation,
    stream_prefix=sse(_O_TEXT),
)

# -- Ollama --------------------------------------------------------------------------------


def _l_line(content: str, **extra: object) -> dict[str, object]:
    message: dict[str, object] = {"role": "assistant", "content": content}
    if "tool_calls" in extra:
        message["tool_calls"] = extra.pop("tool_calls")
    return {"model": "llama-test", "created_at": "2026-01-01T00:00:00Z", "message": message,
            "done": False, **extra}  # fmt: skip


_L_TOOLS = [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
_L_DONE = {"done": True, "done_reason": "stop", "total_duration": 5_000_000,
           "prompt_eval_count": 12, "eval_count": 7}  # fmt: skip
_L_TEXT = [_l_line("Hello"), _l_line(" world")]


def _ollama_request(body: Mapping[str, Any], stream: bool) -> None:
    assert body["model"] == "llama-test"
    assert body["messages"][0] == {"role": "system", "content": SYSTEM}
    assert body["messages"][-1] == {"role": "user", "content": "Weather in Paris?"}
    assert body["options"] == {"num_predict": 256, "temperature": 0.25, "seed": 1}
    assert body["keep_alive"] == "5m"
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather",
         "description": WEATHER.description, "parameters": dict(WEATHER.input_schema)}}
    ]  # fmt: skip
    assert body["stream"] is stream  # always sent: Ollama streams by default


def _ollama_conversation(body: Mapping[str, Any]) -> None:
    assert body["messages"][1:] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "18C", "tool_name": "get_weather"},
    ]  # fmt: skip


OLLAMA = Wire(
    name="ollama",
    path="/api/chat",
    stream_type="application/x-ndjson",
    make=lambda url, **kw: OllamaAdapter(
        "llama-test",
        base_url=url,
        max_tokens=256,
        temperature=0.25,
        options={"seed": 1},
        keep_alive="5m",
        **({"timeout_s": kw["timeout_s"], "connect_timeout_s": kw["timeout_s"]} if kw else {}),
    ),
    reply={
        "model": "llama-test",
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": "Hello world", "tool_calls": _L_TOOLS},
        **_L_DONE,
    },
    stream_ok=ndjson([*_L_TEXT, _l_line("", tool_calls=_L_TOOLS), _l_line("", **_L_DONE)]),
    stream_incomplete=ndjson(_L_TEXT),
    stream_error=ndjson([*_L_TEXT, {"error": "model runner has unexpectedly stopped"}]),
    stream_malformed=ndjson(_L_TEXT) + "{not json\n",
    error_body=lambda kind, message: {"error": message},
    check_request=_ollama_request,
    check_conversation=_ollama_conversation,
    stream_prefix=ndjson(_L_TEXT),
)

WIRES = (ANTHROPIC, OPENAI, OLLAMA)

CONVERSATION = (
    Message.user("Weather in Paris?"),
    Message.assistant("Let me look.", (ToolCall("call_1", "get_weather", {"city": "Paris"}),)),
    Message.tool_result(ToolCall("call_1", "get_weather", {"city": "Paris"}), "18C"),
)


# -- a raw socket server, for what pytest-httpserver cannot do: drop and stall ---------------


class RawServer:
    """Accepts connections on 127.0.0.1, reads one request, then runs *respond* on the socket.

    ``release`` is set at teardown so stalled handlers end.
    """

    def __init__(self, respond: Callable[[socket.socket, threading.Event], None]) -> None:
        self.respond = respond
        self.release = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.threads: list[threading.Thread] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(body) < length:
                body += conn.recv(65536)
            self.respond(conn, self.release)

    def close(self) -> None:
        self.release.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=5)


def refused_url() -> str:
    """A loopback URL where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
