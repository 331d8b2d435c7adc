# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The shared base of the built-in adapters: the prompt-level API on top of the chat API."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterator, Sequence

from aegis_adapters._types import ChatResponse, Endpoint, Message, TextDelta, ToolSpec

__all__ = ["BaseChatAdapter"]


class BaseChatAdapter(abc.ABC):
    """Implements ``generate``/``stream``/``agenerate``/``astream`` on top of the chat methods.

    Subclasses provide :attr:`endpoint`, :meth:`chat`, :meth:`chat_stream`, :meth:`achat` and
    :meth:`achat_stream`; each prompt-level method is a thin driver over one of them, so sync and
    async behave the same. Subclass it to write your own :class:`~aegis_adapters.ChatAdapter`.
    """

    @property
    @abc.abstractmethod
    def endpoint(self) -> Endpoint:
        """The provider, base URL and model this adapter calls."""

    @abc.abstractmethod
    def chat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ChatResponse:
        """Send a conversation and return the model's complete reply."""

    @abc.abstractmethod
    def chat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> Iterator[TextDelta | ChatResponse]:
        """Stream the reply: text deltas, then one final :class:`ChatResponse`."""

    @abc.abstractmethod
    async def achat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ChatResponse:
        """Async twin of :meth:`chat`."""

    @abc.abstractmethod
    def achat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> AsyncIterator[TextDelta | ChatResponse]:
        """Async twin of :meth:`chat_stream`."""

    def generate(self, prompt: str, *, system: str | None = None) -> str:
        """Return the model's complete reply to *prompt* (one user message)."""
        return self.chat([Message.user(prompt)], system=system).text

    def stream(self, prompt: str, *, system: str | None = None) -> Iterator[str]:
        """Yield the reply to *prompt* chunk by chunk (the final response is not yielded)."""
        for item in self.chat_stream([Message.user(prompt)], system=system):
            if isinstance(item, TextDelta):
                yield item.text

    async def agenerate(self, prompt: str, *, system: str | None = None) -> str:
        """Async twin of :meth:`generate`."""
        return (await self.achat([Message.user(prompt)], system=system)).text

    async def astream(self, prompt: str, *, system: str | None = None) -> AsyncIterator[str]:
        """Async twin of :meth:`stream`."""
        async for item in self.achat_stream([Message.user(prompt)], system=system):
            if isinstance(item, TextDelta):
                yield item.text

    def warm_up(self) -> None:  # noqa: B027  # an optional hook: most adapters need nothing
        """Do the slow one-off work of a first call now (import an SDK, build a client).

        Callers that time calls (task deadlines, durations) call this before their clocks
        start. It never raises: a problem it meets (a missing SDK or key) is left for the
        first call to report. The default does nothing.
        """

    async def awarm_up(self) -> None:
        """:meth:`warm_up` for async callers: also builds the running loop's client."""
        self.warm_up()

    def __repr__(self) -> str:
        """Class name and endpoint; never the API key."""
        return f"{type(self).__name__}({self.endpoint.key!r})"
