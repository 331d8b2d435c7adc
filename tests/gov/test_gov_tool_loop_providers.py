"""The tool-calling loop end to end through each real SDK, against loopback servers that
answer with tool calls in each provider's wire format and then read the tool's result."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aegis_gov import (
    AgentConfig,
    AnthropicAdapter,
    ChatAdapter,
    OllamaAdapter,
    OpenAIAdapter,
    OpenMultiAgent,
    RunEvent,
    Task,
    TaskState,
    ToolCalled,
    ToolRegistry,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

ADD_SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}


def _anthropic(body: dict[str, Any]) -> dict[str, Any] | None:
    """The tool result the model was sent, if any; else None."""
    last = body["messages"][-1]
    if isinstance(last["content"], list):
        for block in last["content"]:
            if block.get("type") == "tool_result":
                return {"id": block["tool_use_id"], "content": block["content"]}
    return None


def _anthropic_reply(body: dict[str, Any], result: dict[str, Any] | None) -> dict[str, Any]:
    usage = {"input_tokens": 10, "output_tokens": 4}
    base = {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"]}
    if result is None:
        assert body["tools"] == [
            {"name": "add", "description": "Add two integers", "input_schema": ADD_SCHEMA}
        ]
        content = [
            {"type": "text", "text": "Let me add."},
            {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 2, "b": 3}},
        ]
        return {**base, "content": content, "stop_reason": "tool_use", "usage": usage}
    text = f"The sum is {_text(result['content'])}."
    content = [{"type": "text", "text": text}]
    return {**base, "content": content, "stop_reason": "end_turn", "usage": usage}


def _text(content: object) -> str:
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content)
    return str(content)


def _openai(body: dict[str, Any]) -> dict[str, Any] | None:
    last = body["messages"][-1]
    if last["role"] == "tool":
        return {"id": last["tool_call_id"], "content": last["content"]}
    return None


def _openai_reply(body: dict[str, Any], result: dict[str, Any] | None) -> dict[str, Any]:
    usage = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
    if result is None:
        assert body["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "add",
                    "description": "Add two integers",
                    "parameters": ADD_SCHEMA,
                },
            }
        ]
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "add", "arguments": json.dumps({"a": 2, "b": 3})},
        }
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": f"The sum is {_text(result['content'])}."}
        finish = "stop"
    choice = {"index": 0, "message": message, "finish_reason": finish}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [choice],
        "usage": usage,
    }


def _ollama(body: dict[str, Any]) -> dict[str, Any] | None:
    last = body["messages"][-1]
    if last["role"] == "tool":
        return {"id": last.get("tool_name"), "content": last["content"]}
    return None


def _ollama_reply(body: dict[str, Any], result: dict[str, Any] | None) -> dict[str, Any]:
    assert body["stream"] is False
    if result is None:
        assert body["tools"][0]["function"]["name"] == "add"
        calls = [{"function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]
        message: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": calls}
    else:
        message = {"role": "assistant", "content": f"The sum is {result['content']}."}
    return {
        "model": body["model"],
        "created_at": "2026-11-25T00:00:00Z",
        "message": message,
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 10,
        "eval_count": 4,
    }


Reader = Callable[[dict[str, Any]], dict[str, Any] | None]
Replier = Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]]
PROVIDERS: dict[str, tuple[str, Reader, Replier, Callable[[str], ChatAdapter]]] = {
    "anthropic": (
        "/v1/messages",
        _anthropic,
        _anthropic_reply,
        lambda url: AnthropicAdapter("claude-test", api_key="sk-test", base_url=url),
    ),
    "openai": (
        "/v1/chat/completions",
        _openai,
        _openai_reply,
        lambda url: OpenAIAdapter("gpt-test", api_key="sk-test", base_url=url + "/v1"),
    ),
    "ollama": (
        "/api/chat",
        _ollama,
        _ollama_reply,
        lambda url: OllamaAdapter("llama-test", base_url=url),
    ),
}


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_tool_loop_through_each_provider(provider: str, httpserver: HTTPServer) -> None:
    path, read_result, reply, make = PROVIDERS[provider]
    results_seen: list[dict[str, Any] | None] = []

    def handler(request: Request) -> Response:
        body = json.loads(request.get_data())
        result = read_result(body)
        results_seen.append(result)
        return Response(json.dumps(reply(body, result)), content_type="application/json")

    httpserver.expect_request(path, method="POST").respond_with_handler(handler)
    registry = ToolRegistry()
    registry.define_tool("add", "Add two integers", lambda a, b: a + b, ADD_SCHEMA)
    adapter = make(httpserver.url_for("/").rstrip("/"))
    oma = OpenMultiAgent(default_adapter=adapter, tools=registry)
    team = OpenMultiAgent.create_team("t", AgentConfig(name="calc", tools=["add"]))
    events: list[RunEvent] = []
    run = oma.run_tasks(
        [Task(id="sum", description="What is 2+3?", agent="calc")],
        team,
        on_event=events.append,
        stream=False,
    )

    assert run["sum"].status is TaskState.DONE, run["sum"].error
    assert run["sum"].output == "The sum is 5."
    assert results_seen[0] is None
    assert results_seen[1] is not None
    assert _text(results_seen[1]["content"]) == "5"
    assert [c.tool for c in run["sum"].tool_calls] == ["add"]
    assert run["sum"].tool_calls[0].arguments == {"a": 2, "b": 3}
    assert [e.result for e in events if isinstance(e, ToolCalled)] == ["5"]
    assert run["sum"].usage.input_tokens == 20
