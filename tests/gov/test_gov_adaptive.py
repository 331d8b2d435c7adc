"""Adaptive concurrency per endpoint: AIMD, on its own and in a run."""

from __future__ import annotations

from collections.abc import Sequence

import hypothesis.strategies as st
import pytest
from aegis_gov import (
    AgentConfig,
    AgentPool,
    Message,
    OpenMultiAgent,
    RateLimitError,
    RetryPolicy,
    ScriptedAdapter,
    Task,
    TaskState,
)
from aegis_gov._adaptive import AdaptiveLimit
from hypothesis import given

from tests.gov.conftest import FakeClock

steps = st.lists(
    st.sampled_from(["acquire", "ok", "overload", "neutral", "recovered"]), max_size=200
)


@given(st.integers(1, 64), steps)
def test_the_limit_stays_in_bounds_and_is_never_exceeded(max_limit: int, ops: list[str]) -> None:
    limit = AdaptiveLimit(max_limit)
    held = 0
    for op in ops:
        if op == "acquire":
            if limit.try_acquire():
                held += 1
                assert held <= limit.max_limit
        elif op == "recovered":
            limit.recovered()
        elif held:
            held -= 1
            limit.release(overloaded={"ok": False, "overload": True, "neutral": None}[op])
        status = limit.status()
        assert 1 <= status.limit <= max_limit
        assert status.in_flight == held


def test_overload_halves_and_used_successes_grow_it_back() -> None:
    limit = AdaptiveLimit(8)
    assert limit.try_acquire()
    limit.release(overloaded=True)
    assert limit.limit == 4
    assert limit.status().overloads == 1
    # Idle successes (one call in flight out of 4) prove nothing: no growth.
    for _ in range(10):
        assert limit.try_acquire()
        limit.release(overloaded=False)
    assert limit.limit == 4
    # Busy successes grow it by one per window of `limit` calls.
    for _ in range(4):
        for _ in range(4):
            assert limit.try_acquire()
        for _ in range(4):
            limit.release(overloaded=False)
        if limit.limit == 5:
            break
    assert limit.limit == 5


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="min_limit <= max_limit"):
        AdaptiveLimit(2, min_limit=3)
    with pytest.raises(ValueError, match="backoff_ratio"):
        AdaptiveLimit(2, backoff_ratio=1.0)


def test_a_run_against_a_rate_limited_endpoint_shrinks_its_limit_and_finishes(
    clock: FakeClock,
) -> None:
    calls = 0

    def reply(_messages: Sequence[Message]) -> str:
        nonlocal calls
        calls += 1
        if calls % 3 == 1:
            raise RateLimitError("p", "slow down", retry_after_s=0.5)
        return "ok"

    adapter = ScriptedAdapter(reply)
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=8, consecutive_failure_limit=100, clock=clock),
        default_adapter=adapter,
        retry=RetryPolicy(max_attempts=5, initial_delay_s=0.1),
        sleep=clock.sleep,
        clock=clock,
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    result = oma.run_tasks([Task(f"t{i}", agent="w") for i in range(12)], team)
    assert {r.status for r in result.values()} == {TaskState.DONE}
    endpoint = oma.get_status()["endpoints"]
    assert isinstance(endpoint, dict)
    adaptive = endpoint[adapter.endpoint.key]["adaptive"]
    assert adaptive["overloads"] >= 1
    assert adaptive["limit"] < 8
    assert adaptive["in_flight"] == 0


def test_status_is_typed_and_still_reads_as_the_articles_dict(clock: FakeClock) -> None:
    adapter = ScriptedAdapter(["ok"])
    oma = OpenMultiAgent(AgentPool(clock=clock), default_adapter=adapter)
    oma.run_agent(AgentConfig(name="w"), "hi")
    status = oma.get_status()
    assert status["pool_state"] == "closed"
    assert "'pool_state': 'closed'" in repr(status)
    assert status.pool.max_concurrent == 4
    endpoint = status.endpoints[adapter.endpoint.key]
    assert endpoint.state == "closed"
    assert endpoint.adaptive is not None
    assert endpoint.adaptive.in_flight == 0
    assert status.to_dict()["endpoints"] == {adapter.endpoint.key: endpoint.to_dict()}
    assert dict(status) == status.to_dict()
