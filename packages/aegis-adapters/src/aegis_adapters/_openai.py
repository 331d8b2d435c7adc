# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The OpenAI adapter, on the official SDK's Chat Completions (any OpenAI-compatible server)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal

from aegis_adapters._errors import InvalidRequestError, ProviderUnavailableError
from aegis_adapters._sdk import SDKAdapter, StreamAccumulator
from aegis_adapters._types import (
    ChatResponse,
    Endpoint,
    Message,
    OutputSchema,
    StopReason,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from aegis_adapters._wire import as_int, as_list, as_map, as_str, load_arguments

__all__ = ["OpenAIAdapter"]

_PROVIDER = "openai"
_DEFAULT_URL = "https://api.openai.com/v1"
_PLACEHOLDER_KEY = "not-needed"  # local OpenAI-compatible servers ignore the key
_FINISH_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filter",
}


def _stop_reason(value: object) -> StopReason | None:
    return _FINISH_REASONS.get(value) if isinstance(value, str) else None


def _messages(system: str | None, messages: Sequence[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if system is not None:
        out.append({"role": "system", "content": system})
    for message in messages:
        if message.role == "tool":
            out.append(
                {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
            )
        elif message.role == "assistant" and message.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": message.content or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                "arguments": json.dumps(dict(call.arguments)),
                            },
                        }
                        for call in message.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": message.role, "content": message.content})
    return out


def _usage(value: object) -> Usage:
    usage = as_map(value)
    return Usage(as_int(usage.get("prompt_tokens")), as_int(usage.get("completion_tokens")))


class _Accumulator(StreamAccumulator):
    """Folds ``chat.completion.chunk`` events into deltas and one final response."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.usage = Usage()
        self.finish_reason: StopReason | None = None
        self.finished = False
        self.refused = False
        self.model: str | None = None

    def feed(self, event: Mapping[str, object]) -> Iterator[TextDelta]:
        self.model = as_str(event.get("model")) or self.model
        if event.get("usage") is not None:
            # Per count: a later chunk's empty or unreadable usage does not wipe a real one.
            usage, last = _usage(event.get("usage")), self.usage
            self.usage = Usage(
                usage.input_tokens or last.input_tokens, usage.output_tokens or last.output_tokens
            )
        for item in as_list(event.get("choices"))[:1]:
            choice = as_map(item)
            delta = as_map(choice.get("delta"))
            refusal = as_str(delta.get("refusal"))  # a structured-output refusal, as text
            self.refused = self.refused or bool(refusal)
            text = as_str(delta.get("content")) or refusal
            if text:
                self.text.append(text)
                yield TextDelta(text)
            for fragment in as_list(delta.get("tool_calls")):
                piece = as_map(fragment)
                call = self.calls.setdefault(
                    as_int(piece.get("index")), {"id": "", "name": "", "arguments": []}
                )
                function = as_map(piece.get("function"))
                call["id"] = as_str(piece.get("id")) or call["id"]
                call["name"] = as_str(function.get("name")) or call["name"]
                call["arguments"].append(as_str(function.get("arguments")))
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self.finished = True
                self.finish_reason = _stop_reason(reason)

    def finish(self) -> ChatResponse:
        if not self.finished:
            raise ProviderUnavailableError(_PROVIDER, "the stream ended without a finish_reason")
        calls = tuple(
            ToolCall(
                call["id"],
                call["name"],
                load_arguments(_PROVIDER, call["name"], "".join(call["arguments"])),
            )
            for _, call in sorted(self.calls.items())
        )
        return ChatResponse(
            "".join(self.text),
            tool_calls=calls,
            usage=self.usage,
            stop_reason="content_filter" if self.refused else self.finish_reason,
            model=self.model,
        )


class OpenAIAdapter(SDKAdapter):
    """OpenAI's Chat Completions through the official ``openai`` SDK.

    Works with any OpenAI-compatible server (LM Studio, vLLM, llama.cpp, Ollama's ``/v1``): set
    ``base_url``; without a key, a placeholder is sent when a base URL is configured. The system
    prompt is the first message (``role: "system"``); tools are ``{type: "function", function:
    {name, description, parameters}}``; an ``output_schema`` is sent as ``response_format={"type":
    "json_schema", ...}``. Streaming asks for usage with
    ``stream_options={"include_usage": True}`` unless ``stream_usage=False`` (some compatible
    servers and older Azure deployments reject it). The client is built on first use with
    ``max_retries=0``. Thread-safe; the async methods use ``AsyncOpenAI``.

    Azure OpenAI: use its OpenAI-compatible v1 endpoint, with the deployment name as the model::

        OpenAIAdapter(
            "my-deployment",
            base_url="https://my-resource.openai.azure.com/openai/v1/",
            api_key=os.environ["AZURE_OPENAI_API_KEY"],
        )

    Needs ``pip install "aegis-adapters[openai]"``.
    """

    DEFAULT_MODEL: ClassVar[str] = "gpt-4o-mini"
    """The model used when none is given."""

    _provider = _PROVIDER
    _module = "openai"
    _extra = "openai"
    _client_classes = ("OpenAI", "AsyncOpenAI")
    _key_variable = "OPENAI_API_KEY"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_tokens: int | None = 1024,
        max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
        temperature: float | None = None,
        timeout_s: float = 60.0,
        stream_usage: bool = True,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        """Configure the adapter; no network access and no SDK import happen here.

        Args:
            model: The model (or Azure deployment) name.
            base_url: The API's base URL; defaults to ``OPENAI_BASE_URL``, else OpenAI's.
            api_key: The API key; defaults to ``OPENAI_API_KEY``, else a placeholder when a base
                URL is configured (local servers need none).
            max_tokens: Most tokens to generate; ``None`` leaves it to the server.
            max_tokens_param: The request field for ``max_tokens``: ``"max_tokens"`` (what
                compatible servers understand) or ``"max_completion_tokens"`` (OpenAI's
                reasoning models require it).
            temperature: Sampling temperature; the server's default when ``None``.
            timeout_s: Seconds allowed for connecting and for each read.
            stream_usage: Send ``stream_options={"include_usage": True}`` when streaming.
            default_headers: Extra headers sent with every request.
        """
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
        configured_url = base_url or os.environ.get("OPENAI_BASE_URL")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if key is None and configured_url is not None:
            key = _PLACEHOLDER_KEY
        super().__init__(
            endpoint=Endpoint(_PROVIDER, configured_url or _DEFAULT_URL, model),
            base_url=configured_url or _DEFAULT_URL,
            api_key=key,
            timeout_s=timeout_s,
            default_headers=default_headers,
        )
        self.max_tokens = max_tokens
        self.max_tokens_param = max_tokens_param
        self.temperature = temperature
        self.stream_usage = stream_usage

    def _create(self, client: Any, kwargs: dict[str, Any]) -> Any:
        return client.chat.completions.create(**kwargs)

    def _request(
        self,
        messages: Sequence[Message],
        system: str | None,
        tools: Sequence[ToolSpec],
        *,
        stream: bool,
        output_schema: OutputSchema | None = None,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self._endpoint.model,
            "messages": _messages(system, messages),
            "stream": stream,
        }
        if self.max_tokens is not None:
            kwargs[self.max_tokens_param] = self.max_tokens
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.input_schema),
                    },
                }
                for t in tools
            ]
        if stream and self.stream_usage:
            kwargs["stream_options"] = {"include_usage": True}
        if output_schema is not None:
            json_schema: dict[str, object] = {
                "name": output_schema.name,
                "schema": dict(output_schema.schema),
                "strict": output_schema.strict,
            }
            if output_schema.description:
                json_schema["description"] = output_schema.description
            kwargs["response_format"] = {"type": "json_schema", "json_schema": json_schema}
        return kwargs

    def _parse(
        self, response: Mapping[str, object], output_schema: OutputSchema | None = None
    ) -> ChatResponse:
        del output_schema  # the answer's JSON is the message's content
        choices = as_list(response.get("choices"))
        if not choices:
            raise InvalidRequestError(
                _PROVIDER, f"malformed response without choices: {dict(response)!r:.200}"
            )
        choice = as_map(choices[0])
        message = as_map(choice.get("message"))
        calls = tuple(
            ToolCall(
                as_str(call.get("id")),
                as_str(as_map(call.get("function")).get("name")),
                load_arguments(
                    _PROVIDER,
                    as_str(as_map(call.get("function")).get("name")),
                    as_str(as_map(call.get("function")).get("arguments")),
                ),
            )
            for call in map(as_map, as_list(message.get("tool_calls")))
        )
        # A model that refuses a response_format says so in "refusal", not "content".
        refusal = as_str(message.get("refusal"))
        return ChatResponse(
            as_str(message.get("content")) or refusal,
            tool_calls=calls,
            usage=_usage(response.get("usage")),
            stop_reason="content_filter" if refusal else _stop_reason(choice.get("finish_reason")),
            model=as_str(response.get("model")) or None,
        )

    def _accumulator(self, output_schema: OutputSchema | None = None) -> StreamAccumulator:
        del output_schema  # the answer's JSON streams as the content
        return _Accumulator()
