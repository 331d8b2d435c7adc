"""http_get's timeout is one deadline for the whole call, not a per-read timeout.

A raw-socket server on loopback answers slowly in the ways that defeat per-operation timeouts:
one byte at a time, each well inside the timeout, through the status line, the headers, the
body, a TLS handshake or a chain of redirects. Every call must fail with ``ToolTimeoutError``
soon after ``http_timeout_s``. The bound is loose (the machine may be loaded); what it rules out
is the old behaviour, where such a server held a 2 s call for 88 s.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from aegis_gov import ToolRegistry, ToolTimeoutError

TIMEOUT_S = 0.5
BOUND_S = 3.0  # far below what the drips below would take: 40 bytes x 0.25 s = 10 s
DRIP_S = 0.25
DRIP_BYTES = 40

Handler = Callable[[socket.socket, threading.Event], None]


def _drip(conn: socket.socket, data: bytes, stop: threading.Event) -> None:
    for byte in data:
        if stop.wait(DRIP_S):
            return
        conn.sendall(bytes([byte]))


def _read_request(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = conn.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def drip_status(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    _drip(conn, b"HTTP/1.1 200 OK" + b" " * DRIP_BYTES, stop)


def drip_headers(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
    _drip(conn, b"X-Slow: " + b"a" * DRIP_BYTES + b"\r\n\r\nok", stop)


def drip_body(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % DRIP_BYTES)
    _drip(conn, b"b" * DRIP_BYTES, stop)


def drip_body_until_close(conn: socket.socket, stop: threading.Event) -> None:
    """No length: the body ends when the connection does, so a cut body looks complete."""
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    _drip(conn, b"b" * DRIP_BYTES, stop)


def drip_tls_handshake(conn: socket.socket, stop: threading.Event) -> None:
    conn.settimeout(5)
    conn.recv(4096)  # the ClientHello
    # A handshake record header announcing 16 KiB, then its body one byte at a time.
    _drip(conn, b"\x16\x03\x03\x40\x00" + b"\x02" * DRIP_BYTES, stop)


def slow_redirects(conn: socket.socket, stop: threading.Event) -> None:
    """Each hop answers promptly enough for a per-hop timeout, but the chain does not."""
    _read_request(conn)
    if not stop.wait(TIMEOUT_S * 0.6):
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n")


class Server:
    """A loopback TCP server running *handler* on every connection, each in its own thread."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # OSError: the client gave up, as it should
            self.handler(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self.acceptor.join(timeout=5)
        for thread in self.threads:
            thread.join(timeout=5)
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], Server]]:
    servers: list[Server] = []

    def start(handler: Handler) -> Server:
        servers.append(Server(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def registry(tmp_path: Path, **options: object) -> ToolRegistry:
    return ToolRegistry(
        root=tmp_path,
        allow_private_network=True,
        http_timeout_s=TIMEOUT_S,
        **options,  # type: ignore[arg-type]
    )


def assert_times_out(registry: ToolRegistry, url: str) -> None:
    started = time.monotonic()
    with pytest.raises(ToolTimeoutError) as info:
        registry.call("http_get", {"url": url})
    elapsed = time.monotonic() - started
    assert elapsed < BOUND_S, f"the call took {elapsed:.1f} s with a {TIMEOUT_S} s deadline"
    assert info.value.timeout_s == TIMEOUT_S
    assert "deadline" in str(info.value)


@pytest.mark.parametrize(
    "handler", [drip_status, drip_headers, drip_body, drip_body_until_close, slow_redirects]
)
def test_a_dripping_server_cannot_hold_the_call_past_the_deadline(
    tmp_path: Path, serve: Callable[[Handler], Server], handler: Handler
) -> None:
    server = serve(handler)
    assert_times_out(registry(tmp_path), f"http://127.0.0.1:{server.port}/")


def test_a_dripped_tls_handshake_is_covered(
    tmp_path: Path, serve: Callable[[Handler], Server]
) -> None:
    server = serve(drip_tls_handshake)
    assert_times_out(registry(tmp_path), f"https://127.0.0.1:{server.port}/")


def test_a_dripped_tls_handshake_to_a_pinned_name_is_covered(
    tmp_path: Path, serve: Callable[[Handler], Server]
) -> None:
    server = serve(drip_tls_handshake)

    def resolve(host: str, port: int) -> Sequence[str]:
        return ["127.0.0.1"]

    pinned = registry(tmp_path, _resolver=resolve)
    assert_times_out(pinned, f"https://public.test:{server.port}/")


def test_a_hanging_resolver_is_covered(tmp_path: Path) -> None:
    release = threading.Event()

    def hang(host: str, port: int) -> Sequence[str]:
        release.wait(30)
        return ["127.0.0.1"]

    try:
        assert_times_out(registry(tmp_path, _resolver=hang), "http://slow-dns.test/")
    finally:
        release.set()


def test_a_prompt_answer_is_unaffected_and_leaves_no_timer(
    tmp_path: Path, serve: Callable[[Handler], Server]
) -> None:
    def prompt(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    server = serve(prompt)
    tools = ToolRegistry(root=tmp_path, allow_private_network=True, http_timeout_s=30)
    assert tools.call("http_get", {"url": f"http://127.0.0.1:{server.port}/"}) == "hello"
    timers = [t for t in threading.enumerate() if t.name == "aegis-http-deadline"]
    for timer in timers:
        timer.join(timeout=5)
    assert not any(t.is_alive() for t in timers)


def test_sockets_registered_late_or_closed_are_handled() -> None:
    from aegis_gov._http_get import _Deadline  # noqa: PLC0415  # private, tested directly

    closed = socket.socket()
    closed.close()
    left, right = socket.socketpair()
    other, peer = socket.socketpair()
    with left, right, other, peer:
        deadline = _Deadline(0.01)
        deadline.watch(closed)  # nothing to stop
        while not deadline.expired:
            time.sleep(0.01)
        time.sleep(0.05)  # the timer has run
        deadline.watch(left)  # after the deadline: shut down at once
        assert left.recv(1) == b""
        deadline.close()
        deadline.watch(other)  # after close: neither kept nor shut down
        peer.sendall(b"x")
        assert other.recv(1) == b"x"
