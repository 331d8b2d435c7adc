"""aegis-graph: A pure, typed task dependency graph with cycle detection and failure cascades."""

from __future__ import annotations

__all__: list[str] = []
