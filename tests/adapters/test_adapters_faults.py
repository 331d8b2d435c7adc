"""The fault matrix: every adapter, every mode, every failure, each mapped to its error class."""

from __future__ import annotations

import email.utils
import json
import socket
import threading
import time

import pytest
from aegis_adapters import (
    AuthenticationError,
    InvalidRequestError,
    LLMError,
    ModelNotFoundError,
    PermanentError,
    ProviderUnavailableError,
    QuotaExceededError,
    RateLimitError,
    RetryableError,
)
from pytest_httpserver import HTTPServer

from tests.adapters._support import MODES, OPENAI, STREAM_MODES, WIRES, Mode, Wire, refused_url, run
from tests.adapters.conftest import RawFactory

pytestmark = pytest.mark.timeout(20)

_IN_30_S = "<an HTTP date 30 s from now>"  # filled in when the test runs

# id, status, provider error type, headers, expected class, expected retry_after_s
STATUS_FAULTS: list[tuple[str, int, str, dict[str, str], type[LLMError], float | None]] = [
    ("429-seconds", 429, "rate_limit_error", {"retry-after": "7"}, RateLimitError, 7.0),
    (
        "429-ms",
        429,
        "rate_limit_error",
        {"retry-after-ms": "1500", "retry-after": "9"},
        RateLimitError,
        1.5,
    ),
    ("429-http-date", 429, "rate_limit_error", {"retry-after": _IN_30_S}, RateLimitError, 30.0),
    ("429-no-header", 429, "rate_limit_error", {}, RateLimitError, None),
    ("500", 500, "api_error", {}, ProviderUnavailableError, None),
    ("503", 503, "api_error", {"retry-after": "3"}, ProviderUnavailableError, 3.0),
    ("529-overloaded", 529, "overloaded_error", {}, ProviderUnavailableError, None),
    ("400", 400, "invalid_request_error", {}, InvalidRequestError, None),
    ("401", 401, "authentication_error", {}, AuthenticationError, None),
    ("403", 403, "permission_error", {}, AuthenticationError, None),
    ("404", 404, "not_found_error", {}, ModelNotFoundError, None),
    ("422", 422, "invalid_request_error", {}, InvalidRequestError, None),
]


def _adapter(wire: Wire, url: str) -> object:
    return wire.make(url, timeout_s=0.5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
@pytest.mark.parametrize(
    ("status", "kind", "headers", "expected", "retry_after"),
    [fault[1:] for fault in STATUS_FAULTS],
    ids=[fault[0] for fault in STATUS_FAULTS],
)
def test_http_error_status_maps_to_its_class(  # noqa: PLR0917  # pytest passes parameters by name
    httpserver: HTTPServer,
    wire: Wire,
    mode: Mode,
    status: int,
    kind: str,
    headers: dict[str, str],
    expected: type[LLMError],
    retry_after: float | None,
) -> None:
    message = f"boom {status}"
    if headers.get("retry-after") == _IN_30_S:
        headers = {"retry-after": email.utils.formatdate(time.time() + 30, usegmt=True)}
    httpserver.expect_request(wire.path).respond_with_json(
        wire.error_body(kind, message), status=status, headers=headers
    )
    adapter = wire.make(httpserver.url_for("").rstrip("/"))

    with pytest.raises(expected) as caught:
        run(adapter, mode)

    error = caught.value
    assert type(error) is expected
    assert error.provider == wire.name
    assert error.status_code == status
    assert message in error.provider_message
    assert error.__cause__ is not None  # the original exception is chained
    assert len(httpserver.log) == 1  # max_retries=0: exactly one request
    if isinstance(error, RetryableError):
        if retry_after is None:
            assert error.retry_after_s is None
        else:
            assert error.retry_after_s == pytest.approx(retry_after, abs=2.0)
    else:
        assert retry_after is None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_non_json_5xx_is_unavailable(httpserver: HTTPServer, wire: Wire, mode: Mode) -> None:
    httpserver.expect_request(wire.path).respond_with_data(
        "<html>Bad Gateway</html>", status=502, content_type="text/html"
    )
    with pytest.raises(ProviderUnavailableError) as caught:
        run(wire.make(httpserver.url_for("").rstrip("/")), mode)
    assert caught.value.status_code == 502


@pytest.mark.parametrize("mode", MODES)
def test_openai_insufficient_quota_is_permanent(httpserver: HTTPServer, mode: Mode) -> None:
    httpserver.expect_request(OPENAI.path).respond_with_json(
        OPENAI.error_body("insufficient_quota", "You exceeded your current quota"), status=429
    )
    with pytest.raises(QuotaExceededError) as caught:
        run(OPENAI.make(httpserver.url_for("").rstrip("/")), mode)
    assert isinstance(caught.value, PermanentError)
    assert caught.value.status_code == 429
    assert "quota" in caught.value.provider_message


def _serve_stream(httpserver: HTTPServer, wire: Wire, body: str) -> None:
    httpserver.expect_request(wire.path).respond_with_data(body, content_type=wire.stream_type)


@pytest.mark.parametrize("mode", STREAM_MODES)
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_error_inside_a_200_stream_is_unavailable(
    httpserver: HTTPServer, wire: Wire, mode: Mode
) -> None:
    _serve_stream(httpserver, wire, wire.stream_error)
    with pytest.raises(ProviderUnavailableError) as caught:
        run(wire.make(httpserver.url_for("").rstrip("/")), mode)
    assert caught.value.status_code is None
    assert caught.value.provider_message


@pytest.mark.parametrize("mode", STREAM_MODES)
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_stream_ending_without_its_final_event_is_unavailable(
    httpserver: HTTPServer, wire: Wire, mode: Mode
) -> None:
    _serve_stream(httpserver, wire, wire.stream_incomplete)
    deltas: list[str] = []
    with pytest.raises(ProviderUnavailableError, match="ended without"):
        run(wire.make(httpserver.url_for("").rstrip("/")), mode, deltas=deltas)
    assert deltas == ["Hello", " world"]  # the text arrived before the failure surfaced


@pytest.mark.parametrize("mode", STREAM_MODES)
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_malformed_json_in_a_stream_is_invalid(
    httpserver: HTTPServer, wire: Wire, mode: Mode
) -> None:
    _serve_stream(httpserver, wire, wire.stream_malformed)
    with pytest.raises(InvalidRequestError, match="malformed"):
        run(wire.make(httpserver.url_for("").rstrip("/")), mode)


@pytest.mark.parametrize("body", ["{not json", '{"unexpected": true}', "[]"])
@pytest.mark.parametrize("mode", ["chat", "achat"])
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_malformed_response_is_invalid(
    httpserver: HTTPServer, wire: Wire, mode: Mode, body: str
) -> None:
    httpserver.expect_request(wire.path).respond_with_data(body, content_type="application/json")
    with pytest.raises(InvalidRequestError, match="malformed") as caught:
        run(wire.make(httpserver.url_for("").rstrip("/")), mode)
    assert caught.value.__cause__ is not None or body != "{not json"


def _drop(wire: Wire, *, stream: bool) -> object:
    def respond(conn: socket.socket, release: threading.Event) -> None:
        if stream:
            chunk = wire.stream_prefix.encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: " + wire.stream_type.encode()
                + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
                + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            )  # fmt: skip
        else:
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 4000\r\n\r\n" + json.dumps(wire.reply).encode()[:40]
            )

    return respond


