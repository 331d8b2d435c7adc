"""A run's streamed chunks across tool rounds and retries: what TaskOutputDelta promises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from aegis_adapters import ProviderUnavailableError, TextDelta, ToolSpec
from aegis_gov import (
    AgentConfig,
    ChatResponse,
    FellBack,
    Message,
    OpenMultiAgent,
    RetryPolicy,
    RunEvent,
    ScriptedAdapter,
    Task,
    TaskOutputDelta,
    TaskRetrying,
    ToolCall,
    ToolCalled,
    ToolRegistry,
)
from aegis_gov._progress import ProgressTracker


def _tool_reply(messages: Sequence[Message]) -> ChatResponse:
    if messages[-1].role == "tool":
        return ChatResponse(f"The sum is {messages[-1].content}.")
    return ChatResponse("Let me add these.", tool_calls=(ToolCall("c1", "add", {"a": 2, "b": 3}),))


class _Dropping(ScriptedAdapter):
    """Streams the script; the calls numbered in *drop_on* drop after their first chunk."""

    def __init__(self, drop_on: set[int], name: str = "m") -> None:
        super().__init__(_tool_reply, name=name)
        self.drop_on = drop_on
        self.streams = 0

    def chat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> Iterator[TextDelta | ChatResponse]:
        self.streams += 1
        chunks = super().chat_stream(messages, system=system, tools=tools)
        yield next(chunks)
        if self.streams in self.drop_on:
            raise ProviderUnavailableError("m", "connection dropped mid-stream", status_code=503)
        yield from chunks

    async def achat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> AsyncIterator[TextDelta | ChatResponse]:
        self.streams += 1
        chunks = super().achat_stream(messages, system=system, tools=tools)
        yield await anext(chunks)
        if self.streams in self.drop_on:
            raise ProviderUnavailableError("m", "connection dropped mid-stream", status_code=503)
        async for chunk in chunks:
            yield chunk


def _adder() -> ToolRegistry:
    """A registry holding one tool, ``add``."""
    registry = ToolRegistry()
    registry.define_tool(
        name="add",
        description="Add two integers.",
        fn=lambda a, b: a + b,
        schema={
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    )
    return registry


def _consume(events: list[RunEvent]) -> str:
    """The consumer TaskOutputDelta's docstring describes."""
    shown: list[str] = []
    turn_start = 0
    for event in events:
        if isinstance(event, ToolCalled):
            turn_start = len(shown)
        elif isinstance(event, TaskRetrying | FellBack):
            del shown[turn_start:]
        elif isinstance(event, TaskOutputDelta):
            shown.append(event.text)
    return "".join(shown)


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
@pytest.mark.parametrize(
    ("drop_on", "fallback"),
    [(set(), False), ({1}, False), ({2}, False), ({2, 3, 4}, True)],
    ids=["no-drop", "turn-1-drops", "turn-2-drops", "turn-2-falls-back"],
)
def test_a_consumer_that_follows_the_docs_sees_every_turn_once(
    drop_on: set[int], fallback: bool, use_async: bool
) -> None:
    # Found by an adversarial review: with a tool round, a retry re-streams only the failed
    # turn, and without its leading newline; a consumer dropping everything on a retry (as
    # the docs said) lost the first turn's text, one dropping nothing repeated words.
    registry = _adder()
    agent = AgentConfig(
        "calc",
        adapter=_Dropping(drop_on),
        tools=["add"],
        fallbacks=[ScriptedAdapter(_tool_reply, name="backup")] if fallback else [],
    )
    oma = OpenMultiAgent(tools=registry, sleep=lambda _s: None, retry=RetryPolicy(max_attempts=3))
    team = OpenMultiAgent.create_team("t", agent)
    events: list[RunEvent] = []
    tasks = [Task("t", "2+3?", agent="calc")]
    if use_async:
        result = asyncio.run(oma.arun_tasks(tasks, team, on_event=events.append, stream=True))
    else:
        result = oma.run_tasks(tasks, team, on_event=events.append, stream=True)
    assert result["t"].output == "The sum is 5."
    assert _consume(events) == "Let me add these.\nThe sum is 5."
    # The live table keeps the same text.
    progress = ProgressTracker(tasks, {"calc": "m"}, clock=lambda: 0.0)
    for event in events:
        progress(event)
    (row,) = progress.rows()
    assert row.stream_tail == "Let me add these.\nThe sum is 5."


def _output_reply(messages: Sequence[Message]) -> ChatResponse:
    last = messages[-1]
    if last.role == "tool":
        return ChatResponse("not json at all")  # an answer that fails its output check
    if last.role == "user" and len(messages) > 1:
        return ChatResponse('{"total": 5}')  # the corrected answer
    return ChatResponse("Let me add these.", tool_calls=(ToolCall("c1", "add", {"a": 2, "b": 3}),))


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
def test_an_answer_redone_for_its_output_check_starts_where_it_started(use_async: bool) -> None:
    # Found by a second adversarial review: the redone answer lost the newline that the
    # invalid one (after a tool round) began with: "Let me add these.{"total": 5}".
    pydantic = pytest.importorskip("pydantic")

    class Sum(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        total: int

    registry = _adder()
    adapter = ScriptedAdapter(_output_reply, name="m")
    agent = AgentConfig("calc", adapter=adapter, tools=["add"], output_type=Sum)
    oma = OpenMultiAgent(tools=registry, sleep=lambda _s: None)
    team = OpenMultiAgent.create_team("t", agent)
    events: list[RunEvent] = []
    tasks = [Task("t", "2+3?", agent="calc")]
    if use_async:
        result = asyncio.run(oma.arun_tasks(tasks, team, on_event=events.append, stream=True))
    else:
        result = oma.run_tasks(tasks, team, on_event=events.append, stream=True)
    assert result["t"].output == '{"total": 5}'
    assert any(isinstance(event, TaskRetrying) for event in events)
    assert _consume(events) == 'Let me add these.\n{"total": 5}'
