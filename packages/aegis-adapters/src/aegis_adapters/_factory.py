"""One place that turns a provider name, a model and the environment into an adapter.

The facade's default adapter, the demo and pipeline files all build adapters here, and a plain
:class:`LLMAdapter` is wrapped into a :class:`ChatAdapter` once, by :func:`as_chat_adapter`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Final, Literal, TypeGuard, get_args

from aegis_adapters._base import BaseChatAdapter
from aegis_adapters._protocols import ChatAdapter, LLMAdapter
from aegis_adapters._types import ChatResponse, Endpoint, Message, TextDelta, ToolSpec

__all__ = [
    "PROVIDERS",
    "Provider",
    "adapter_from_environment",
    "as_chat_adapter",
    "is_chat_adapter",
    "make_adapter",
]

Provider = Literal["anthropic", "openai", "ollama"]
"""A provider :func:`make_adapter` can build an adapter for."""
PROVIDERS: Final[tuple[Provider, ...]] = get_args(Provider)
"""Every :data:`Provider`, in the order the environment is searched."""


def make_adapter(
    provider: str,
    model: str | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    timeout_s: float | None = None,
) -> ChatAdapter:
    """A new adapter for *provider*; options left ``None`` take the adapter's own defaults.

    ``model=None`` is the adapter's ``DEFAULT_MODEL``; ``base_url`` and ``api_key`` default to
    the provider's environment variables, as each adapter documents. Nothing is contacted.

    Raises:
        ValueError: *provider* is not one of :data:`PROVIDERS`.
    """
    options: dict[str, object] = {
        name: value
        for name, value in (
            ("base_url", base_url),
            ("max_tokens", max_tokens),
            ("temperature", temperature),
            ("timeout_s", timeout_s),
        )
        if value is not None
    }
    # Each adapter's module loads with the first adapter of its provider.
    if provider == "anthropic":
        from aegis_adapters._anthropic import AnthropicAdapter  # noqa: PLC0415

        return AnthropicAdapter(
            model or AnthropicAdapter.DEFAULT_MODEL,
            api_key=api_key,
            **options,  # type: ignore[arg-type]
        )
    if provider == "openai":
        from aegis_adapters._openai import OpenAIAdapter  # noqa: PLC0415

        return OpenAIAdapter(
            model or OpenAIAdapter.DEFAULT_MODEL,
            api_key=api_key,
            **options,  # type: ignore[arg-type]
        )
    if provider == "ollama":
        from aegis_adapters._ollama import OllamaAdapter  # noqa: PLC0415

        return OllamaAdapter(model or OllamaAdapter.DEFAULT_MODEL, **options)  # type: ignore[arg-type]
    known = ", ".join(PROVIDERS)
    raise ValueError(f"unknown provider {provider!r}; expected one of {known}")


def adapter_from_environment(
    environ: Mapping[str, str] | None = None, *, max_tokens: int | None = None
) -> ChatAdapter:
    """The adapter the environment asks for.

    ``ANTHROPIC_API_KEY`` set: :class:`AnthropicAdapter`; else ``OPENAI_API_KEY``:
    :class:`OpenAIAdapter`; else :class:`OllamaAdapter` (``OLLAMA_HOST`` or localhost).
    ``AEGIS_MODEL`` names the model, otherwise each adapter's ``DEFAULT_MODEL``.
    """
    env = os.environ if environ is None else environ
    model = env.get("AEGIS_MODEL") or None
    if env.get("ANTHROPIC_API_KEY"):
        provider: Provider = "anthropic"
    elif env.get("OPENAI_API_KEY"):
        provider = "openai"
    else:
        provider = "ollama"
    return make_adapter(provider, model, max_tokens=max_tokens)


_CHAT_ADAPTER_TYPES: dict[type, bool] = {}


def is_chat_adapter(adapter: object) -> TypeGuard[ChatAdapter]:
    """``isinstance(adapter, ChatAdapter)``, cached per class (protocol checks are slow)."""
    kind = type(adapter)
    known = _CHAT_ADAPTER_TYPES.get(kind)
    if known is None:
        known = _CHAT_ADAPTER_TYPES[kind] = isinstance(adapter, ChatAdapter)
    return known


def as_chat_adapter(adapter: LLMAdapter) -> ChatAdapter:
    """*adapter* as a :class:`ChatAdapter`: itself if it is one, else a wrapper around it.

    The wrapper sends the last message's text to ``generate``/``stream`` (a plain adapter has
    no conversation or tools), runs them on a thread for the async methods, and names its
    endpoint ``custom:<class>@<id>`` so each plain adapter gets its own breaker.
    """
    if is_chat_adapter(adapter):
        return adapter
    return _PlainChatAdapter(adapter)


class _PlainChatAdapter(BaseChatAdapter):
    """A plain :class:`LLMAdapter` behind the chat contract."""

    def __init__(self, inner: LLMAdapter) -> None:
        self._inner = inner
        kind = type(inner).__qualname__
        self._endpoint = Endpoint("custom", f"custom:{kind}@{id(inner):x}", kind)

    @property
    def endpoint(self) -> Endpoint:
        """``custom``, ``custom:<class>@<id>``, the class name."""
        return self._endpoint

    @property
    def wrapped(self) -> LLMAdapter:
        """The plain adapter inside."""
        return self._inner

    def chat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),  # noqa: ARG002  # a plain adapter takes no tools
    ) -> ChatResponse:
        """``generate`` on the last message's text."""
        return ChatResponse(text=self._inner.generate(_last_text(messages), system=system))

    def chat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),  # noqa: ARG002
    ) -> Iterator[TextDelta | ChatResponse]:
        """``stream`` on the last message's text, then the whole text as the response."""
        chunks: list[str] = []
        for chunk in self._inner.stream(_last_text(messages), system=system):
            chunks.append(chunk)
            yield TextDelta(chunk)
        yield ChatResponse(text="".join(chunks))

    async def achat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ChatResponse:
        """:meth:`chat` on a thread: a plain adapter is synchronous."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        return await asyncio.to_thread(self.chat, messages, system=system, tools=tools)

    async def achat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> AsyncIterator[TextDelta | ChatResponse]:
        """:meth:`chat_stream` with each chunk read on a thread."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        stream = self.chat_stream(messages, system=system, tools=tools)
        done = object()
        while True:
            item = await asyncio.to_thread(next, stream, done)
            if item is done:
                return
            assert isinstance(item, (TextDelta, ChatResponse))  # noqa: S101  # our own stream
            yield item


def _last_text(messages: Sequence[Message]) -> str:
    return messages[-1].content if messages else ""