def _stall(wire: Wire, *, stream: bool) -> object:
    def respond(conn: socket.socket, release: threading.Event) -> None:
        if stream:
            chunk = wire.stream_prefix.encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: " + wire.stream_type.encode()
                + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
                + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            )  # fmt: skip
        release.wait()  # held until teardown: the client must time out on its own

    return respond


@pytest.mark.parametrize("fault", ["dropped", "stalled"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_dropped_or_stalled_connection_is_unavailable(
    raw_server: RawFactory, wire: Wire, mode: Mode, fault: str
) -> None:
    stream = mode in STREAM_MODES
    respond = (_drop if fault == "dropped" else _stall)(wire, stream=stream)
    server = raw_server(respond)  # type: ignore[arg-type]
    deltas: list[str] = []
    started = time.monotonic()

    with pytest.raises(ProviderUnavailableError) as caught:
        run(wire.make(server.url, timeout_s=0.5), mode, deltas=deltas)

    assert caught.value.provider == wire.name
    assert caught.value.__cause__ is not None
    assert time.monotonic() - started < 10
    if stream:
        assert deltas[:1] == ["Hello"]  # the failure surfaced from the iterator, mid-stream
    if fault == "stalled":
        # A read timeout says so, with the limit, rather than "connection failed".
        assert "timed out after 0.5 s" in caught.value.provider_message


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_refused_port_is_unavailable(wire: Wire, mode: Mode) -> None:
    with pytest.raises(ProviderUnavailableError) as caught:
        run(wire.make(refused_url(), timeout_s=2.0), mode)
    assert caught.value.status_code is None
    assert "connection" in caught.value.provider_message.lower()


@pytest.mark.parametrize("mode", ["chat", "achat"])
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_json_nested_too_deeply_is_malformed_not_a_recursion_error(
    httpserver: HTTPServer, wire: Wire, mode: Mode
) -> None:
    # Found by an adversarial review: a bare RecursionError, outside the error taxonomy.
    body = '{"choices": ' + "[" * 100_000 + "]" * 100_000 + "}"
    httpserver.expect_request(wire.path).respond_with_data(body, content_type="application/json")
    with pytest.raises(InvalidRequestError, match="malformed"):
        run(wire.make(httpserver.url_for("").rstrip("/")), mode)


@pytest.mark.parametrize("mode", ["chat", "achat"])
def test_openai_html_page_for_a_reply_is_malformed_and_quoted(
    httpserver: HTTPServer, mode: Mode
) -> None:
    # A proxy's error page, sent with status 200: the message shows how it starts.
    page = "<html><head><title>502 Bad Gateway</title></head></html>"
    httpserver.expect_request(OPENAI.path).respond_with_data(page, content_type="text/html")
    with pytest.raises(InvalidRequestError, match=r"malformed.*502 Bad Gateway"):
        run(OPENAI.make(httpserver.url_for("").rstrip("/")), mode)
