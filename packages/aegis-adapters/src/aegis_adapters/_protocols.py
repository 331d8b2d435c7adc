# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The adapter protocols: the article's minimal contract and the richer chat contract."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, TypeGuard, runtime_checkable

if TYPE_CHECKING:
    from aegis_adapters._types import (
        ChatResponse,
        Endpoint,
        Message,
        OutputSchema,
        TextDelta,
        ToolSpec,
    )

__all__ = ["ChatAdapter", "LLMAdapter", "StructuredChatAdapter", "supports_output_schema"]


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


class StructuredChatAdapter(ChatAdapter, Protocol):
    """A :class:`ChatAdapter` that can ask its provider for an answer of a given JSON shape.

    Its chat methods take ``output_schema=``; the reply's ``text`` is then the answer's JSON
    text, however the provider delivered it. ``native_output_schema`` is ``True`` on such an
    adapter (:func:`supports_output_schema` checks it): an adapter without it gets the schema
    through its prompt instead.
    """

    native_output_schema: bool
    """True: the chat methods take ``output_schema`` and the provider enforces it."""

    def chat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        output_schema: OutputSchema | None = None,
    ) -> ChatResponse:
        """Send a conversation; with *output_schema*, the reply's text is the JSON answer."""
        ...

    def chat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        output_schema: OutputSchema | None = None,
    ) -> Iterator[TextDelta | ChatResponse]:
        """Stream the reply; with *output_schema*, the deltas are the JSON answer's text."""
        ...

    async def achat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        output_schema: OutputSchema | None = None,
    ) -> ChatResponse:
        """Async twin of :meth:`chat`."""
        ...

    def achat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        output_schema: OutputSchema | None = None,
    ) -> AsyncIterator[TextDelta | ChatResponse]:
        """Async twin of :meth:`chat_stream`."""
        ...


def supports_output_schema(adapter: object) -> TypeGuard[StructuredChatAdapter]:
    """Whether *adapter* takes ``output_schema=`` (its ``native_output_schema`` is True).

    The built-in OpenAI, Anthropic and Ollama adapters do; the offline adapters and plain
    :class:`LLMAdapter` objects do not (callers put the schema in the prompt instead).
    """
    return getattr(adapter, "native_output_schema", False) is True and isinstance(
        adapter, ChatAdapter
    )
