"""The public API of aegis_adapters as a strict user sees it (checked by mypy and pyright)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aegis_adapters import (
        AnthropicAdapter,
        ChatAdapter,
        ChatResponse,
        EchoAdapter,
        Endpoint,
        LLMAdapter,
        LLMError,
        Message,
        OllamaAdapter,
        OpenAIAdapter,
        RateLimitError,
        RecordedCall,
        ScriptedAdapter,
        StopReason,
        TextDelta,
        ToolCall,
        ToolSpec,
        Usage,
        as_chat_adapter,
        make_adapter,
        parse_retry_after,
        redact_url,
    )
    from typing_extensions import assert_type

    def check_types(adapter: ChatAdapter, plain: LLMAdapter) -> None:
        assert_type(plain.generate("hi", system="s"), str)
        assert_type(plain.stream("hi"), Iterator[str])
        assert_type(adapter.endpoint, Endpoint)
        assert_type(adapter.endpoint.key, str)
        tool = ToolSpec("get_weather", "Weather.", {"type": "object"})
        response = adapter.chat([Message.user("hi")], system="s", tools=[tool])
        assert_type(response, ChatResponse)
        assert_type(response.text, str)
        assert_type(response.tool_calls, tuple[ToolCall, ...])
        assert_type(response.usage, Usage)
        assert_type(response.usage + Usage(1, 2), Usage)
        assert_type(response.usage.total_tokens, int)
        assert_type(response.stop_reason, StopReason | None)
        assert_type(response.tool_calls[0].arguments, Mapping[str, object])
        assert_type(adapter.chat_stream([Message.user("hi")]), Iterator[TextDelta | ChatResponse])
        assert_type(
            adapter.achat_stream([Message.user("hi")]), AsyncIterator[TextDelta | ChatResponse]
        )
        assert_type(adapter.astream("hi"), AsyncIterator[str])
        result = Message.tool_result(response.tool_calls[0], "18C", is_error=False)
        assert_type(result, Message)
        assert_type(result.tool_call_id, str | None)

    async def check_async(adapter: ChatAdapter) -> None:
        assert_type(await adapter.agenerate("hi"), str)
        assert_type(await adapter.achat([Message.user("hi")]), ChatResponse)

    def check_adapters() -> None:
        built: list[ChatAdapter] = [
            AnthropicAdapter(max_tokens=256, temperature=0.2, timeout_s=30.0),
            OpenAIAdapter("qwen", base_url="http://localhost:1234/v1", stream_usage=False),
            OllamaAdapter("llama3.2", keep_alive="5m", options={"num_ctx": 8192}),
            ScriptedAdapter(["a", ChatResponse("b"), RuntimeError("c")], delay_s=0.01),
            ScriptedAdapter(lambda messages: messages[-1].content),
            EchoAdapter(),
        ]
        assert_type(built[0].endpoint, Endpoint)
        assert_type(AnthropicAdapter.DEFAULT_MODEL, str)
        assert_type(ScriptedAdapter().calls, list[RecordedCall])

    def check_errors(error: LLMError) -> None:
        assert_type(error.provider, str)
        assert_type(error.status_code, int | None)
        assert_type(error.provider_message, str)
        if isinstance(error, RateLimitError):
            assert_type(error.retry_after_s, float | None)
        assert_type(parse_retry_after({"retry-after": "3"}), float | None)

    def check_factory() -> None:
        assert_type(make_adapter("ollama"), ChatAdapter)
        assert_type(as_chat_adapter(make_adapter("openai", "gpt-4o-mini")), ChatAdapter)
        assert_type(redact_url("http://u:p@h"), str)
