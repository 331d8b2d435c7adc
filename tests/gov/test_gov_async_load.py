"""A thousand concurrent async agent calls through the real OpenAI SDK on loopback."""

from __future__ import annotations

import asyncio

from aegis_gov import AgentConfig, AgentPool, OpenAIAdapter, OpenMultiAgent, Task, TaskState

from tests.gov.slow_openai import slow_openai_server


def test_a_thousand_concurrent_async_calls_against_a_100ms_server() -> None:
    with slow_openai_server(latency_s=0.1) as server:
        adapter = OpenAIAdapter("gpt-test", base_url=server.base_url, api_key="sk-test")
        oma = OpenMultiAgent(AgentPool(max_concurrent=1000), default_adapter=adapter)
        team = OpenMultiAgent.create_team("load", AgentConfig(name="w"))
        tasks = [Task(id=f"t{i}", description=f"ping {i}", agent="w") for i in range(1000)]
        result = asyncio.run(oma.arun_tasks(tasks, team))

    assert result.summary() == {"done": 1000}
    assert all(r.output == "pong" and r.attempts == 1 for r in result.values())
    assert result.usage.total_tokens == 4000
    assert server.requests == 1000
    # Calls really overlapped on one event loop: no thread per task, no serialisation.
    assert server.peak_in_flight >= 200
    assert oma.get_status()["pool_active"] == 0
    assert all(r.status is TaskState.DONE for r in result.values())
