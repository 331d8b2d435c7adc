# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The Anthropic adapter, on the official SDK's Messages API."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

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

__all__ = ["AnthropicAdapter"]

_PROVIDER = "anthropic"
_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "pause_turn": "end_turn",
    "max_tokens": "max_tokens",
    "model_context_window_exceeded": "max_tokens",
    "tool_use": "tool_use",
    "stop_sequence": "stop_sequence",
    "refusal": "content_filter",
}


def _stop_reason(value: object) -> StopReason | None:
    return _STOP_REASONS.get(value) if isinstance(value, str) else None


def _messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Anthropic's shape: tool results are user turns; consecutive results share one turn."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
                "is_error": message.is_error,
            }
            previous = out[-1] if out else None
            if previous is not None and previous["role"] == "user" and previous.get("_results"):
                previous["content"].append(block)
            else:
                out.append({"role": "user", "content": [block], "_results": True})
        elif message.role == "assistant" and message.tool_calls:
            blocks: list[dict[str, Any]] = []
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            blocks.extend(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": dict(call.arguments),
                }
                for call in message.tool_calls
            )
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": message.role, "content": message.content})
    for turn in out:
        turn.pop("_results", None)
    return out


def _answer(
    text: str, calls: list[ToolCall], stop: StopReason | None, answer: str | None
) -> tuple[str, tuple[ToolCall, ...], StopReason | None]:
    """The reply's text, calls and stop reason, the answer tool's input taking the text's place.

    *answer* is that input's JSON text when the answer tool was called, else None.
    """
    if answer is None:
        return text, tuple(calls), stop
    if calls:
        return answer, tuple(calls), "tool_use"
    return answer, (), ("max_tokens" if stop == "max_tokens" else "end_turn")


class _Accumulator(StreamAccumulator):
    """Folds Anthropic's SSE events into deltas and one final response.

    With an output schema, the answer tool's input JSON streams as the text deltas.
    """

    def __init__(self, output: OutputSchema | None = None) -> None:
        self.output = output
        self.text: list[str] = []
        self.blocks: dict[int, dict[str, Any]] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.stop_reason: StopReason | None = None
        self.model: str | None = None
        self.stopped = False

    def feed(self, event: Mapping[str, object]) -> Iterator[TextDelta]:
        kind = event.get("type")
        if kind == "message_start":
            self._start(as_map(event.get("message")))
        elif kind == "content_block_start":
            block = as_map(event.get("content_block"))
            self.blocks[as_int(event.get("index"))] = {**block, "json": []}
            if block.get("type") == "text":
                yield from self._text(block.get("text"))
        elif kind == "content_block_delta":
            delta = as_map(event.get("delta"))
            if delta.get("type") == "text_delta":
                yield from self._text(delta.get("text"))
            elif delta.get("type") == "input_json_delta":
                yield from self._json(as_int(event.get("index")), as_str(delta.get("partial_json")))
        elif kind == "message_delta":
            self.stop_reason = _stop_reason(as_map(event.get("delta")).get("stop_reason"))
            usage = as_map(event.get("usage"))
            # output_tokens in message_delta is cumulative, not an increment.
            self.output_tokens = as_int(usage.get("output_tokens")) or self.output_tokens
            self.input_tokens = as_int(usage.get("input_tokens")) or self.input_tokens
        elif kind == "message_stop":
            self.stopped = True

    def _json(self, index: int, partial: str) -> Iterator[TextDelta]:
        tool = self.blocks.get(index)
        if tool is None:
            return
        tool["json"].append(partial)
        if partial and self.output is not None and tool.get("name") == self.output.name:
            yield TextDelta(partial)  # the answer tool's input is the answer's text

    def _start(self, message: Mapping[str, object]) -> None:
        self.model = as_str(message.get("model")) or None
        usage = as_map(message.get("usage"))
        self.input_tokens = as_int(usage.get("input_tokens"))
        self.output_tokens = as_int(usage.get("output_tokens"))

    def _text(self, value: object) -> Iterator[TextDelta]:
        text = as_str(value)
        if text:
            self.text.append(text)
            yield TextDelta(text)

    def finish(self) -> ChatResponse:
        if not self.stopped:
            raise ProviderUnavailableError(
                _PROVIDER, "the stream ended without its message_stop event"
            )
        answer_name = None if self.output is None else self.output.name
        blocks = [
            block for _, block in sorted(self.blocks.items()) if block.get("type") == "tool_use"
        ]
        calls = [
            ToolCall(
                as_str(block.get("id")),
                as_str(block.get("name")),
                load_arguments(_PROVIDER, as_str(block.get("name")), "".join(block["json"])),
            )
            for block in blocks
            if block.get("name") != answer_name
        ]
        # The answer's JSON as streamed, even if cut short: checking it is the caller's job.
        answers = ["".join(block["json"]) for block in blocks if block.get("name") == answer_name]
        text, tool_calls, stop = _answer(
            "".join(self.text), calls, self.stop_reason, answers[-1].strip() if answers else None
        )
        return ChatResponse(
            text,
            tool_calls=tool_calls,
            usage=Usage(self.input_tokens, self.output_tokens),
            stop_reason=stop,
            model=self.model,
        )


