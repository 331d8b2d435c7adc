"""An agent runs only the tools it was given, within per-reply and per-conversation limits."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
from aegis_gov import (
    AgentConfig,
    ChatResponse,
    Message,
    OpenMultiAgent,
    RunEvent,
    RunResult,
    ScriptedAdapter,
    Task,
    TaskState,
    ToolCall,
    ToolCalled,
    ToolCallLimitError,
    ToolNotOfferedError,
    ToolRegistry,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

SECRET = "sk-ant-SECRET-0123456789"


def _run(
    oma: OpenMultiAgent, agent: AgentConfig, *, use_async: bool
) -> tuple[RunResult, list[RunEvent]]:
    events: list[RunEvent] = []
    tasks = [Task(id="t", description="go", agent=agent.name)]
    team = OpenMultiAgent.create_team("team", agent)
    if use_async:
        result = asyncio.run(oma.arun_tasks(tasks, team, on_event=events.append, stream=False))
    else:
        result = oma.run_tasks(tasks, team, on_event=events.append, stream=False)
    return result, events


def _noted(log: list[int], item: int, result: str) -> str:
    log.append(item)
    return result


def _all_text(adapter: ScriptedAdapter) -> str:
    return "\n".join(m.content for call in adapter.calls for m in call.messages)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_an_agent_without_tools_runs_none_of_the_builtins(tmp_path: Path, use_async: bool) -> None:
    (tmp_path / ".env").write_text(f"ANTHROPIC_API_KEY={SECRET}\n")
    registry = ToolRegistry(root=tmp_path, shell_allowlist=["cat"])
    registry.memory.store("notes", SECRET)
    asked = (
        ToolCall(id="1", name="file_read", arguments={"path": ".env"}),
        ToolCall(id="2", name="shell", arguments={"command": "cat .env"}),
        ToolCall(id="3", name="memory_retrieve", arguments={"key": "notes"}),
    )

    def reply(messages: Sequence[Message]) -> ChatResponse:
        if messages[-1].role == "tool":
            return ChatResponse(text="done: " + " | ".join(m.content for m in messages[2:]))
        return ChatResponse(text="", tool_calls=asked)

    adapter = ScriptedAdapter(reply)
    oma = OpenMultiAgent(default_adapter=adapter, tools=registry)
    result, events = _run(oma, AgentConfig(name="bare"), use_async=use_async)

    task = result["t"]
    assert task.status is TaskState.DONE
    # Nothing the tools could have read reached the model, the result or the events.
    assert SECRET not in _all_text(adapter)
    assert SECRET not in result.to_json()
    assert SECRET not in repr(events)
    # Each call was refused, recorded and reported to the model as an error.
    assert [c.tool for c in task.tool_calls] == ["file_read", "shell", "memory_retrieve"]
    assert all(c.error and "was not given this tool" in c.error for c in task.tool_calls)
    assert all("(its tools: none)" in (c.error or "") for c in task.tool_calls)
    called = [e for e in events if isinstance(e, ToolCalled)]
    assert [e.tool for e in called] == ["file_read", "shell", "memory_retrieve"]
    assert all(e.error for e in called)
    tool_messages = [m for m in adapter.calls[1].messages if m.role == "tool"]
    assert len(tool_messages) == 3
    assert all(m.is_error for m in tool_messages)
    # The agent was offered no tools at all.
    assert adapter.calls[0].tools == ()


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_tool_given_to_another_agent_has_no_side_effect(use_async: bool) -> None:
    launched: list[str] = []
    registry = ToolRegistry(builtins=False)
    schema = {"type": "object", "properties": {}}
    registry.define_tool("launch", "Launch the rocket", lambda: launched.append("x"), schema)
    registry.define_tool("weather", "Today's weather", lambda: "sunny", schema)

    def reply(messages: Sequence[Message]) -> ChatResponse:
        if messages[-1].role == "tool":
            return ChatResponse(text=messages[-1].content)
        return ChatResponse(text="", tool_calls=(ToolCall(id="1", name="launch", arguments={}),))

    oma = OpenMultiAgent(default_adapter=ScriptedAdapter(reply), tools=registry)
    agent = AgentConfig(name="forecaster", tools=["weather"])
    result, _ = _run(oma, agent, use_async=use_async)

    assert launched == []
    assert "was not given this tool (its tools: weather)" in (result["t"].output or "")


def test_a_refused_call_is_refused_before_the_registry_is_asked() -> None:
    # An unregistered name is refused as not offered, the same as a registered one: the
    # model learns nothing about what the registry holds.
    def reply(messages: Sequence[Message]) -> ChatResponse:
        if messages[-1].role == "tool":
            return ChatResponse(text=messages[-1].content)
        return ChatResponse(text="", tool_calls=(ToolCall(id="1", name="nope", arguments={}),))

    oma = OpenMultiAgent(default_adapter=ScriptedAdapter(reply), tools=ToolRegistry())
    answer = oma.run_agent(AgentConfig(name="a"), "go")
    assert "was not given this tool" in answer.output
    assert "registered" not in answer.output


def test_the_driver_refuses_a_tool_the_agent_was_not_given() -> None:
    # The second layer, under the conversation's own check.
    oma = OpenMultiAgent(default_adapter=ScriptedAdapter(["x"]), tools=ToolRegistry())
    with pytest.raises(ToolNotOfferedError) as info:
        oma._caller.run_tool(
            AgentConfig(name="a"), ToolCall(id="1", name="file_read", arguments={})
        )
    assert (info.value.tool_name, info.value.agent) == ("file_read", "a")


def _reader(ran: list[int]) -> ToolRegistry:
    registry = ToolRegistry(builtins=False)
    registry.define_tool(
        "read",
        "Read a big record",
        lambda n: _noted(ran, n, "y" * 1000),
        {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    )
    return registry


def _asking_for(calls: int) -> ScriptedAdapter:
    many = tuple(ToolCall(id=str(n), name="read", arguments={"n": n}) for n in range(calls))

    def reply(messages: Sequence[Message]) -> ChatResponse:
        if messages[-1].role == "tool":
            return ChatResponse(text="ok")
        return ChatResponse(text="", tool_calls=many)

    return ScriptedAdapter(reply)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_reply_asking_for_too_many_calls_runs_only_the_first_few(use_async: bool) -> None:
    ran: list[int] = []
    adapter = _asking_for(40)
    oma = OpenMultiAgent(default_adapter=adapter, tools=_reader(ran))
    result, _ = _run(oma, AgentConfig(name="a", tools=["read"]), use_async=use_async)

    assert ran == list(range(16))  # the default max_tool_calls_per_reply
    records = result["t"].tool_calls
    assert len(records) == 40  # every call is answered, as providers require
    assert all("max_tool_calls_per_reply" in (r.error or "") for r in records[16:])
    assert result["t"].output == "ok"


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_reply_flooding_thousands_of_calls_ends_the_task_unanswered(use_async: bool) -> None:
    ran: list[int] = []
    adapter = _asking_for(5000)
    oma = OpenMultiAgent(default_adapter=adapter, tools=_reader(ran))
    result, _ = _run(oma, AgentConfig(name="a", tools=["read"]), use_async=use_async)

    assert ran == []
    assert len(adapter.calls) == 1  # no second request carrying 5,000 answers
    assert result["t"].status is TaskState.FAILED
    assert result["t"].error_type == "ToolCallLimitError"
    assert "5000 tool calls, more than 4 x max_tool_calls_per_reply=16" in (result["t"].error or "")


def test_huge_tool_call_arguments_end_the_task_instead_of_being_echoed_back() -> None:
    ran: list[int] = []
    big = ToolCall(id="1", name="read", arguments={"n": 1, "pad": "z" * 300_000})

    def reply(messages: Sequence[Message]) -> ChatResponse:
        return ChatResponse(text="", tool_calls=(big,))

    adapter = ScriptedAdapter(reply)
    oma = OpenMultiAgent(default_adapter=adapter, tools=_reader(ran))
    result, _ = _run(oma, AgentConfig(name="a", tools=["read"]), use_async=False)
    assert len(adapter.calls) == 1
    assert result["t"].error_type == "ToolCallLimitError"
    assert "more than max_tool_output_chars=256000" in (result["t"].error or "")


def test_refusals_count_against_the_output_budget() -> None:
    def reply(messages: Sequence[Message]) -> ChatResponse:
        rounds = sum(m.role == "assistant" for m in messages)
        if rounds == 5:
            return ChatResponse(text="done")
        calls = tuple(ToolCall(id=f"{rounds}-{n}", name="nope", arguments={}) for n in range(8))
        return ChatResponse(text="", tool_calls=calls)

    adapter = ScriptedAdapter(reply)
    oma = OpenMultiAgent(default_adapter=adapter, tools=ToolRegistry(builtins=False))
    agent = AgentConfig(name="a", max_tool_output_chars=1000)
    answer = oma.run_agent(agent, "go")
    answers = [m.content for m in adapter.calls[-1].messages if m.role == "tool"]
    spent = "error: refused (max_tool_output_chars reached)"
    # Up to the budget (plus the note on the piece that crossed it), then a short constant.
    assert sum(len(a) for a in answers if a != spent) <= 1000 + 200
    assert answers[-1] == spent
    assert answer.output == "done"


def test_tool_results_fed_back_are_capped_over_the_conversation() -> None:
    ran: list[int] = []
    registry = ToolRegistry(builtins=False)
    registry.define_tool(
        "dump",
        "Dump a large file",
        lambda: _noted(ran, 1, "z" * 4000),
        {"type": "object", "properties": {}},
    )

    def reply(messages: Sequence[Message]) -> ChatResponse:
        rounds = sum(m.role == "assistant" for m in messages)
        if rounds == 3:
            return ChatResponse(text="enough")
        return ChatResponse(
            text="", tool_calls=(ToolCall(id=str(rounds), name="dump", arguments={}),)
        )

    adapter = ScriptedAdapter(reply)
    oma = OpenMultiAgent(default_adapter=adapter, tools=registry)
    agent = AgentConfig(name="a", tools=["dump"], max_tool_output_chars=6000)
    answer = oma.run_agent(agent, "go")

    assert answer.output == "enough"
    assert ran == [1, 1]  # the third call is refused: the budget is spent
    first, second, third = answer.tool_calls
    assert first.result == "z" * 4000
    assert second.result.startswith("z" * 2000)
    assert "z" * 2001 not in second.result
    assert "max_tool_output_chars" in second.result
    assert third.error is not None
    assert "max_tool_output_chars" in third.error


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_tool_calls_per_reply must be >= 1, got 0"):
        AgentConfig(name="a", max_tool_calls_per_reply=0)
    with pytest.raises(TypeError, match="max_tool_output_chars must be an int"):
        AgentConfig(name="a", max_tool_output_chars=1.5)  # type: ignore[arg-type]
    assert issubclass(ToolCallLimitError, Exception)


def _openai_asking_for_env(server: HTTPServer) -> list[dict[str, object]]:
    """An OpenAI-compatible server whose model asks to read .env, then echoes tool results."""
    seen: list[dict[str, object]] = []

    def handler(request: Request) -> Response:
        body = json.loads(request.get_data())
        seen.append(body)
        messages = body["messages"]
        if messages[-1]["role"] == "tool":
            message: dict[str, object] = {"role": "assistant", "content": messages[-1]["content"]}
            finish = "stop"
        else:
            call: dict[str, object] = {
                "id": "call_1",
                "type": "function",
                "function": {"name": "file_read", "arguments": json.dumps({"path": ".env"})},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        if body.get("stream"):
            delta = dict(message)
            if "tool_calls" in delta:
                delta["tool_calls"] = [{"index": 0, **call}]
            chunks = [
                {"index": 0, "delta": delta, "finish_reason": None},
                {"index": 0, "delta": {}, "finish_reason": finish},
            ]
            events = [
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": body["model"],
                    "choices": [choice],
                }
                for choice in chunks
            ]
            sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            return Response(sse, content_type="text/event-stream")
        payload = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
        }
        return Response(json.dumps(payload), content_type="application/json")

    server.expect_request("/v1/chat/completions", method="POST").respond_with_handler(handler)
    return seen


def test_the_cli_never_runs_a_tool_for_an_agent_without_tools(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={SECRET}\n")
    seen = _openai_asking_for_env(httpserver)
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(
        textwrap.dedent(
            f"""
            [tools]
            root = "."

            [[agents]]
            name = "bare"
            provider = "openai"
            model = "gpt-test"
            base_url = "{httpserver.url_for("/v1")}"
            api_key_env = "TEST_KEY"

            [[tasks]]
            id = "t"
            agent = "bare"
            """
        )
    )
    out = tmp_path / "out.json"
    env = {k: v for k, v in os.environ.items() if "API_KEY" not in k}
    env["TEST_KEY"] = "sk-test"
    proc = subprocess.run(
        [sys.executable, "-m", "aegis_gov._cli", "run", str(pipeline), "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(seen) == 2
    assert SECRET not in json.dumps(seen)
    assert SECRET not in out.read_text()
    assert SECRET not in proc.stdout + proc.stderr
    result = RunResult.from_json(out.read_text())
    (call,) = result["t"].tool_calls
    assert call.error is not None
    assert "was not given this tool" in call.error
