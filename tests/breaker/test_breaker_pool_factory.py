"""AgentPool(breaker_factory=...) builds each key's breaker, with the pool's listeners."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from aegis_breaker import (
    AgentPool,
    BreakerEvent,
    BreakerListener,
    CircuitBreaker,
    CircuitState,
    StateChanged,
)


def test_factory_makes_every_breaker_and_attaches_listeners() -> None:
    made: list[str] = []
    events: list[BreakerEvent] = []

    def factory(key: str, listeners: Sequence[BreakerListener]) -> CircuitBreaker:
        made.append(key)
        return CircuitBreaker(1, 60.0, name=f"custom-{key}", listeners=listeners)

    pool = AgentPool(max_concurrent=2, listeners=[events.append], breaker_factory=factory)
    breaker = pool.breaker("endpoint-a")
    assert made == ["default", "endpoint-a"]
    assert breaker.name == "custom-endpoint-a"
    assert pool.breaker("endpoint-a") is breaker

    def boom() -> None:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError, match="down"):
        pool.run_on("endpoint-a", boom)
    assert pool.breakers["endpoint-a"].state is CircuitState.OPEN
    changes = [e for e in events if isinstance(e, StateChanged)]
    assert [(c.breaker, c.new) for c in changes] == [("custom-endpoint-a", CircuitState.OPEN)]
