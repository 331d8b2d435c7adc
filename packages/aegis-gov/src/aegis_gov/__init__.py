"""aegis-gov: Coordinate teams of LLM agents over a task graph, with circuit breakers and retries."""

from __future__ import annotations

__all__: list[str] = []
