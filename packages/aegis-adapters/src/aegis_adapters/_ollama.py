# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The Ollama adapter: plain HTTP with requests against ``/api/chat``, streaming NDJSON."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from aegis_adapters._base import BaseChatAdapter
from aegis_adapters._errors import (
    InvalidRequestError,
    LLMError,
    ProviderUnavailableError,
    classify_failure,
    unreadable_url_error,
)
from aegis_adapters._redact import checked_base_url
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
from aegis_adapters._wire import as_int, as_list, as_map, as_str, error_details, loads

if TYPE_CHECKING:
    import requests

__all__ = ["OllamaAdapter", "ollama_base_url"]

_PROVIDER = "ollama"
_DEFAULT_URL = "http://localhost:11434"
_DONE_REASONS: dict[str, StopReason] = {"stop": "end_turn", "length": "max_tokens"}
_END = object()


def ollama_base_url(value: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """Ollama's base URL: *value*, else ``OLLAMA_HOST`` (``host:port`` accepted), else localhost.

    The one place ``OLLAMA_HOST`` is read and normalised (a scheme added, a trailing slash cut).
    """
    env = os.environ if environ is None else environ
    url = value or env.get("OLLAMA_HOST") or _DEFAULT_URL
    if "://" not in url:  # OLLAMA_HOST is often "host:port"
        url = f"http://{url}"
    return url.rstrip("/")


def _messages(system: str | None, messages: Sequence[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if system is not None:
        out.append({"role": "system", "content": system})
    for message in messages:
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            # Ollama's arguments are a JSON object, not a string as in OpenAI's API.
            item["tool_calls"] = [
                {"function": {"name": call.name, "arguments": dict(call.arguments)}}
                for call in message.tool_calls
            ]
        if message.role == "tool" and message.tool_name is not None:
            item["tool_name"] = message.tool_name
        out.append(item)
    return out


def _tool_calls(message: Mapping[str, object]) -> list[ToolCall]:
    calls = []
    for item in as_list(message.get("tool_calls")):
        call = as_map(item)
        function = as_map(call.get("function"))
        name = as_str(function.get("name"))
        arguments = function.get("arguments")
        if isinstance(arguments, str):  # some versions and proxies send a JSON string
            try:
                arguments = json.loads(arguments)
            except ValueError as exc:
                raise InvalidRequestError(
                    _PROVIDER, f"tool call {name!r} has malformed JSON arguments"
                ) from exc
        # Ollama gives no call ids (until recent versions); make one so results can refer to it.
        call_id = as_str(call.get("id")) or f"call_{uuid.uuid4().hex[:12]}"
        calls.append(ToolCall(call_id, name, as_map(arguments)))
    return calls


def _stop_reason(value: object, *, has_calls: bool) -> StopReason | None:
    if has_calls:
        return "tool_use"
    if not isinstance(value, str):
        return None
    return _DONE_REASONS.get(value, "end_turn")


def _final(text: str, calls: Sequence[ToolCall], line: Mapping[str, object]) -> ChatResponse:
    return ChatResponse(
        text,
        tool_calls=tuple(calls),
        usage=Usage(as_int(line.get("prompt_eval_count")), as_int(line.get("eval_count"))),
        stop_reason=_stop_reason(line.get("done_reason"), has_calls=bool(calls)),
        model=as_str(line.get("model")) or None,
    )


def _decode(raw: str | bytes) -> Mapping[str, object]:
    try:
        value: object = loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise InvalidRequestError(_PROVIDER, f"malformed JSON from Ollama: {raw[:200]!r}") from exc
    if not isinstance(value, Mapping):
        raise InvalidRequestError(_PROVIDER, f"malformed JSON from Ollama: {raw[:200]!r}")
    return as_map(value)


class OllamaAdapter(BaseChatAdapter):
    """A local model served by Ollama, over plain HTTP (``POST /api/chat``) with requests.

    Always sends ``stream`` explicitly (Ollama streams by default); streams NDJSON lines until the
    one with ``done: true``. The timeout is ``(connect_timeout_s, timeout_s)``: connecting fails
    fast, while each read may wait long enough for a cold model to load. ``keep_alive`` and
    ``options`` (``num_predict``, ``temperature``...) pass through; ``max_tokens`` and
    ``temperature`` fill ``options`` unless it sets them. An ``output_schema`` is sent as
    ``format`` (the JSON Schema itself), which constrains the model's output.

    Thread-safe: each thread uses its own ``requests.Session``. The async methods run the blocking
    requests in a worker thread (``asyncio.to_thread``), so the event loop never blocks; an
    abandoned async stream finishes its current read in that thread before closing.
    """

    DEFAULT_MODEL: ClassVar[str] = "llama3.2"
    """The model used when none is given."""

    native_output_schema: bool = True
    """The chat methods take ``output_schema``: it is sent as Ollama's ``format``."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        base_url: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout_s: float = 300.0,
        connect_timeout_s: float = 5.0,
        keep_alive: str | float | None = None,
        options: Mapping[str, object] | None = None,
    ) -> None:
        """Configure the adapter; no network access happens here.

        Args:
            model: The model name (as pulled, e.g. ``"llama3.2"``).
            base_url: The server; defaults to ``OLLAMA_HOST``, else ``http://localhost:11434``.
            max_tokens: Sent as ``options.num_predict``; the model's default when ``None``.
            temperature: Sent as ``options.temperature``; the model's default when ``None``.
            timeout_s: Seconds each read may wait (a cold model load happens before the first).
            connect_timeout_s: Seconds allowed to connect.
            keep_alive: How long the server keeps the model loaded (``"5m"``, seconds, ``-1``).
            options: Ollama model options, passed through.
        """
        if timeout_s <= 0 or connect_timeout_s <= 0:
            raise ValueError(
                f"timeouts must be > 0, got timeout_s={timeout_s}, "
                f"connect_timeout_s={connect_timeout_s}"
            )
        # The real URL may hold credentials; the endpoint's copy never does.
        self._base_url = checked_base_url(ollama_base_url(base_url))
        self._endpoint = Endpoint(_PROVIDER, self._base_url, model)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.keep_alive = keep_alive
        self.options: dict[str, object] = dict(options or {})
        self._local = threading.local()

    @property
    def endpoint(self) -> Endpoint:
        """The provider, base URL and model this adapter calls."""
        return self._endpoint

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            import requests  # noqa: PLC0415  # lazy: not imported with the package

            session = requests.Session()
            self._local.session = session
        return session

    def _payload(
        self,
        messages: Sequence[Message],
        system: str | None,
        tools: Sequence[ToolSpec],
        *,
        stream: bool,
        output_schema: OutputSchema | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self._endpoint.model,
            "messages": _messages(system, messages),
            "stream": stream,
        }
        if tools:
            payload["tools"] = [
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
        if output_schema is not None:
            payload["format"] = dict(output_schema.schema)
        options = dict(self.options)
        if self.max_tokens is not None:
            options.setdefault("num_predict", self.max_tokens)
        if self.temperature is not None:
            options.setdefault("temperature", self.temperature)
        if options:
            payload["options"] = options
        if self.keep_alive is not None:
            payload["keep_alive"] = self.keep_alive
        return payload

    @contextlib.contextmanager
    def _post(self, payload: dict[str, Any]) -> Iterator[requests.Response]:
        """POST to /api/chat; translate every failure; raise on an HTTP error status."""
        import requests  # noqa: PLC0415  # lazy: not imported with the package

        # Mistakes in the configuration, not an unavailable server.
        config_errors = (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            requests.exceptions.InvalidHeader,
        )
        try:
            with self._session().post(
                f"{self._base_url}/api/chat",
                json=payload,
                stream=bool(payload["stream"]),
                timeout=(self.connect_timeout_s, self.timeout_s),
            ) as response:
                if response.status_code != 200:  # noqa: PLR2004
                    _raise_for_status(response)
                yield response
        except LLMError:
            raise
        except requests.exceptions.InvalidURL as exc:
            raise unreadable_url_error(_PROVIDER, exc) from exc
        except config_errors as exc:
            raise InvalidRequestError(_PROVIDER, f"bad request configuration: {exc}") from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            if isinstance(exc, requests.ConnectTimeout):
                message = f"timed out after {self.connect_timeout_s:g} s connecting"
                raise ProviderUnavailableError(_PROVIDER, message) from exc
            if _timed_out(exc):
                message = f"timed out after {self.timeout_s:g} s waiting for the server"
                raise ProviderUnavailableError(_PROVIDER, message) from exc
            raise ProviderUnavailableError(_PROVIDER, f"connection failed: {exc!r}") from exc

    def chat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        output_schema: OutputSchema | None = None,
    ) -> ChatResponse:
        """Send the conversation (``stream: false``) and return the complete reply.

        Raises:
            LLMError: a subclass naming the failure; the requests exception is chained.
        """
        with self._post(
            self._payload(messages, system, tools, stream=False, output_schema=output_schema)
        ) as response:
            line = _decode(response.content)
        if "error" in line:
            raise _stream_error(line)
        message = as_map(line.get("message"))
        if not line.get("done") or "message" not in line:
            raise InvalidRequestError(_PROVIDER, f"malformed response: {dict(line)!r:.200}")
        return _final(as_str(message.get("content")), _tool_calls(message), line)

    def chat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        output_schema: OutputSchema | None = None,
    ) -> Iterator[TextDelta | ChatResponse]:
        """Stream the reply (``stream: true``): text deltas, then one final response.

        Raises:
            LLMError: from the iterator, including an ``{"error"}`` line, a dropped connection
                and a stream that ends without its ``done: true`` line.
        """
        text: list[str] = []
        calls: list[ToolCall] = []
        with self._post(
            self._payload(messages, system, tools, stream=True, output_schema=output_schema)
        ) as response:
            for raw in response.iter_lines():
                if not raw.strip():
                    continue
                line = _decode(raw)
                if "error" in line:
                    raise _stream_error(line)
                message = as_map(line.get("message"))
                chunk = as_str(message.get("content"))
                calls.extend(_tool_calls(message))
                if chunk:
                    text.append(chunk)
                    yield TextDelta(chunk)
                if line.get("done") is True:
                    yield _final("".join(text), calls, line)
                    return
        raise ProviderUnavailableError(_PROVIDER, "the stream ended without its done: true line")

    async def achat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        output_schema: OutputSchema | None = None,
    ) -> ChatResponse:
        """Async twin of :meth:`chat`: the request runs in a worker thread."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        return await asyncio.to_thread(
            self.chat, messages, system=system, tools=tools, output_schema=output_schema
        )

    async def achat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        output_schema: OutputSchema | None = None,
    ) -> AsyncIterator[TextDelta | ChatResponse]:
        """Async twin of :meth:`chat_stream`: each read runs in a worker thread."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        iterator = self.chat_stream(
            messages, system=system, tools=tools, output_schema=output_schema
        )
        try:
            while True:
                item = await asyncio.to_thread(next, iterator, _END)
                if item is _END:
                    return
                assert isinstance(item, TextDelta | ChatResponse)  # noqa: S101  # narrows _END
                yield item
        finally:
            # If a read is still running in its thread (cancelled await), the generator is busy:
            # it closes itself when that read finishes and the generator is collected.
            close = getattr(iterator, "close", None)
            if close is not None:
                with contextlib.suppress(ValueError):
                    await asyncio.to_thread(close)

    def __getstate__(self) -> dict[str, object]:
        """Pickle the configuration only: sessions are per thread and rebuilt on first use."""
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        """Restore a pickled adapter."""
        self.__dict__.update(state)
        self._local = threading.local()


def _timed_out(exc: BaseException) -> bool:
    """Whether *exc* is a read timeout (requests wraps one met mid-stream in ConnectionError)."""
    import requests  # noqa: PLC0415  # already imported by the failed request
    import urllib3.exceptions  # noqa: PLC0415

    if isinstance(exc, (requests.exceptions.Timeout, TimeoutError)):
        return True
    return any(isinstance(arg, urllib3.exceptions.TimeoutError) for arg in exc.args)


def _raise_for_status(response: requests.Response) -> None:
    import requests  # noqa: PLC0415  # already imported by the request

    try:
        body: object = response.json()
    except (ValueError, RecursionError):
        body = response.text
    kind, code, message = error_details(body)
    error = classify_failure(
        _PROVIDER,
        message or (body if isinstance(body, str) and body else response.reason or "error"),
        status_code=response.status_code,
        error_type=kind,
        error_code=code,
        headers=response.headers,
    )
    # Chain requests' own HTTPError, as the SDK adapters chain the SDK's exception.
    raise error from requests.HTTPError(f"HTTP {response.status_code}", response=response)


def _stream_error(line: Mapping[str, object]) -> LLMError:
    _, _, message = error_details(line)
    return classify_failure(_PROVIDER, message or "error", status_code=None)
