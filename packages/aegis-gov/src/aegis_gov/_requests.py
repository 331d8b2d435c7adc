"""How a :class:`ChatRequest` is handed to an adapter: with ``output_schema`` when it takes one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from aegis_adapters import ChatAdapter, ChatResponse, TextDelta, supports_output_schema

from aegis_gov._conversation import ChatRequest

__all__ = ["aopen_stream", "asend", "open_stream", "send"]


def send(adapter: ChatAdapter, request: ChatRequest) -> ChatResponse:
    """``adapter.chat`` with the request's messages, system prompt, tools and output schema."""
    if request.output_schema is not None and supports_output_schema(adapter):
        return adapter.chat(
            request.messages,
            system=request.system,
            tools=request.tools,
            output_schema=request.output_schema,
        )
    return adapter.chat(request.messages, system=request.system, tools=request.tools)


async def asend(adapter: ChatAdapter, request: ChatRequest) -> ChatResponse:
    """The async twin of :func:`send`."""
    if request.output_schema is not None and supports_output_schema(adapter):
        return await adapter.achat(
            request.messages,
            system=request.system,
            tools=request.tools,
            output_schema=request.output_schema,
        )
    return await adapter.achat(request.messages, system=request.system, tools=request.tools)


def open_stream(adapter: ChatAdapter, request: ChatRequest) -> Iterator[TextDelta | ChatResponse]:
    """``adapter.chat_stream`` for the request (see :func:`send`)."""
    if request.output_schema is not None and supports_output_schema(adapter):
        return adapter.chat_stream(
            request.messages,
            system=request.system,
            tools=request.tools,
            output_schema=request.output_schema,
        )
    return adapter.chat_stream(request.messages, system=request.system, tools=request.tools)


def aopen_stream(
    adapter: ChatAdapter, request: ChatRequest
) -> AsyncIterator[TextDelta | ChatResponse]:
    """``adapter.achat_stream`` for the request (see :func:`send`)."""
    if request.output_schema is not None and supports_output_schema(adapter):
        return adapter.achat_stream(
            request.messages,
            system=request.system,
            tools=request.tools,
            output_schema=request.output_schema,
        )
    return adapter.achat_stream(request.messages, system=request.system, tools=request.tools)
