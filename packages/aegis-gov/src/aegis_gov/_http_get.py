# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The ``http_get`` built-in: one overall deadline, every address checked, the checked one used.

How it is confined, and its known limits as a library that runs in the caller's process:

``http_get`` connects to the address it checked (the URL is rewritten to the address, the
``Host`` header and, for https, the TLS server name and certificate check keep the hostname), so
a DNS answer that changes between check and connect (rebinding) cannot redirect it.
``http_timeout_s`` is one deadline for the whole call (resolving, connecting, the TLS
handshake, headers, body and every redirect): at the deadline every socket of the call is shut
down, so a server dripping bytes inside each per-read timeout cannot hold it. A resolver still
running at the deadline is left to finish in a daemon thread (``getaddrinfo`` has no timeout).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs

from aegis_gov._netguard import IPAddress, blocked_reason, literal_address
from aegis_gov._sandbox import SandboxConfig
from aegis_gov._tool_errors import (
    BlockedAddressError,
    HTTPStatusError,
    OutputTooLargeError,
    ToolExecutionError,
    ToolTimeoutError,
    URLNotAllowedError,
)

if TYPE_CHECKING:
    import requests
    import requests.adapters
    from urllib3.connectionpool import HTTPConnectionPool

__all__ = ["MAX_REDIRECTS", "http_get"]

MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_READ_CHUNK = 16_384


class _Deadline:
    """One deadline for a whole ``http_get`` call: resolving, connecting, headers, body, redirects.

    Per-operation socket timeouts are not a deadline: a server that sends one byte just inside
    each timeout holds a read forever. So each socket the call opens is registered here (as a
    duplicate descriptor this object owns, so closing it can never hit a reused descriptor), and
    when the deadline passes a timer shuts them all down, which wakes any read blocked on them.
    Thread-safe; ``close`` must be called when the call ends.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._at = time.monotonic() + timeout_s
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._closed = False
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True
        self._timer.name = "aegis-http-deadline"
        self._timer.start()

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed (then every registered socket is shut down)."""
        with self._lock:
            return self._expired or time.monotonic() >= self._at

    def remaining_s(self) -> float:
        """Seconds left, never quite zero (a zero socket timeout would mean non-blocking)."""
        return max(self._at - time.monotonic(), 0.001)

    def watch(self, sock: socket.socket) -> None:
        """Shut *sock* down when the deadline passes (at once if it already has)."""
        try:
            duplicate = sock.dup()
        except OSError:  # already closed: nothing left to stop
            return
        with self._lock:
            if self._closed:
                duplicate.close()
                return
            self._sockets.append(duplicate)
            if self._expired:
                _shutdown(duplicate)

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def close(self) -> None:
        """Stop the timer and release the duplicate descriptors."""
        self._timer.cancel()
        with self._lock:
            self._closed = True
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already disconnected
        sock.shutdown(socket.SHUT_RDWR)


