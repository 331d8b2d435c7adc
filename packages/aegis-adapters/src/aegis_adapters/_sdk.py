# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The shared machinery of the adapters built on an official SDK (Anthropic, OpenAI).

Each provider supplies request building and response parsing; this module owns the lazy,
thread-safe client creation (one async client per event loop), the translation of every SDK
failure into the aegis taxonomy, and the sync/async drivers written once.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import os
import sys
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from aegis_adapters._base import BaseChatAdapter
from aegis_adapters._errors import (
    AuthenticationError,
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
    TextDelta,
    ToolSpec,
)
from aegis_adapters._wire import as_map, error_details

if TYPE_CHECKING:
    import asyncio

__all__ = ["SDKAdapter", "StreamAccumulator", "import_sdk", "translate"]


def import_sdk(module: str, extra: str, adapter: str) -> ModuleType:
    """Import an optional SDK, or say which extra installs it.

    Raises:
        ImportError: the SDK is not installed; the message gives the pip command.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f'{adapter} needs the {module!r} package: pip install "aegis-adapters[{extra}]"'
        ) from exc


def _transport_errors(sdk: ModuleType) -> tuple[type[BaseException], ...]:
    """Exceptions that mean the connection failed (refused, reset, dropped, timed out)."""
    errors: list[type[BaseException]] = [OSError, TimeoutError]
    connection_error = getattr(sdk, "APIConnectionError", None)
    if isinstance(connection_error, type) and issubclass(connection_error, BaseException):
        errors.append(connection_error)
    for http_module in ("httpx2", "httpx"):
        # The SDKs let the HTTP library's errors escape mid-stream (anthropic 2.x raises a raw
        # httpx2.RemoteProtocolError when the connection drops).
        with contextlib.suppress(ImportError):
            module = importlib.import_module(http_module)
            errors.append(module.HTTPError)
    return tuple(errors)


def translate(  # noqa: PLR0911  # one return per kind of failure
    provider: str,
    exc: Exception,
    transport: tuple[type[BaseException], ...],
    *,
    timeout_s: float | None = None,
) -> LLMError | None:
    """Map an SDK exception to the aegis taxonomy, by status code and error type.

    Returns ``None`` for exceptions that are not provider failures (bugs), so they propagate.
    """
    if isinstance(exc, LLMError):
        return exc
    if type(exc).__name__ == "InvalidURL":  # httpx's, raised building the client
        return unreadable_url_error(provider, exc)
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    if isinstance(status, int) or (body is not None and hasattr(exc, "request")):
        kind, code, message = error_details(body)
        kind = kind or _attr_str(exc, "type")
        code = code or _attr_str(exc, "code")
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        return classify_failure(
            provider,
            message or str(exc),
            status_code=status if isinstance(status, int) else None,
            error_type=kind,
            error_code=code,
            headers=headers if isinstance(headers, Mapping) else None,
        )
    if isinstance(exc, transport):
        if timeout_s is not None and _is_timeout(exc):
            return ProviderUnavailableError(provider, f"timed out after {timeout_s:g} s")
        return ProviderUnavailableError(provider, f"connection failed: {exc!r}")
    if isinstance(exc, ValueError | RecursionError):  # JSON decoding, response validation
        deep = isinstance(exc, RecursionError)  # JSON nested too deeply for the SDK to decode
        return InvalidRequestError(
            provider, f"malformed response: {'nested too deeply to decode' if deep else exc}"
        )
    return None


def _is_timeout(exc: BaseException) -> bool:
    """Whether *exc* is a timeout (the SDKs' APITimeoutError, httpx's, or a socket's)."""
    return isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__


def _attr_str(exc: Exception, name: str) -> str | None:
    value = getattr(exc, name, None)
    return value if isinstance(value, str) else None


class StreamAccumulator(abc.ABC):
    """Sans-I/O parser of one provider's stream events (as JSON dicts)."""

    @abc.abstractmethod
    def feed(self, event: Mapping[str, object]) -> Iterator[TextDelta]:
        """Consume one event, yielding any new text."""

    @abc.abstractmethod
    def finish(self) -> ChatResponse:
        """The final response; raises ProviderUnavailableError if the stream was cut short."""


def _as_dict(provider: str, value: object) -> Mapping[str, object]:
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return as_map(to_dict())
    if isinstance(value, Mapping):
        return as_map(value)
    raise InvalidRequestError(provider, f"malformed response: {str(value)[:200]!r}")


class SDKAdapter(BaseChatAdapter):
    """Base of the SDK-backed adapters: lazy clients, error translation, sync and async drivers.

    Thread-safe: the sync client is created once under a lock and shared (the SDK clients are
    thread-safe); async clients are created per event loop, since an HTTP connection pool belongs
    to the loop that opened it. Picklable: clients are dropped and rebuilt on first use.

    The chat methods take ``output_schema=`` (see :class:`~aegis_adapters.OutputSchema`):
    each provider is asked for that shape its own way, and the reply's text is the JSON answer.
    """

    native_output_schema: bool = True
    """The chat methods take ``output_schema`` (see ``supports_output_schema``)."""

    _provider = ""
    _module = ""
    _extra = ""
    _client_classes: tuple[str, str] = ("", "")  # the SDK's (sync, async) client class names
    _key_variable = ""  # the environment variable the API key comes from by default

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._endpoint = endpoint
        # The endpoint's URL is redacted; this one may hold a secret.
        self._base_url = checked_base_url(base_url)
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.default_headers: dict[str, str] = dict(default_headers or {})
        self._lock = threading.Lock()
        self._client: Any = None
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[Any, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()
        self._transport: tuple[type[BaseException], ...] = ()

    @property
    def endpoint(self) -> Endpoint:
        """The provider, base URL and model this adapter calls."""
        return self._endpoint

    # -- provider-specific parts ------------------------------------------------------------

    def _new_client(self, sdk: ModuleType, *, is_async: bool) -> Any:
        """Build an SDK client with ``max_retries=0``: retrying is the caller's job."""
        factory = getattr(sdk, self._client_classes[is_async])
        kwargs: dict[str, Any] = {}
        http_client = _http_client(sdk, is_async=is_async)
        if http_client is not None:
            kwargs["http_client"] = http_client
            if not is_async:  # an async one is closed with its loop (_close_at_loop_shutdown)
                weakref.finalize(self, _close_quietly, http_client)
        return factory(
            api_key=self._api_key,
            base_url=self._base_url,
            timeout=self.timeout_s,
            max_retries=0,
            default_headers=self.default_headers or None,
            **kwargs,
        )

    @abc.abstractmethod
    def _create(self, client: Any, kwargs: dict[str, Any]) -> Any:
        """Call the SDK's create method (its coroutine for an async client)."""

    @abc.abstractmethod
    def _request(
        self,
        messages: Sequence[Message],
        system: str | None,
        tools: Sequence[ToolSpec],
        *,
        stream: bool,
        output_schema: OutputSchema | None = None,
    ) -> dict[str, Any]:
        """The keyword arguments of the create call."""

    @abc.abstractmethod
    def _parse(
        self, response: Mapping[str, object], output_schema: OutputSchema | None = None
    ) -> ChatResponse:
        """Parse a complete (non-streamed) response."""

    @abc.abstractmethod
    def _accumulator(self, output_schema: OutputSchema | None = None) -> StreamAccumulator:
        """A fresh stream parser."""

    # -- shared machinery -------------------------------------------------------------------

    def _sdk(self) -> ModuleType:
        sdk = import_sdk(self._module, self._extra, type(self).__name__)
        if not self._transport:
            self._transport = _transport_errors(sdk)
        return sdk

    def warm_up(self) -> None:
        """Import the SDK and build the sync client now; any error waits for the first call."""
        with contextlib.suppress(ImportError, LLMError):
            self._sync_client()

    async def awarm_up(self) -> None:
        """Import the SDK (off the loop) and build this loop's client now."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        with contextlib.suppress(ImportError, LLMError):
            await asyncio.to_thread(self._sdk)
            await self._async_client()

    def _check_key(self) -> None:
        if self._api_key is None:
            raise AuthenticationError(
                self._provider,
                f"no API key for {type(self).__name__}: pass api_key= or set "
                f"{self._key_variable or 'the provider API key environment variable'}",
            )

    def _sync_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._check_key()
                self._client = self._new_client(self._sdk(), is_async=False)
            return self._client

    async def _async_client(self) -> Any:
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._aclients.get(loop)
            if entry is not None:
                return entry[0]
            self._check_key()
            client = self._new_client(self._sdk(), is_async=True)
            closer = _close_at_loop_shutdown(client)
            self._aclients[loop] = (client, closer)
        # Starting the generator registers it with the loop, whose shutdown (asyncio.run
        # ends with shutdown_asyncgens) closes the client on its own loop. Otherwise the
        # SDK's __del__ would later try to close its connections on another, running loop.
        await closer.asend(None)
        return client

    @contextlib.contextmanager
    def _translating(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            error = translate(self._provider, exc, self._transport, timeout_s=self.timeout_s)
            if error is None or error is exc:
                raise
            raise error from exc

    def chat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        output_schema: OutputSchema | None = None,
    ) -> ChatResponse:
        """Send the conversation and return the complete reply.

        Raises:
            LLMError: a subclass naming the failure; the SDK's exception is chained.
        """
        kwargs = self._request(messages, system, tools, stream=False, output_schema=output_schema)
        with self._translating():
            raw = self._create(self._sync_client(), kwargs)
            return self._parse(_as_dict(self._provider, raw), output_schema)

    def chat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        output_schema: OutputSchema | None = None,
    ) -> Iterator[TextDelta | ChatResponse]:
        """Stream the reply: text deltas, then one final :class:`ChatResponse`.

        Raises:
            LLMError: from the iterator, including mid-stream failures and cut-short streams.
        """
        kwargs = self._request(messages, system, tools, stream=True, output_schema=output_schema)
        accumulator = self._accumulator(output_schema)
        with self._translating():
            stream = self._create(self._sync_client(), kwargs)
            try:
                for event in stream:
                    yield from accumulator.feed(_as_dict(self._provider, event))
            finally:
                stream.close()
            yield accumulator.finish()

    async def achat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        output_schema: OutputSchema | None = None,
    ) -> ChatResponse:
        """Async twin of :meth:`chat`, on the SDK's async client."""
        kwargs = self._request(messages, system, tools, stream=False, output_schema=output_schema)
        with self._translating():
            raw = await self._create(await self._async_client(), kwargs)
            return self._parse(_as_dict(self._provider, raw), output_schema)

    async def achat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        output_schema: OutputSchema | None = None,
    ) -> AsyncIterator[TextDelta | ChatResponse]:
        """Async twin of :meth:`chat_stream`, on the SDK's async client."""
        kwargs = self._request(messages, system, tools, stream=True, output_schema=output_schema)
        accumulator = self._accumulator(output_schema)
        with self._translating():
            stream = await self._create(await self._async_client(), kwargs)
            try:
                async for event in stream:
                    for delta in accumulator.feed(_as_dict(self._provider, event)):
                        yield delta
            finally:
                await stream.close()
            yield accumulator.finish()

    def __getstate__(self) -> dict[str, object]:
        """Pickle the configuration only: clients and the lock are rebuilt on first use."""
        state = self.__dict__.copy()
        for name in ("_lock", "_client", "_aclients", "_transport"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        """Restore a pickled adapter."""
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._client = None
        self._aclients = weakref.WeakKeyDictionary()
        self._transport = ()


def _http_client(sdk: ModuleType, *, is_async: bool) -> Any:
    """The SDK's default HTTP client, verifying TLS with the process's shared SSL context.

    Loading the trusted certificates costs about 20 ms, and the SDK does it for every client
    it builds: for each adapter (and each event loop of it) at the start of a run. The context
    is built by the SDK's HTTP library's own ``create_ssl_context``, so verification is what
    the SDK's own client would do, and it is shared by the clients built while the CA setting
    stays the same: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` and what the files they (or the
    system's default CA paths) name hold. A CA bundle rewritten or updated in place is read
    again by the next client built. The shared context must not be
    changed through one client. None (the SDK builds its own client) when the SDK does not
    expose the pieces.
    """
    cls = getattr(sdk, "DefaultAsyncHttpxClient" if is_async else "DefaultHttpxClient", None)
    if not isinstance(cls, type):
        return None
    context = _shared_ssl_context(cls)
    return None if context is None else cls(verify=context)


def _shared_ssl_context(client_class: type) -> object | None:
    # The HTTP library is the package of the client class's base (httpx, or the SDKs' fork).
    for base in client_class.__mro__[1:]:
        library = sys.modules.get(base.__module__.partition(".")[0])
        create = getattr(library, "create_ssl_context", None)
        if callable(create):
            break
    else:
        return None
    with _SSL_LOCK:
        cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
        key = (getattr(library, "__name__", ""), cafile, capath)
        stamp = _ca_stamp(cafile, capath)
        found = _SSL_CONTEXTS.get(key)
        if found is None or found[0] != stamp:
            found = _SSL_CONTEXTS[key] = (stamp, create())
    return found[1]


def _ca_stamp(cafile: str | None, capath: str | None) -> tuple[object, ...]:
    """What identifies the CA files a new SSL context would load now.

    A file by its contents' digest (a system bundle of 200 KB takes about 0.2 ms), so a
    bundle rewritten in place within one clock tick still counts as changed; a folder by each
    entry's name, modification time and size, so a certificate added, removed or rewritten
    in it counts too.
    """
    if cafile:
        return (_file_digest(cafile),)
    if capath:
        return (_folder_stamp(capath),)
    import ssl  # noqa: PLC0415  # loaded by the SDK's HTTP library by now, not at import

    defaults = ssl.get_default_verify_paths()
    return (
        _file_digest(defaults.openssl_cafile),
        _folder_stamp(defaults.openssl_capath),
        _file_digest(defaults.cafile),
    )


def _file_digest(path: str | None) -> bytes | None:
    if not path:
        return None
    import hashlib  # noqa: PLC0415  # only when a client is built

    try:
        with open(path, "rb") as file:  # noqa: PTH123  # pathlib is not loaded otherwise
            return hashlib.blake2b(file.read(), digest_size=16).digest()
    except OSError:
        return None


def _folder_stamp(path: str | None) -> tuple[tuple[str, int, int], ...] | None:
    """Each entry's name, modification time and size (a few hundred stat calls, ~1 ms)."""
    if not path:
        return None
    try:
        with os.scandir(path) as entries:
            found = []
            for entry in entries:
                try:
                    info = entry.stat()  # through the symlinks c_rehash makes
                except OSError:
                    continue
                found.append((entry.name, info.st_mtime_ns, info.st_size))
    except OSError:
        return None
    return tuple(sorted(found))


_SSL_LOCK = threading.Lock()
_SSL_CONTEXTS: dict[tuple[str, str | None, str | None], tuple[object, object]] = {}


def _close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):
        client.close()


async def _close_at_loop_shutdown(client: Any) -> AsyncGenerator[None, None]:
    """Suspend until the event loop shuts its async generators down, then close *client*."""
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            await client.close()
