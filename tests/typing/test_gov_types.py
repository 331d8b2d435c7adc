"""Checked by mypy --strict and pyright, never run for behaviour: aegis_gov as a strict user
sees it, including the names it re-exports from the other packages."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from aegis_gov import (
    AdaptiveStatus,
    AgentConfig,
    AgentPool,
    AgentResult,
    Budget,
    CircuitOpenError,
    CircuitState,
    EndpointStatus,
    FellBack,
    Limits,
    LLMAdapter,
    OpenMultiAgent,
    Price,
    RedisRateStore,
    RetryPolicy,
    RunEvent,
    RunResult,
    ScriptedAdapter,
    SkipReason,
    Spent,
    Status,
    Task,
    TaskFailed,
    TaskResult,
    TaskState,
    Team,
    Usage,
    connect_redis,
)

failures: list[tuple[str, str]] = []


def on_event(event: RunEvent) -> None:
    if isinstance(event, TaskFailed):
        failures.append((event.task_id, event.error_type))


if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping
    from typing import assert_type

    oma = OpenMultiAgent(
        AgentPool(max_concurrent=4), default_adapter=ScriptedAdapter(["hi"]), retry=RetryPolicy()
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="a"))
    assert_type(team, Team)
    tasks = [Task(id="x", agent="a")]

    result = oma.run_tasks(tasks, team, on_event=on_event, task_timeout_s=30.0)
    assert_type(result, RunResult)
    assert_type(result["x"], TaskResult)
    assert_type(result["x"].status, TaskState)
    assert_type(result["x"].output, str | None)
    assert_type(result.summary(), dict[str, int])
    assert_type(result.usage, Usage)
    assert_type(RunResult.from_json(result.to_json()), RunResult)
    result.write_json(io.StringIO(), indent=2)

    answer = oma.run_agent(AgentConfig(name="a"), "question")
    assert_type(answer, AgentResult)
    assert_type(str(answer), str)
    assert_type(oma.stream_agent(AgentConfig(name="a"), "q"), Iterator[str])
    assert_type(oma.astream_agent(AgentConfig(name="a"), "q"), AsyncIterator[str])
    status = oma.get_status()
    assert_type(status, Status)
    assert_type(status["pool_state"], object)
    assert_type(status.pool.state, CircuitState)
    assert_type(status.to_dict(), dict[str, object])

    def takes_a_mapping(status: Mapping[str, object]) -> object:
        return status["pool_state"]

    assert_type(takes_a_mapping(status), object)

    async def async_user() -> None:
        assert_type(await oma.arun_tasks(tasks, team), RunResult)
        assert_type(await oma.arun_agent(AgentConfig(name="a"), "q"), AgentResult)

    try:
        oma.run_agent(AgentConfig(name="a"), "q")
    except CircuitOpenError as exc:
        assert_type(exc.retry_after_s, float)

    # Traffic governance, as a strict user writes it.
    governed = OpenMultiAgent(
        limits={"gpt-4o-mini": Limits(requests_per_minute=500, max_concurrent=8)}
    )
    spent_run = governed.run_tasks(
        tasks,
        team,
        budget=Budget(max_cost_usd=5.0, prices={"gpt-4o-mini": Price(0.15, 0.6)}),
    )
    assert_type(spent_run.spent, Spent | None)
    store = RedisRateStore(connect_redis("redis://127.0.0.1:6379/0"), key_prefix="acct-a")
    assert_type(store.reconnect_interval_s, float)
    OpenMultiAgent(limits={"gpt-4o-mini": Limits(requests_per_minute=500)}, rate_store=store)
    assert_type(spent_run["t"].skip_reason, SkipReason | None)
    assert_type(spent_run["t"].endpoint, str | None)
    backup = ScriptedAdapter(["ok"])
    assert_type(AgentConfig(name="a", fallbacks=[backup]).fallbacks, tuple[LLMAdapter, ...])
    endpoint_status = governed.get_status().endpoints["k"]
    assert_type(endpoint_status, EndpointStatus)
    assert_type(endpoint_status.adaptive, AdaptiveStatus | None)

    def on_fallback(event: RunEvent) -> None:
        if isinstance(event, FellBack):
            assert_type(event.to_endpoint, str)