def _watched_pools(deadline: _Deadline) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pool classes whose connections register each new socket with *deadline*."""
    import urllib3.connection  # noqa: PLC0415  # lazy, as in _deadline_adapter
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool  # noqa: PLC0415

    class _HTTPConnection(urllib3.connection.HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            deadline.watch(sock)
            return sock

    class _HTTPSConnection(urllib3.connection.HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()  # before TLS: the handshake is covered too
            deadline.watch(sock)
            return sock

    class _HTTPPool(HTTPConnectionPool):
        ConnectionCls = _HTTPConnection

    class _HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = _HTTPSConnection

    return {"http": _HTTPPool, "https": _HTTPSPool}


def _deadline_adapter(
    deadline: _Deadline, tls_hostname: str | None
) -> requests.adapters.HTTPAdapter:
    """An adapter whose sockets obey *deadline* (the class is defined on first use)."""
    return _deadline_adapter_class()(deadline, tls_hostname)


@functools.cache
def _deadline_adapter_class() -> Callable[[_Deadline, str | None], requests.adapters.HTTPAdapter]:
    """The adapter class, defined here so that requests is not imported with the package."""
    import requests.adapters  # noqa: PLC0415

    class _DeadlineAdapter(requests.adapters.HTTPAdapter):
        """An adapter whose sockets obey the call's deadline.

        For https to a pinned address, TLS uses *tls_hostname* for SNI and certificate checks.
        """

        def __init__(self, deadline: _Deadline, tls_hostname: str | None) -> None:
            self._deadline = deadline
            self._tls_hostname = tls_hostname
            super().__init__(max_retries=0)

        def init_poolmanager(
            self,
            connections: int,
            maxsize: int,
            block: bool = False,  # noqa: FBT001, FBT002  # mirrors HTTPAdapter.init_poolmanager
            **pool_kwargs: object,
        ) -> None:
            if self._tls_hostname is not None:
                pool_kwargs["server_hostname"] = self._tls_hostname
                pool_kwargs["assert_hostname"] = self._tls_hostname
            super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
            self.poolmanager.pool_classes_by_scheme = _watched_pools(self._deadline)

    return _DeadlineAdapter


@attrs.frozen
class _Target:
    url: str  # the URL as the model (or the redirect) gave it
    pinned_url: str  # the same URL with the host replaced by the checked address
    host_header: str
    hostname: str
    scheme: str


def _parse_address(host: str, text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError as exc:
        raise ToolExecutionError(
            f"resolver returned a non-address for {host!r}", tool_name="http_get"
        ) from exc


def _resolve(config: SandboxConfig, host: str, port: int, deadline: _Deadline) -> Sequence[str]:
    """Run the resolver, but return (with a timeout) when the deadline passes first.

    ``getaddrinfo`` takes no timeout: it runs in a daemon thread, left to finish on its own.
    """
    outcome: list[Sequence[str] | OSError] = []

    def resolve() -> None:
        try:
            outcome.append(config.resolver(host, port))
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=resolve, name="aegis-http-resolve", daemon=True)
    worker.start()
    worker.join(deadline.remaining_s())
    if not outcome:
        raise _timeout(f"resolving {host!r}", deadline)
    result = outcome[0]
    if isinstance(result, OSError):
        raise ToolExecutionError(f"cannot resolve host {host!r}", tool_name="http_get") from result
    return result


def _timeout(what: str, deadline: _Deadline) -> ToolTimeoutError:
    return ToolTimeoutError(
        f"{what} took longer than the {deadline.timeout_s} s deadline "
        "(which covers resolving, connecting, headers and body)",
        tool_name="http_get",
        timeout_s=deadline.timeout_s,
    )


def _addresses(config: SandboxConfig, host: str, port: int, deadline: _Deadline) -> list[IPAddress]:
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    resolved = _resolve(config, host, port, deadline)
    addresses = [_parse_address(host, text) for text in resolved]
    if not addresses:
        raise ToolExecutionError(f"host {host!r} has no address", tool_name="http_get")
    return addresses


def _check_url(config: SandboxConfig, url: str, deadline: _Deadline) -> _Target:
    tool = "http_get"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise URLNotAllowedError(f"malformed URL {url!r}", tool_name=tool) from exc
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise URLNotAllowedError(
            f"URL scheme {scheme!r} is not allowed (only http and https)", tool_name=tool
        )
    if parts.username is not None or parts.password is not None:
        raise URLNotAllowedError("URLs with credentials are not allowed", tool_name=tool)
    host = (parts.hostname or "").rstrip(".")
    if not host or "%" in host:
        raise URLNotAllowedError(f"URL {url!r} has no usable host", tool_name=tool)
    default_port = 443 if scheme == "https" else 80
    port = port or default_port
    addresses = _addresses(config, host, port, deadline)
    verb = "is" if literal_address(host) is not None else "resolves to"
    # Every address must pass: a name that resolves to one public and one private address is
    # refused, since the connection could land on either.
    for address in addresses:
        if address in config.trusted_addresses:
            continue
        reason = blocked_reason(address, allow_private_network=config.allow_private_network)
        if reason is not None:
            raise BlockedAddressError(
                f"host {host!r} {verb} {address}, {reason}; refused",
                tool_name=tool,
                host=host,
                address=str(address),
            )
    pinned = addresses[0]
    pinned_host = f"[{pinned}]" if pinned.version == 6 else str(pinned)  # noqa: PLR2004
    netloc = pinned_host if port == default_port else f"{pinned_host}:{port}"
    host_header = parts.hostname or host
    if ":" in host_header:
        host_header = f"[{host_header}]"
    if port != default_port:
        host_header = f"{host_header}:{port}"
    pinned_url = urllib.parse.urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    return _Target(
        url=url, pinned_url=pinned_url, host_header=host_header, hostname=host, scheme=scheme
    )


def http_get(config: SandboxConfig, url: str) -> str:
    """GET *url* after checking its host (and each redirect's) against the address policy.

    ``config.http_timeout_s`` is one deadline for the whole call, redirects included.
    """
    deadline = _Deadline(config.http_timeout_s)
    try:
        body = _get(config, url, deadline)
    except ToolExecutionError as exc:
        # A socket shut down at the deadline surfaces as a broken connection or a short read.
        if deadline.expired and not isinstance(exc, ToolTimeoutError):
            raise _timeout(f"GET {url!r}", deadline) from exc
        raise
    finally:
        deadline.close()
    if deadline.expired:  # a body cut short by the deadline may look complete
        raise _timeout(f"GET {url!r}", deadline)
    return body


def _get(config: SandboxConfig, url: str, deadline: _Deadline) -> str:
    import requests  # noqa: PLC0415  # lazy: only a call of the tool needs it

    tool = "http_get"
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        target = _check_url(config, current, deadline)
        pinned_tls = target.scheme == "https" and literal_address(target.hostname) is None
        with requests.Session() as session:
            session.trust_env = False  # no proxies or .netrc from the environment
            session.mount("http://", _deadline_adapter(deadline, None))
            session.mount(
                "https://", _deadline_adapter(deadline, target.hostname if pinned_tls else None)
            )
            remaining = deadline.remaining_s()
            try:
                response = session.get(
                    target.pinned_url,
                    headers={"Host": target.host_header, "User-Agent": "aegis-gov http_get"},
                    allow_redirects=False,
                    stream=True,
                    timeout=(remaining, remaining),
                )
            except requests.Timeout as exc:
                raise _timeout(f"GET {current!r}", deadline) from exc
            except requests.RequestException as exc:
                raise ToolExecutionError(
                    f"GET {current!r} failed: {type(exc).__name__}", tool_name=tool
                ) from exc
            with response:
                location = response.headers.get("Location")
                if response.status_code in _REDIRECT_STATUSES and location:
                    current = urllib.parse.urljoin(current, location)
                    continue
                if not 200 <= response.status_code < 300:  # noqa: PLR2004
                    raise HTTPStatusError(
                        f"GET {current!r} returned HTTP {response.status_code}",
                        tool_name=tool,
                        status_code=response.status_code,
                    )
                body = _read_capped(config, response, current, deadline)
                return body.decode(response.encoding or "utf-8", errors="replace")
    raise ToolExecutionError(
        f"GET {url!r} was redirected more than {MAX_REDIRECTS} times", tool_name=tool
    )


def _read_capped(
    config: SandboxConfig, response: requests.Response, url: str, deadline: _Deadline
) -> bytes:
    import requests  # noqa: PLC0415  # already imported by _get

    tool = "http_get"
    cap = config.max_output_bytes
    too_large = OutputTooLargeError(
        f"response from {url!r} is over the {cap}-byte cap", tool_name=tool, limit_bytes=cap
    )
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_large
    body = bytearray()
    try:
        for chunk in response.iter_content(_READ_CHUNK):
            body += chunk
            if len(body) > cap:
                raise too_large
            if deadline.expired:
                raise _timeout(f"GET {url!r}", deadline)
    except requests.Timeout as exc:
        raise _timeout(f"GET {url!r}", deadline) from exc
    except requests.RequestException as exc:
        raise ToolExecutionError(
            f"reading {url!r} failed: {type(exc).__name__}", tool_name=tool
        ) from exc
    return bytes(body)
