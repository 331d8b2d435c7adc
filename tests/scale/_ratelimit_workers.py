"""What the shared rate limiter tests run in child processes (module level, so spawn works)."""

from __future__ import annotations

from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from aegis_breaker import RedisRateLimiter, connect_redis


def grab(  # noqa: PLR0917  # a Process target takes positional arguments
    url: str, name: str, rate: float, attempts: int, barrier: Barrier, out: Queue[int]
) -> None:
    """Try *attempts* times to take one token from the shared budget; report how many went."""
    limit = RedisRateLimiter(connect_redis(url, timeout_s=2.0), name, rate, 3600.0)
    barrier.wait()
    out.put(sum(limit.try_acquire() for _ in range(attempts)))


def queue_up(  # noqa: PLR0917  # a Process target takes positional arguments
    url: str, name: str, rate: float, reservations: int, barrier: Barrier, out: Queue[list[float]]
) -> None:
    """Reserve *reservations* tokens one by one; report each wait (nobody sleeps)."""
    limit = RedisRateLimiter(connect_redis(url, timeout_s=2.0), name, rate, 3600.0, burst=1)
    barrier.wait()
    out.put([limit.reserve() for _ in range(reservations)])
