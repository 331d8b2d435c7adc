"""Checked by mypy --strict and pyright, never run for behaviour: decorated signatures survive."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aegis_breaker import (
    AgentPool,
    BreakerEvent,
    BreakerSettings,
    BreakerStatus,
    Bulkhead,
    CallEvent,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    CountWindow,
    Permit,
    TimeWindow,
    TripPolicy,
)

breaker = CircuitBreaker(3, 10.0, name="typed")


@breaker
def fetch(url: str, *, retries: int = 0) -> bytes:
    return url.encode() * (retries + 1)


@breaker
async def afetch(url: str, timeout_s: float = 1.0) -> dict[str, float]:
    return {url: timeout_s}


def on_event(event: BreakerEvent) -> None:
    del event


def on_call(event: CallEvent) -> None:
    del event


@breaker
def lines(path: str) -> Generator[str, None, int]:
    yield path
    return 1


@breaker
async def chunks(n: int) -> AsyncGenerator[bytes, None]:
    yield b"x" * n


windowed = CircuitBreaker(
    policy=CountWindow(size=20, failure_rate_threshold=0.3), call_listeners=[on_call]
)


if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
    from typing import Any, assert_type

    assert_type(fetch("x", retries=2), bytes)
    pending = afetch("x")
    assert_type(pending, Coroutine[Any, Any, dict[str, float]]).close()
    assert_type(breaker.call(fetch, "x"), bytes)
    assert_type(breaker.call(len, "abc"), int)
    assert_type(breaker.state, CircuitState)
    assert_type(breaker.retry_after_s, float)
    assert_type(breaker.admit(), Permit)
    assert_type(breaker.status(), dict[str, object])

    async def uses_async() -> None:
        assert_type(await afetch("x", 2.0), dict[str, float])
        assert_type(await breaker.acall(afetch, "x"), dict[str, float])
        pool = AgentPool(max_concurrent=2)
        assert_type(await pool.arun(afetch, "x"), dict[str, float])
        assert_type(await pool.arun_on("openai", afetch, "x", timeout_s=3.0), dict[str, float])
        async with breaker as permit:
            assert_type(permit, Permit)
        async with Bulkhead(2) as bulkhead:
            assert_type(bulkhead, Bulkhead)

    pool = AgentPool(max_concurrent=2, listeners=[on_event])
    assert_type(pool.run(fetch, "x", retries=1), bytes)
    assert_type(pool.run_on("k", fetch, "x"), bytes)
    assert_type(pool.state, CircuitState)
    assert_type(pool.breaker("k"), CircuitBreaker)
    pool.run(fetch, 1)  # type: ignore[arg-type]
    fetch("x", retries="2")  # type: ignore[arg-type]
    error = CircuitOpenError("x", 1.0)
    assert_type(error.retry_after_s, float)
    assert_type(error.breaker_name, str | None)
    listener: Callable[[BreakerEvent], None] = on_event
    breaker.add_listener(listener)
    assert_type(lines("p"), Generator[str, None, int])
    assert_type(chunks(3), AsyncGenerator[bytes, None])
    assert_type(windowed.snapshot(), BreakerStatus)
    assert_type(windowed.snapshot().failure_rate, float | None)
    assert_type(windowed.snapshot().to_dict(), dict[str, object])
    assert_type(windowed.policy, TripPolicy)
    assert_type(windowed.settings, BreakerSettings)
    assert_type(error.state, CircuitState)
    policy: TripPolicy = TimeWindow(window_s=60.0, slow_call_duration_s=10.0)
    pool_w = AgentPool(settings=BreakerSettings(policy=policy))
    assert_type(pool_w.settings, BreakerSettings)
    windowed.force_open()
    windowed.disable()
    windowed.transition_to_half_open()
    windowed.reset()
    CountWindow(size="3")  # type: ignore[arg-type]
