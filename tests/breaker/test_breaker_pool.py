from __future__ import annotations

import asyncio
import threading

import pytest
from aegis_breaker import (
    AgentPool,
    BulkheadFullError,
    CircuitOpenError,
    CircuitState,
)

from .support import BoomError, FakeClock, Recorder, boom, ok, state_of


def test_run_and_arun_pass_results_through() -> None:
    pool = AgentPool(max_concurrent=2)

    async def double(x: int) -> int:
        return 2 * x

    assert pool.run(ok) == "ok"
    assert pool.run_on("openai", ok) == "ok"
    assert asyncio.run(pool.arun(double, 2)) == 4
    assert asyncio.run(pool.arun_on("anthropic", double, 3)) == 6
    assert pool.active == 0
    assert set(pool.breakers) == {"default", "openai", "anthropic"}


def test_status_has_the_article_keys() -> None:
    pool = AgentPool(max_concurrent=4, consecutive_failure_limit=2, clock=FakeClock())
    status = pool.status()
    assert status["state"] == "closed"
    assert status["consecutive_failures"] == 0
    assert status["active"] == 0
    assert status["max_concurrent"] == 4
    assert status["breakers"] == {"default": pool.breaker().status()}


def test_failures_trip_the_pool_and_open_rejects_without_a_permit() -> None:
    clock = FakeClock()
    pool = AgentPool(max_concurrent=1, consecutive_failure_limit=2, clock=clock, max_wait_s=0)
    for _ in range(2):
        with pytest.raises(BoomError):
            pool.run(boom)
    assert state_of(pool) is CircuitState.OPEN
    assert pool.consecutive_failures == 2
    pool.bulkhead.acquire()  # the bulkhead is full too: the breaker must answer first
    with pytest.raises(CircuitOpenError):
        pool.run(ok)
    pool.bulkhead.release()
    clock.advance(30.0)
    assert state_of(pool) is CircuitState.HALF_OPEN
    assert pool.run(ok) == "ok"
    assert pool.status()["state"] == "closed"


def test_a_full_bulkhead_is_not_a_breaker_failure() -> None:
    clock = FakeClock()
    pool = AgentPool(max_concurrent=1, consecutive_failure_limit=1, clock=clock, max_wait_s=0)
    pool.bulkhead.acquire()
    for _ in range(3):
        with pytest.raises(BulkheadFullError):
            pool.run(ok)
        with pytest.raises(BulkheadFullError):
            pool.run_on("k", ok)
        with pytest.raises(BulkheadFullError):
            asyncio.run(pool.arun(asyncio.sleep, 0))
    assert state_of(pool) is CircuitState.CLOSED
    assert pool.consecutive_failures == 0
    # In HALF_OPEN the probe slot comes back, so the next call may probe.
    pool.breaker().open_for(1.0)
    clock.advance(1.0)
    with pytest.raises(BulkheadFullError):
        pool.run(ok)
    pool.bulkhead.release()
    assert pool.run(ok) == "ok"
    assert state_of(pool) is CircuitState.CLOSED


def test_keys_have_independent_breakers_and_the_worst_state_wins() -> None:
    clock = FakeClock()
    pool = AgentPool(consecutive_failure_limit=1, clock=clock, recovery_timeout_s=5.0)
    with pytest.raises(BoomError):
        pool.run_on("flaky", boom)
    assert pool.breaker("flaky").state is CircuitState.OPEN
    assert pool.breaker("flaky").name == "flaky"
    assert pool.run_on("steady", ok) == "ok"
    assert pool.run(ok) == "ok"
    assert state_of(pool) is CircuitState.OPEN
    clock.advance(5.0)
    assert state_of(pool) is CircuitState.HALF_OPEN
    status = pool.status()
    assert status["state"] == "half_open"
    breakers = status["breakers"]
    assert isinstance(breakers, dict)
    assert breakers["steady"]["state"] == "closed"
    with pytest.raises(TypeError):
        pool.breakers["x"] = pool.breaker()  # type: ignore[index,unused-ignore]
    pool.reset()
    assert state_of(pool) is CircuitState.CLOSED


def test_listeners_reach_present_and_future_breakers() -> None:
    first, second = Recorder(), Recorder()
    pool = AgentPool(consecutive_failure_limit=1, clock=FakeClock(), listeners=[first])
    pool.add_listener(second)
    with pytest.raises(BoomError):
        pool.run(boom)
    with pytest.raises(BoomError):
        pool.run_on("later", boom)
    assert [e.breaker for e in first.events] == ["default", "later"]
    assert [e.breaker for e in second.events] == ["default", "later"]
    pool.remove_listener(second)
    pool.reset()
    assert len(second.events) == 2
    assert len(first.events) == 4


def test_pool_bounds_concurrency_across_threads() -> None:
    pool = AgentPool(max_concurrent=2)
    inside = threading.Barrier(2)
    peak: list[int] = []

    def job() -> None:
        peak.append(pool.active)
        inside.wait(10.0)

    threads = [threading.Thread(target=pool.run, args=(job,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10.0)
    assert max(peak) == 2
    assert pool.active == 0
    assert "max_concurrent=2" in repr(pool)


def test_cancelled_arun_counts_nothing_and_frees_its_permit() -> None:
    pool = AgentPool(max_concurrent=1, consecutive_failure_limit=1)

    async def main() -> None:
        started = asyncio.Event()

        async def hang() -> None:
            started.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(pool.arun(hang))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert pool.active == 0
    assert state_of(pool) is CircuitState.CLOSED


def test_invalid_pool_settings() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        AgentPool(max_concurrent=0)
    with pytest.raises(ValueError, match="consecutive_failure_limit"):
        AgentPool(consecutive_failure_limit=0)
