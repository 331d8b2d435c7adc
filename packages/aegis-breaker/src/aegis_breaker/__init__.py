"""aegis-breaker: A typed circuit breaker, bulkhead and agent pool for threads and asyncio."""

from __future__ import annotations

import logging

from aegis_breaker._breaker import CircuitBreaker, Permit
from aegis_breaker._bulkhead import Bulkhead
from aegis_breaker._errors import BreakerError, BulkheadFullError, CircuitOpenError
from aegis_breaker._events import (
    BreakerEvent,
    BreakerListener,
    CallEvent,
    CallFailed,
    CallListener,
    CallRejected,
    CallSucceeded,
    CircuitState,
    StateChanged,
)
from aegis_breaker._policy import ConsecutiveFailures, CountWindow, TimeWindow, TripPolicy
from aegis_breaker._pool import AgentPool, BreakerFactory
from aegis_breaker._ratelimit import RateLimiter, RateLimiterStatus, RateLimitExceededError
from aegis_breaker._redis import RedisCircuitBreaker, RedisClient, connect_redis
from aegis_breaker._redis_pool import redis_agent_pool
from aegis_breaker._redis_ratelimit import RedisRateLimiter
from aegis_breaker._settings import BreakerSettings
from aegis_breaker._status import BreakerStatus, PoolStatus

# A library adds no handler of its own: records reach whatever the application set up, and
# nothing is printed through logging's last-resort handler in apps that set up none.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AgentPool",
    "BreakerError",
    "BreakerEvent",
    "BreakerFactory",
    "BreakerListener",
    "BreakerSettings",
    "BreakerStatus",
    "Bulkhead",
    "BulkheadFullError",
    "CallEvent",
    "CallFailed",
    "CallListener",
    "CallRejected",
    "CallSucceeded",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "ConsecutiveFailures",
    "CountWindow",
    "Permit",
    "PoolStatus",
    "RateLimitExceededError",
    "RateLimiter",
    "RateLimiterStatus",
    "RedisCircuitBreaker",
    "RedisClient",
    "RedisRateLimiter",
    "StateChanged",
    "TimeWindow",
    "TripPolicy",
    "connect_redis",
    "redis_agent_pool",
]
