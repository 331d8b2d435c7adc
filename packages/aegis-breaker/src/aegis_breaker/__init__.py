"""aegis-breaker: A typed circuit breaker, bulkhead and agent pool for threads and asyncio."""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

# Where each public name is defined. Importing the package loads none of these modules: a name's
# module loads on its first access (PEP 562 ``__getattr__``), so importing the package stays
# cheap and a program pays only for the parts it uses. The TYPE_CHECKING imports above name
# the same objects for type checkers (a test checks that the two agree).
_SOURCES: dict[str, tuple[str, ...]] = {
    "aegis_breaker._breaker": ("CircuitBreaker", "Permit"),
    "aegis_breaker._bulkhead": ("Bulkhead",),
    "aegis_breaker._errors": ("BreakerError", "BulkheadFullError", "CircuitOpenError"),
    "aegis_breaker._events": (
        "BreakerEvent",
        "BreakerListener",
        "CallEvent",
        "CallFailed",
        "CallListener",
        "CallRejected",
        "CallSucceeded",
        "CircuitState",
        "StateChanged",
    ),
    "aegis_breaker._policy": ("ConsecutiveFailures", "CountWindow", "TimeWindow", "TripPolicy"),
    "aegis_breaker._pool": ("AgentPool", "BreakerFactory"),
    "aegis_breaker._ratelimit": ("RateLimiter", "RateLimiterStatus", "RateLimitExceededError"),
    "aegis_breaker._redis": ("RedisCircuitBreaker", "RedisClient", "connect_redis"),
    "aegis_breaker._redis_pool": ("redis_agent_pool",),
    "aegis_breaker._redis_ratelimit": ("RedisRateLimiter",),
    "aegis_breaker._settings": ("BreakerSettings",),
    "aegis_breaker._status": ("BreakerStatus", "PoolStatus"),
}
_MODULE_OF: dict[str, str] = {
    public: module for module, names in _SOURCES.items() for public in names
}

if not TYPE_CHECKING:  # hidden from type checkers, which would type unknown names as object

    def __getattr__(name: str) -> object:
        """Import the module that defines the public *name* on first access; cache the value."""
        try:
            module = _MODULE_OF[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        try:
            value = getattr(importlib.import_module(module), name)
        except AttributeError as exc:  # from the module's own code: not a missing name
            raise ImportError(f"importing {module} (for {name}) failed: {exc}") from exc
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        """The module's attributes, the public names not loaded yet included."""
        return sorted(set(globals()) | set(__all__))
