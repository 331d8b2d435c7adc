# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""Offline adapters for tests and demos: scripted replies and an echo, with real streaming."""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import attrs

from aegis_adapters._base import BaseChatAdapter
from aegis_adapters._errors import PermanentError
from aegis_adapters._types import ChatResponse, Endpoint, Message, TextDelta, ToolSpec, Usage

__all__ = ["EchoAdapter", "RecordedCall", "ScriptExhaustedError", "ScriptedAdapter"]

Reply = str | ChatResponse | BaseException
"""One scripted reply: text, a full response (tool calls, usage...), or an exception to raise."""

ReplyFunction = Callable[[Sequence[Message]], "str | ChatResponse"]
"""A function of the conversation that returns the reply (or raises)."""

_CHUNK = re.compile(r"\s*\S+\s*|\s+")


class ScriptExhaustedError(PermanentError):
    """A :class:`ScriptedAdapter` was called more times than it has replies."""


@attrs.frozen
class RecordedCall:
    """What an offline adapter was asked, in one call.

    Attributes:
        messages: The conversation sent.
        system: The system prompt, if any.
        tools: The tools offered.
    """

    messages: tuple[Message, ...]
    system: str | None = None
    tools: tuple[ToolSpec, ...] = ()

    @property
    def prompt(self) -> str:
        """The content of the last user message (``""`` if there is none)."""
        return _last_user_text(self.messages)


