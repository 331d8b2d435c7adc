"""Checked by mypy --strict and pyright, never run for behaviour: decorated signatures survive."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aegis_breaker import (
    AgentPool,
    BreakerEvent,
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    Permit,
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


if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
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
