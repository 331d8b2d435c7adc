"""The sync and async runners give the same results and events on the same scenarios."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence

import pytest
from aegis_gov import (
    AgentConfig,
    AgentPool,
    ChatResponse,
    InvalidRequestError,
    Message,
    OpenMultiAgent,
    ProviderUnavailableError,
    RateLimitError,
    RetryPolicy,
    RunEvent,
    RunResult,
    ScriptedAdapter,
    Task,
    TaskOutputDelta,
    ToolCall,
    ToolRegistry,
)

from tests.gov.conftest import FakeClock

Reply = Callable[[Sequence[Message]], "str | ChatResponse"]


def _prompt(messages: Sequence[Message]) -> str:
    return next(m.content for m in reversed(messages) if m.role == "user").splitlines()[0]


def _flaky(messages: Sequence[Message]) -> str:
    """Fails in a way that depends only on the task, so both runners see the same story."""
    prompt = _prompt(messages)
    if prompt == "broken":
        raise InvalidRequestError("s", "bad request", status_code=400)
    return f"done:{prompt}"


class _Counting:
    """Fails the first ``n`` calls for each prompt with a retryable error, then answers."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen: Counter[str] = Counter()

    def __call__(self, messages: Sequence[Message]) -> str:
        prompt = _prompt(messages)
        self.seen[prompt] += 1
        if self.seen[prompt] <= self.n:
            if self.seen[prompt] % 2:
                raise RateLimitError("s", "429", status_code=429, retry_after_s=0.5)
            raise ProviderUnavailableError("s", "503", status_code=503)
        return f"done:{prompt}"


def _tool_reply(messages: Sequence[Message]) -> ChatResponse:
    if messages[-1].role == "tool":
        return ChatResponse(text=f"stored {messages[-1].content!r}")
    call = ToolCall(id="c1", name="memory_store", arguments={"key": "k", "value": "v"})
    return ChatResponse(text="", tool_calls=(call,))


GRAPH = [
    Task(id="root", description="root", agent="w"),
    Task(id="broken", description="broken", agent="w", depends_on=["root"]),
    Task(id="after_broken", description="after_broken", agent="w", depends_on=["broken"]),
    Task(id="side", description="side", agent="w", depends_on=["root"]),
    Task(id="join", description="join", agent="w", depends_on=["side", "root"]),
]

SCENARIOS: dict[str, tuple[Callable[[], Reply], dict[str, object], tuple[str, ...]]] = {
    "cascade": (lambda: _flaky, {}, ()),
    "stop_on_failure": (lambda: _flaky, {"stop_on_failure": True}, ()),
    "retries": (lambda: _Counting(2), {}, ()),
    "retries_exhausted": (lambda: _Counting(5), {}, ()),
    "tools": (lambda: _tool_reply, {}, ("memory_store",)),
}


def _run(mode: str, scenario: str) -> tuple[RunResult, list[RunEvent]]:
    make_reply, kwargs, tools = SCENARIOS[scenario]
    clock = FakeClock()
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=1, clock=clock),
        default_adapter=ScriptedAdapter(make_reply()),
        tools=ToolRegistry(),
        retry=RetryPolicy(max_attempts=3, initial_delay_s=0.1),
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        clock=clock,
        seed=1,
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w", tools=tools))
    events: list[RunEvent] = []
    if mode == "sync":
        result = oma.run_tasks(GRAPH, team, on_event=events.append, **kwargs)  # type: ignore[arg-type]
    else:
        coro = oma.arun_tasks(GRAPH, team, on_event=events.append, **kwargs)  # type: ignore[arg-type]
        result = asyncio.run(coro)
    return result, events


def _kinds(events: list[RunEvent]) -> Counter[str]:
    return Counter(type(e).__name__ for e in events if not isinstance(e, TaskOutputDelta))


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_sync_and_async_runs_agree(scenario: str) -> None:
    sync_result, sync_events = _run("sync", scenario)
    async_result, async_events = _run("async", scenario)

    def view(result: RunResult) -> dict[str, tuple[object, ...]]:
        return {
            k: (r.status, r.output, r.error_type, r.blamed, r.skip_reason, r.attempts, r.usage)
            for k, r in result.items()
        }

    assert view(sync_result) == view(async_result)
    assert _kinds(sync_events) == _kinds(async_events)
    assert len(sync_result) == len(GRAPH)
    if scenario == "cascade":
        assert sync_result.summary() == {"done": 3, "failed": 1, "skipped": 1}
    if scenario == "retries":
        assert sync_result["root"].attempts == 3
    if scenario == "tools":
        assert sync_result["root"].output == "stored \"stored key 'k'\""
        assert [c.tool for c in sync_result["root"].tool_calls] == ["memory_store"]
