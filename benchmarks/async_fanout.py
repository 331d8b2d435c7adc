"""1,000 agent calls at 100 ms each, all at once: arun_tasks against asyncio.gather.

Two models stand in for the provider: ``ScriptedAdapter(delay_s=0.1)`` (pure orchestration
overhead) and the real OpenAI SDK against a loopback asyncio server that answers after
100 ms. For each, ``OpenMultiAgent.arun_tasks`` (max_concurrent 1,000) is timed against
``asyncio.gather`` over the bare adapter in the same run. Target: no more than 15% slower.
The sync runner (threads) on the same load is shown for comparison.

Run: ``python benchmarks/async_fanout.py``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aegis_gov import (
    AgentConfig,
    AgentPool,
    ChatAdapter,
    Message,
    OpenAIAdapter,
    OpenMultiAgent,
    ScriptedAdapter,
    Task,
)

from tests.gov.slow_openai import slow_openai_server

N = 1000
LATENCY_S = 0.1


def _tasks() -> list[Task]:
    return [Task(id=f"t{i}", description=f"ping {i}", agent="w") for i in range(N)]


async def bare_gather(adapter: ChatAdapter) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(adapter.achat([Message.user(f"ping {i}")]) for i in range(N)))
    return time.perf_counter() - start


async def aegis_arun(adapter: ChatAdapter) -> float:
    oma = OpenMultiAgent(AgentPool(max_concurrent=N), default_adapter=adapter)
    team = OpenMultiAgent.create_team("fanout", AgentConfig(name="w"))
    start = time.perf_counter()
    result = await oma.arun_tasks(_tasks(), team)
    elapsed = time.perf_counter() - start
    assert result.summary() == {"done": N}, result.summary()
    return elapsed


def aegis_sync(adapter: ChatAdapter) -> float:
    oma = OpenMultiAgent(AgentPool(max_concurrent=N), default_adapter=adapter)
    team = OpenMultiAgent.create_team("fanout", AgentConfig(name="w"))
    start = time.perf_counter()
    result = oma.run_tasks(_tasks(), team)
    elapsed = time.perf_counter() - start
    assert result.summary() == {"done": N}, result.summary()
    return elapsed


def compare(label: str, make: object, repeat: int = 3) -> None:
    bare = min(asyncio.run(bare_gather(make())) for _ in range(repeat))  # type: ignore[operator]
    ours = min(asyncio.run(aegis_arun(make())) for _ in range(repeat))  # type: ignore[operator]
    sync = min(aegis_sync(make()) for _ in range(repeat))  # type: ignore[operator]
    print(
        f"{label:34} gather {bare * 1e3:7.1f} ms   arun_tasks {ours * 1e3:7.1f} ms "
        f"({(ours / bare - 1) * 100:+5.1f}%, target <= +15%)   "
        f"run_tasks (threads) {sync * 1e3:7.1f} ms ({(sync / bare - 1) * 100:+5.1f}%)"
    )


def main() -> None:
    print(f"{N} calls x {LATENCY_S * 1e3:.0f} ms, max_concurrent {N}, best of 3")
    compare(
        "ScriptedAdapter(delay_s=0.1)",
        lambda: ScriptedAdapter(["pong"], cycle=True, delay_s=LATENCY_S),
    )
    with slow_openai_server(LATENCY_S) as server:
        compare(
            "OpenAI SDK -> loopback, 100 ms",
            lambda: OpenAIAdapter("gpt-test", base_url=server.base_url, api_key="sk-test"),
        )


if __name__ == "__main__":
    main()
