"""aegis-adapters: Typed LLM provider adapters (Anthropic, OpenAI-compatible, Ollama) with one error taxonomy."""

from __future__ import annotations

__all__: list[str] = []
