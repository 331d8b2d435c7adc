"""Streamed text across a tool round: each turn's text on its own line, never run together."""

from __future__ import annotations

import asyncio
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
    TaskOutputDelta,
    TaskState,
    ToolCall,
    ToolRegistry,
)


def _registry() -> ToolRegistry:
    registry = ToolRegistry()
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


def _model(*turns: str) -> ScriptedAdapter:
    """A model whose every turn but the last says its text and calls ``add``."""

    def reply(messages: Sequence[Message]) -> ChatResponse:
        done = sum(1 for m in messages if m.role == "tool")
        if done == len(turns) - 1:
            return ChatResponse(text=turns[-1].format(messages[-1].content))
        call = ToolCall(id=f"c{done}", name="add", arguments={"a": 2, "b": 3})
        return ChatResponse(text=turns[done], tool_calls=(call,))

    return ScriptedAdapter(reply)


AGENT = AgentConfig(name="calc", tools=["add"])


def _stream(turns: tuple[str, ...], mode: str) -> tuple[list[str], str]:
    oma = OpenMultiAgent(default_adapter=_model(*turns), tools=_registry())
    if mode == "sync":
        chunks = list(oma.stream_agent(AGENT, "2+3?"))
    elif mode == "async":

        async def collect() -> list[str]:
            return [chunk async for chunk in oma.astream_agent(AGENT, "2+3?")]

        chunks = asyncio.run(collect())
    else:
        events: list[RunEvent] = []
        team = OpenMultiAgent.create_team("t", AGENT)
        run = getattr(oma, "run_tasks" if mode == "run" else "arun_tasks")
        tasks = [Task("sum", "2+3?", agent="calc")]
        result = run(tasks, team, on_event=events.append)
        if mode == "arun":
            result = asyncio.run(result)
        assert result["sum"].status is TaskState.DONE
        chunks = [e.text for e in events if isinstance(e, TaskOutputDelta)]
        return chunks, result["sum"].output or ""
    final = OpenMultiAgent(default_adapter=_model(*turns), tools=_registry()).run_agent(
        AGENT, "2+3?"
    )
    return chunks, final.output


MODES = ["sync", "async", "run", "arun"]


@pytest.mark.parametrize("mode", MODES)
def test_the_turns_of_a_tool_round_are_separated_by_a_newline(mode: str) -> None:
    chunks, output = _stream(("Let me add.", "The sum is {}."), mode)
    assert "".join(chunks) == "Let me add.\nThe sum is 5."
    # The answer is the last turn's text, which is what the stream ends with.
    assert output == "The sum is 5."
    assert "".join(chunks).endswith("\n" + output)
    # The separator comes with the next turn's first chunk, not as a chunk of its own.
    assert all(chunk.strip() for chunk in chunks)


@pytest.mark.parametrize("mode", MODES)
def test_a_turn_without_text_adds_no_empty_line(mode: str) -> None:
    chunks, output = _stream(("", "The sum is {}."), mode)
    assert "".join(chunks) == output == "The sum is 5."
    # Text, then a silent tool call, then text: one newline between the two texts.
    chunks, output = _stream(("Let me add.", "", "It is {}."), mode)
    assert "".join(chunks) == "Let me add.\nIt is 5."
    assert output == "It is 5."
    # Three turns with text: each on its own line.
    chunks, _ = _stream(("First.", "Second.", "Third: {}."), mode)
    assert "".join(chunks) == "First.\nSecond.\nThird: 5."


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_request_after_a_tool_round_is_retried_before_it_streams(mode: str) -> None:
    """A 503 on turn two, before any of its chunks: retried, and the stream reads whole."""
    from aegis_adapters import ProviderUnavailableError  # noqa: PLC0415

    first = ChatResponse(
        text="Let me add.", tool_calls=(ToolCall(id="1", name="add", arguments={"a": 2, "b": 3}),)
    )
    busy = ProviderUnavailableError("offline", "busy", status_code=503, retry_after_s=0.01)
    agent = AgentConfig(
        name="calc", adapter=ScriptedAdapter([first, busy, "The sum is 5."]), tools=["add"]
    )
    oma = OpenMultiAgent(tools=_registry())
    if mode == "sync":
        text = "".join(oma.stream_agent(agent, "2+3?"))
    else:

        async def collect() -> str:
            return "".join([chunk async for chunk in oma.astream_agent(agent, "2+3?")])

        text = asyncio.run(collect())
    assert text == "Let me add.\nThe sum is 5."
