"""A run nobody watches builds no event objects: not one per task, not one per retry."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aegis_adapters import (
    ChatResponse,
    InvalidRequestError,
    Message,
    ProviderUnavailableError,
    ScriptedAdapter,
    ToolCall,
)
from aegis_breaker import AgentPool
from aegis_gov import (
    AgentConfig,
    OpenMultiAgent,
    RetryPolicy,
    RunEvent,
    Task,
    Team,
    ToolRegistry,
    _caller,
    _conversation,
    _events,
    _facade,
    _run,
)
from aegis_graph import SkipReason, TaskState

from tests.gov.conftest import FakeClock

EVENT_MODULES = (_run, _conversation, _caller, _facade)


def _refuse_events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every event class raise when built, wherever aegis_gov imported it."""
    built: list[str] = []

    def refusing(name: str) -> object:
        def build(*args: object, **kwargs: object) -> object:
            built.append(name)
            raise AssertionError(f"{name} built with no handler: {args!r:.80}")

        return build

    for module in EVENT_MODULES:
        for name in _events.__all__:
            if name not in {"Emitter", "EventHandler", "RunEvent"} and hasattr(module, name):
                monkeypatch.setattr(module, name, refusing(name))
    return built


def _registry() -> ToolRegistry:
    registry = ToolRegistry(builtins=False)
    registry.define_tool(
        "echo", "Echo", lambda text: text, {"type": "object", "properties": {"text": {}}}
    )
    return registry


def _tooling(messages: Sequence[Message]) -> ChatResponse:
    if messages[-1].role == "tool":
        return ChatResponse(text="used the tool")
    return ChatResponse(
        text="", tool_calls=(ToolCall(id="1", name="echo", arguments={"text": "x"}),)
    )


def _setup(clock: FakeClock) -> tuple[OpenMultiAgent, list[Task], Team]:
    """A run with a tool call, a retry, a fall-back, a failure and the skip it causes."""
    flaky = ScriptedAdapter([ProviderUnavailableError("scripted", "down"), "recovered"], name="f")
    down = ScriptedAdapter([ProviderUnavailableError("scripted", "down")] * 9, name="down")
    team = OpenMultiAgent.create_team(
        "t",
        AgentConfig(name="tooler", adapter=ScriptedAdapter(_tooling, name="tools"), tools=["echo"]),
        AgentConfig(name="flaky", adapter=flaky),
        AgentConfig(
            name="falls",
            adapter=down,
            fallbacks=[ScriptedAdapter(["from the backup"], name="backup")],
        ),
        AgentConfig(
            name="bad", adapter=ScriptedAdapter([InvalidRequestError("s", "no")], name="b")
        ),
    )
    tasks = [
        Task(id="tool", description="use the tool", agent="tooler"),
        Task(id="retry", description="retry once", agent="flaky", depends_on=["tool"]),
        Task(id="fall", description="fall back", agent="falls"),
        Task(id="fail", description="fail", agent="bad"),
        Task(id="after", description="never runs", agent="flaky", depends_on=["fail"]),
    ]
    oma = OpenMultiAgent(
        AgentPool(clock=clock),
        tools=_registry(),
        retry=RetryPolicy(max_attempts=2, initial_delay_s=0.01),
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        clock=clock,
        seed=0,
    )
    return oma, tasks, team


def _check(result_statuses: dict[str, TaskState], skip_reason: SkipReason | None) -> None:
    assert result_statuses == {
        "tool": TaskState.DONE,
        "retry": TaskState.DONE,
        "fall": TaskState.DONE,
        "fail": TaskState.FAILED,
        "after": TaskState.SKIPPED,
    }
    assert skip_reason is SkipReason.UPSTREAM_FAILED


@pytest.mark.parametrize("stream", [False, True])
def test_a_thread_run_without_a_handler_builds_no_event(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, stream: bool
) -> None:
    oma, tasks, team = _setup(clock)
    built = _refuse_events(monkeypatch)
    result = oma.run_tasks(tasks, team, stream=stream)
    assert built == []
    _check({t: r.status for t, r in result.items()}, result["after"].skip_reason)
    assert result["fall"].output == "from the backup"
    assert result["tool"].tool_calls[0].result == "x"


def test_an_async_run_without_a_handler_builds_no_event(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    oma, tasks, team = _setup(clock)
    built = _refuse_events(monkeypatch)
    result = asyncio.run(oma.arun_tasks(tasks, team, stream=True))
    assert built == []
    _check({t: r.status for t, r in result.items()}, result["after"].skip_reason)


def test_the_same_run_with_a_handler_sees_every_kind_of_event(clock: FakeClock) -> None:
    oma, tasks, team = _setup(clock)
    events: list[RunEvent] = []
    oma.run_tasks(tasks, team, on_event=events.append)
    kinds = {type(event).__name__ for event in events}
    assert kinds >= {
        "TaskStarted",
        "TaskRetrying",
        "FellBack",
        "ToolCalled",
        "TaskSucceeded",
        "TaskFailed",
        "TaskSkipped",
        "TaskOutputDelta",
    }
