"""aegis-breaker: A typed circuit breaker, bulkhead and agent pool for threads and asyncio."""

from __future__ import annotations

__all__: list[str] = []