def _last_user_text(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    return ""


def _count_words(text: str) -> int:
    return len(text.split())


def _chunks(text: str) -> list[str]:
    """Split *text* into word-sized chunks that join back to exactly *text*."""
    return _CHUNK.findall(text) or ([text] if text else [])


class _OfflineAdapter(BaseChatAdapter):
    """Streaming, async, latency and call recording shared by the offline adapters."""

    def __init__(self, *, provider: str, name: str, delay_s: float) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        self._endpoint = Endpoint(provider, f"{provider}://{name}", name)
        self.name = name
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._calls: list[RecordedCall] = []
        self._offset = 0  # calls made before this copy was unpickled

    @property
    def endpoint(self) -> Endpoint:
        """``Endpoint(provider, "<provider>://<name>", name)``."""
        return self._endpoint

    @property
    def calls(self) -> list[RecordedCall]:
        """A copy of every call made so far, in order (thread-safe)."""
        with self._lock:
            return list(self._calls)

    def _reply(self, call: RecordedCall, index: int) -> ChatResponse:
        raise NotImplementedError

    def _next(
        self, messages: Sequence[Message], system: str | None, tools: Sequence[ToolSpec]
    ) -> ChatResponse:
        call = RecordedCall(tuple(messages), system, tuple(tools))
        with self._lock:
            index = self._offset + len(self._calls)
            self._calls.append(call)
        return self._reply(call, index)

    def chat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ChatResponse:
        """Return the next reply, after sleeping ``delay_s`` (``time.sleep``)."""
        if self.delay_s:
            time.sleep(self.delay_s)
        return self._next(messages, system, tools)

    def chat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> Iterator[TextDelta | ChatResponse]:
        """Yield the next reply word by word, then the full :class:`ChatResponse`."""
        response = self.chat(messages, system=system, tools=tools)
        for chunk in _chunks(response.text):
            yield TextDelta(chunk)
        yield response

    async def achat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ChatResponse:
        """Async twin of :meth:`chat`; sleeps with ``asyncio.sleep``."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self._next(messages, system, tools)

    async def achat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> AsyncIterator[TextDelta | ChatResponse]:
        """Async twin of :meth:`chat_stream`."""
        response = await self.achat(messages, system=system, tools=tools)
        for chunk in _chunks(response.text):
            yield TextDelta(chunk)
        yield response

    def __getstate__(self) -> dict[str, object]:
        """Pickle without the lock or the recorded calls.

        A copy sent to a worker would otherwise carry every call made so far with each
        request. The copy's script goes on from where this adapter is.
        """
        state = self.__dict__.copy()
        del state["_lock"]
        with self._lock:
            state["_offset"] = self._offset + len(self._calls)
        state["_calls"] = []
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        """Restore a pickled adapter with a fresh lock."""
        self.__dict__.update(state)
        self._lock = threading.Lock()


class ScriptedAdapter(_OfflineAdapter):
    """Replies from a script, in order: for users' tests and demos (like pydantic-ai's TestModel).

    Each reply is text, a full :class:`ChatResponse` (to script tool calls, usage or a stop
    reason), or an exception instance, which the call raises (a copy, so tracebacks do not pile
    up). Instead of a list, pass a function of the conversation. Every call is recorded in
    :attr:`calls`. ``delay_s`` really sleeps, to simulate latency. Thread-safe: concurrent callers
    get distinct replies in call order.

    Raises:
        ScriptExhaustedError: from a call when the script has no reply left (unless ``cycle``).

    Examples:
        >>> adapter = ScriptedAdapter(["hello", "world"])
        >>> adapter.generate("hi")
        'hello'
        >>> "".join(adapter.stream("again"))
        'world'
        >>> [call.prompt for call in adapter.calls]
        ['hi', 'again']
    """

    def __init__(
        self,
        replies: Sequence[Reply] | ReplyFunction = (),
        *,
        name: str = "scripted",
        delay_s: float = 0.0,
        cycle: bool = False,
    ) -> None:
        """Build the adapter; its endpoint is ``Endpoint("scripted", "scripted://<name>", name)``.

        Args:
            replies: The script, or a function ``messages -> str | ChatResponse``.
            name: Names the endpoint (and is reported as the model).
            delay_s: Seconds each call sleeps before answering.
            cycle: Start over at the end of the script instead of raising.
        """
        super().__init__(provider="scripted", name=name, delay_s=delay_s)
        self._function: ReplyFunction | None
        self._replies: tuple[Reply, ...]
        if callable(replies):
            self._function, self._replies = replies, ()
        else:
            self._function, self._replies = None, tuple(replies)
            if cycle and not self._replies:
                raise ValueError("cycle=True needs at least one reply")
        self.cycle = cycle

    def _reply(self, call: RecordedCall, index: int) -> ChatResponse:
        if self._function is not None:
            return self._as_response(self._function(call.messages), call)
        if index >= len(self._replies) and not self.cycle:
            raise ScriptExhaustedError(
                "scripted",
                f"ScriptedAdapter {self.name!r} has no reply left for call #{index + 1}: "
                f"its script has {len(self._replies)} replies (pass more, or cycle=True)",
            )
        item = self._replies[index % len(self._replies)]
        if isinstance(item, BaseException):
            raise copy.copy(item)
        return self._as_response(item, call)

    def _as_response(self, reply: str | ChatResponse, call: RecordedCall) -> ChatResponse:
        if isinstance(reply, ChatResponse):
            return reply
        usage = Usage(_count_words(call.prompt), _count_words(reply))
        return ChatResponse(reply, usage=usage, stop_reason="end_turn", model=self.name)


class EchoAdapter(_OfflineAdapter):
    """Answers with the last user message, unchanged: the simplest adapter for demos and tests.

    Examples:
        >>> EchoAdapter().generate("ping")
        'ping'
    """

    def __init__(self, *, name: str = "echo", delay_s: float = 0.0) -> None:
        """Build the adapter; its endpoint is ``Endpoint("echo", "echo://<name>", name)``."""
        super().__init__(provider="echo", name=name, delay_s=delay_s)

    def _reply(self, call: RecordedCall, index: int) -> ChatResponse:
        del index
        text = call.prompt
        usage = Usage(_count_words(text), _count_words(text))
        return ChatResponse(text, usage=usage, stop_reason="end_turn", model=self.name)
