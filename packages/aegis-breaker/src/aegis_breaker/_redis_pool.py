"""redis_agent_pool: an AgentPool whose breakers share their state through Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from aegis_breaker._breaker import CircuitBreaker, merge_settings
from aegis_breaker._events import BreakerListener
from aegis_breaker._pool import AgentPool
from aegis_breaker._redis import (
    DEFAULT_IDLE_EXPIRY_S,
    DEFAULT_KEY_PREFIX,
    RedisCircuitBreaker,
    RedisClient,
)
from aegis_breaker._settings import BreakerSettings

__all__ = ["redis_agent_pool"]


def redis_agent_pool(
    client: RedisClient,
    max_concurrent: int = 4,
    consecutive_failure_limit: int = 5,
    recovery_timeout_s: float = 30.0,
    *,
    max_wait_s: float | None = None,
    is_failure: Callable[[BaseException], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
    half_open_max_calls: int = 1,
    success_threshold: int = 1,
    half_open_max_wait_s: float | None = None,
    listeners: Iterable[BreakerListener] = (),
    key_prefix: str = DEFAULT_KEY_PREFIX,
    reconnect_interval_s: float = 1.0,
    idle_expiry_s: float | None = DEFAULT_IDLE_EXPIRY_S,
    settings: BreakerSettings | None = None,
) -> AgentPool:
    """An `AgentPool` whose breakers are `RedisCircuitBreaker` s named by their keys.

    The bulkhead stays local to this process (it bounds this process's calls); each key's
    breaker state is shared through Redis. Arguments are those of `AgentPool` and
    `RedisCircuitBreaker`; use *key_prefix* to keep unrelated applications apart.

    Raises:
        ValueError: When a setting is out of range.
        TypeError: When *settings* and a non-default setting keyword are both given.
    """
    shared = merge_settings(
        settings,
        "redis agent pool",
        consecutive_failure_limit=consecutive_failure_limit,
        recovery_timeout_s=recovery_timeout_s,
        half_open_max_calls=half_open_max_calls,
        success_threshold=success_threshold,
        half_open_max_wait_s=half_open_max_wait_s,
        is_failure=is_failure,
        policy=None,
    )

    def make(key: str, pool_listeners: Sequence[BreakerListener]) -> CircuitBreaker:
        return RedisCircuitBreaker(
            client,
            key,
            settings=shared,
            clock=clock,
            listeners=pool_listeners,
            key_prefix=key_prefix,
            reconnect_interval_s=reconnect_interval_s,
            idle_expiry_s=idle_expiry_s,
        )

    return AgentPool(
        max_concurrent,
        max_wait_s=max_wait_s,
        clock=clock,
        listeners=listeners,
        breaker_factory=make,
        settings=shared,
    )