class AnthropicAdapter(SDKAdapter):
    """Claude through the official ``anthropic`` SDK's Messages API, streaming over SSE.

    The system prompt goes in the top-level ``system`` field; tools as ``{name, description,
    input_schema}``; an ``output_schema`` as one more tool, named after it, that the model is
    made to call (``tool_choice``): its input is the answer, returned as the response's text;
    ``temperature`` through ``extra_body`` (the SDK no longer has the parameter).
    The client is built on first use with ``max_retries=0``: one failing call is one request, and
    retrying is the caller's job. Thread-safe; the async methods use ``AsyncAnthropic``.

    Every failure raises an :class:`~aegis_adapters.LLMError` subclass with the SDK's exception
    chained. Needs ``pip install "aegis-adapters[anthropic]"``.
    """

    DEFAULT_MODEL: ClassVar[str] = "claude-sonnet-4-6"
    """The model used when none is given."""

    _provider = _PROVIDER
    _module = "anthropic"
    _extra = "anthropic"
    _client_classes = ("Anthropic", "AsyncAnthropic")
    _key_variable = "ANTHROPIC_API_KEY"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int = 1024,
        temperature: float | None = None,
        timeout_s: float = 60.0,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        """Configure the adapter; no network access and no SDK import happen here.

        Args:
            model: The model name.
            api_key: The API key; defaults to ``ANTHROPIC_API_KEY``.
            base_url: The API's base URL; defaults to ``ANTHROPIC_BASE_URL``, else
                ``https://api.anthropic.com``.
            max_tokens: Most tokens to generate (required by the Messages API).
            temperature: Sampling temperature; the provider's default when ``None``.
            timeout_s: Seconds allowed for connecting and for each read (a stalled stream
                fails after this long).
            default_headers: Extra headers sent with every request.
        """
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        resolved_url = (
            base_url or os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"
        )
        super().__init__(
            endpoint=Endpoint(_PROVIDER, resolved_url, model),
            base_url=resolved_url,
            api_key=api_key or os.environ.get("ANTHROPIC_API_KEY"),
            timeout_s=timeout_s,
            default_headers=default_headers,
        )
        self.max_tokens = max_tokens
        self.temperature = temperature

    def _create(self, client: Any, kwargs: dict[str, Any]) -> Any:
        return client.messages.create(**kwargs)

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
            "max_tokens": self.max_tokens,
            "messages": _messages(messages),
            "stream": stream,
        }
        if system is not None:
            kwargs["system"] = system
        specs = [
            {"name": t.name, "description": t.description, "input_schema": dict(t.input_schema)}
            for t in tools
        ]
        if output_schema is not None:
            specs.append(
                {
                    "name": output_schema.name,
                    "description": output_schema.description
                    or "Give your final answer by calling this tool.",
                    "input_schema": dict(output_schema.schema),
                }
            )
            # Alone, the answer tool is forced; with the agent's tools, some tool call is
            # (the model may use its tools first and answer through this one at the end).
            kwargs["tool_choice"] = (
                {"type": "any"} if tools else {"type": "tool", "name": output_schema.name}
            )
        if specs:
            kwargs["tools"] = specs
        if self.temperature is not None:
            kwargs["extra_body"] = {"temperature": self.temperature}
        return kwargs

    def _parse(
        self, response: Mapping[str, object], output_schema: OutputSchema | None = None
    ) -> ChatResponse:
        if "content" not in response:
            raise InvalidRequestError(_PROVIDER, f"malformed response: {dict(response)!r:.200}")
        text: list[str] = []
        calls: list[ToolCall] = []
        answer: str | None = None
        for item in as_list(response.get("content")):
            block = as_map(item)
            if block.get("type") == "text":
                text.append(as_str(block.get("text")))
            elif block.get("type") != "tool_use":
                continue
            elif output_schema is not None and block.get("name") == output_schema.name:
                answer = json.dumps(as_map(block.get("input")), ensure_ascii=False)
            else:
                calls.append(
                    ToolCall(
                        as_str(block.get("id")),
                        as_str(block.get("name")),
                        as_map(block.get("input")),
                    )
                )
        usage = as_map(response.get("usage"))
        reply, tool_calls, stop = _answer(
            "".join(text), calls, _stop_reason(response.get("stop_reason")), answer
        )
        return ChatResponse(
            reply,
            tool_calls=tool_calls,
            usage=Usage(as_int(usage.get("input_tokens")), as_int(usage.get("output_tokens"))),
            stop_reason=stop,
            model=as_str(response.get("model")) or None,
        )

    def _accumulator(self, output_schema: OutputSchema | None = None) -> StreamAccumulator:
        return _Accumulator(output_schema)
