"""The tool-calling loop inside agent runs, against ScriptedAdapter and a real registry."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from aegis_gov import (
    AgentConfig,
    ChatResponse,
    Message,
    OpenMultiAgent,
    RunEvent,
    ScriptedAdapter,
    Task,
    TaskState,
    ToolCall,
    ToolCalled,
    ToolLoopError,
    ToolRegistry,
    UnknownToolError,
)


def _registry() -> ToolRegistry:
    registry = ToolRegistry(builtins=True)
    registry.define_tool(
        name="add",
        description="Add two integers",
        fn=lambda a, b: a + b,
        schema={
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    )
    return registry


def test_agent_calls_a_tool_and_answers_with_its_result() -> None:
    def reply(messages: Sequence[Message]) -> ChatResponse:
        last = messages[-1]
        if last.role == "tool":
            return ChatResponse(text=f"the sum is {last.content}")
        return ChatResponse(
            text="", tool_calls=(ToolCall(id="c1", name="add", arguments={"a": 2, "b": 3}),)
        )

    adapter = ScriptedAdapter(reply)
    events: list[RunEvent] = []
    oma = OpenMultiAgent(default_adapter=adapter, tools=_registry())
    team = OpenMultiAgent.create_team("t", AgentConfig(name="calc", tools=["add"]))
    result = oma.run_tasks(
        [Task(id="sum", description="2+3?", agent="calc")], team, on_event=events.append
    )

    assert result["sum"].status is TaskState.DONE
    assert result["sum"].output == "the sum is 5"
    assert [c.tool for c in result["sum"].tool_calls] == ["add"]
    assert [e.tool for e in events if isinstance(e, ToolCalled)] == ["add"]
    # The model was offered exactly the agent's tools, with their schema.
    assert [t.name for t in adapter.calls[0].tools] == ["add"]
    assert adapter.calls[0].tools[0].input_schema["required"] == ["a", "b"]
    # The second request carried the assistant's call and the tool's result.
    roles = [m.role for m in adapter.calls[1].messages]
    assert roles == ["user", "assistant", "tool"]
    assert adapter.calls[1].messages[2].tool_call_id == "c1"


def test_tool_errors_go_back_to_the_model_as_error_results() -> None:
    def reply(messages: Sequence[Message]) -> ChatResponse:
        last = messages[-1]
        if last.role == "tool":
            assert last.is_error
            return ChatResponse(text="I could not add those")
        return ChatResponse(
            text="", tool_calls=(ToolCall(id="c1", name="add", arguments={"a": "two"}),)
        )

    oma = OpenMultiAgent(default_adapter=ScriptedAdapter(reply), tools=_registry())
    result = oma.run_agent(AgentConfig(name="calc", tools=["add"]), "add")
    assert str(result) == "I could not add those"
    assert result.tool_calls[0].error is not None
    assert "add" in result.tool_calls[0].error


def test_endless_tool_calls_fail_clearly_after_max_rounds() -> None:
    call = ChatResponse(
        text="", tool_calls=(ToolCall(id="c", name="add", arguments={"a": 1, "b": 1}),)
    )
    adapter = ScriptedAdapter(lambda m: call)
    oma = OpenMultiAgent(default_adapter=adapter, tools=_registry())
    with pytest.raises(ToolLoopError, match=r"'looper'.*3 rounds"):
        oma.run_agent(AgentConfig(name="looper", tools=["add"], max_tool_rounds=3), "go")
    assert len(adapter.calls) == 4


def test_unknown_tool_is_rejected_before_any_call() -> None:
    adapter = ScriptedAdapter(["never"])
    oma = OpenMultiAgent(default_adapter=adapter, tools=_registry())
    team = OpenMultiAgent.create_team("t", AgentConfig(name="a", tools=["teleport"]))
    with pytest.raises(UnknownToolError, match="teleport"):
        oma.run_tasks([Task(id="x", agent="a")], team)
    assert adapter.calls == []
