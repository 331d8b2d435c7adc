# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The adapter protocols: the article's minimal contract and the richer chat contract."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

    from aegis_adapters._types import ChatResponse, Endpoint, Message, TextDelta, ToolSpec

__all__ = ["ChatAdapter", "LLMAdapter"]


@runtime_checkable
class LLMAdapter(Protocol):
    """The minimal contract: any object with these two methods is an adapter.

    Wrap your own model by writing a class with ``generate`` and ``stream``; no base class needed.
    """

    def generate(self, prompt: str, *, system: str | None = None) -> str:
        """Return the model's complete reply to *prompt*."""
        ...

    def stream(self, prompt: str, *, system: str | None = None) -> Iterator[str]:
        """Yield the model's reply to *prompt* chunk by chunk."""
        ...


@runtime_checkable
class ChatAdapter(LLMAdapter, Protocol):
    """The rich contract the built-in adapters implement: conversations, tools, usage, async.

    Every method raises only :class:`~aegis_adapters.LLMError` subclasses. Streams yield
    :class:`TextDelta` chunks, then exactly one final :class:`ChatResponse` carrying the full text,
    the tool calls, the usage and the stop reason. Async methods never block the event loop.
    """

    @property
    def endpoint(self) -> Endpoint:
        """The provider, base URL and model this adapter calls (a breaker key)."""
        ...

    def chat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ChatResponse:
        """Send a conversation and return the model's complete reply."""
        ...

    def chat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> Iterator[TextDelta | ChatResponse]:
        """Stream the reply: text deltas, then one final :class:`ChatResponse`."""
        ...

    async def achat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ChatResponse:
        """Async twin of :meth:`chat`."""
        ...

    def achat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> AsyncIterator[TextDelta | ChatResponse]:
        """Async twin of :meth:`chat_stream`."""
        ...

    async def agenerate(self, prompt: str, *, system: str | None = None) -> str:
        """Async twin of :meth:`generate`."""
        ...

    def astream(self, prompt: str, *, system: str | None = None) -> AsyncIterator[str]:
        """Async twin of :meth:`stream`."""
        ...
