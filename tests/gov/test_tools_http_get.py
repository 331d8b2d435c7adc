"""http_get attack suite: SSRF to loopback, private and metadata addresses, encodings, redirects.

Nothing leaves the machine: names resolve through an injected fake resolver, and the only server
is a pytest-httpserver on loopback. To test the redirect re-check, the fake public name
``public.test`` resolves to the server's loopback address, which the test trusts explicitly
(``_trusted_addresses``) while every other address is judged by the real policy.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from aegis_gov import (
    BlockedAddressError,
    HTTPStatusError,
    OutputTooLargeError,
    ToolExecutionError,
    ToolRegistry,
    ToolTimeoutError,
    URLNotAllowedError,
)
from aegis_gov._netguard import blocked_reason, literal_address, parse_numeric_ipv4
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

BODY_SECRET = "INTERNAL-ONLY-BODY"


class FakeResolver:
    """Resolve names from a table, recording every lookup; unknown names fail like DNS."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


@pytest.fixture
def resolver() -> FakeResolver:
    return FakeResolver(
        {
            "public.test": ["127.0.0.1"],
            "metadata.test": ["169.254.169.254"],
            "private.test": ["10.0.0.7"],
            "mixed.test": ["93.184.216.34", "192.168.1.1"],
            "v6loop.test": ["::1"],
            "mapped.test": ["::ffff:127.0.0.2"],
            "global.test": ["93.184.216.34"],
        }
    )


@pytest.fixture
def registry(tmp_path: Path, resolver: FakeResolver) -> ToolRegistry:
    return ToolRegistry(
        root=tmp_path,
        max_output_bytes=1000,
        http_timeout_s=2.0,
        _resolver=resolver,
        _trusted_addresses=["127.0.0.1"],
    )


def get(registry: ToolRegistry, url: str) -> str:
    return registry.call("http_get", {"url": url})


def public_url(httpserver: HTTPServer, path: str) -> str:
    return f"http://public.test:{httpserver.port}{path}"


# ----------------------------------------------------------------- the happy path and pinning


def test_fetches_through_the_checked_address_with_the_host_header(
    registry: ToolRegistry, resolver: FakeResolver, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(
        "/page", query_string="q=1", headers={"Host": f"public.test:{httpserver.port}"}
    ).respond_with_data("hello")
    assert get(registry, public_url(httpserver, "/page?q=1#frag")) == "hello"
    # Resolved once, then connected to that address: a second answer cannot be used (rebinding).
    assert resolver.lookups == [("public.test", httpserver.port)]


def test_allow_private_network_reaches_loopback(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data("local")
    registry = ToolRegistry(root=tmp_path, allow_private_network=True)
    assert get(registry, f"http://127.0.0.1:{httpserver.port}/") == "local"


def test_loopback_is_refused_by_default(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/").respond_with_data(BODY_SECRET)
    registry = ToolRegistry(root=tmp_path)
    with pytest.raises(BlockedAddressError, match="loopback"):
        get(registry, f"http://127.0.0.1:{httpserver.port}/")
    assert httpserver.log == []


# ----------------------------------------------------------------- direct SSRF attempts


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://0x7f.1/", "127.0.0.1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://017700000001/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://0/", "0.0.0.0"),
        ("http://0.0.0.0/", "0.0.0.0"),
        ("http://[::1]/", "::1"),
        ("http://[::]/", "::"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1"),
        ("http://[::ffff:7f00:1]/", "::ffff:7f00:1"),
        ("http://[2002:7f00:1::]/", "2002:7f00:1::"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://2852039166/", "169.254.169.254"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254"),
        ("http://100.100.100.200/", "100.100.100.200"),
        ("http://168.63.129.16/", "168.63.129.16"),
        ("http://10.1.2.3/", "10.1.2.3"),
        ("http://172.16.0.1/", "172.16.0.1"),
        ("http://192.168.0.1/", "192.168.0.1"),
        ("http://100.64.0.1/", "100.64.0.1"),
        ("http://224.0.0.1/", "224.0.0.1"),
        ("http://[ff02::1]/", "ff02::1"),
        ("http://[fe80::1]/", "fe80::1"),
        ("http://[fc00::1]/", "fc00::1"),
        ("http://240.0.0.1/", "240.0.0.1"),
        ("http://255.255.255.255/", "255.255.255.255"),
        ("https://127.0.0.1:8443/", "127.0.0.1"),
        ("HTTP://127.0.0.1/", "127.0.0.1"),
        ("http://metadata.test/", "169.254.169.254"),
        ("http://private.test/", "10.0.0.7"),
        ("http://mixed.test/", "192.168.1.1"),
        ("http://v6loop.test/", "::1"),
        ("http://mapped.test/", "::ffff:7f00:2"),
        ("http://metadata.test./", "169.254.169.254"),
    ],
)
def test_blocked_addresses_are_refused(
    tmp_path: Path, resolver: FakeResolver, url: str, address: str
) -> None:
    registry = ToolRegistry(root=tmp_path, _resolver=resolver)
    with pytest.raises(BlockedAddressError) as info:
        get(registry, url)
    assert info.value.address == address
    assert info.value.tool_name == "http_get"


def test_credentials_in_urls_are_refused(registry: ToolRegistry) -> None:
    for url in ("http://user:pw@global.test/", "http://global.test@127.0.0.1/"):
        with pytest.raises(URLNotAllowedError, match="credentials"):
            get(registry, url)


def test_metadata_stays_blocked_with_allow_private_network(
    tmp_path: Path, resolver: FakeResolver
) -> None:
    registry = ToolRegistry(root=tmp_path, allow_private_network=True, _resolver=resolver)
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://metadata.test/"):
        with pytest.raises(BlockedAddressError, match="metadata"):
            get(registry, url)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://global.test/",
        "gopher://global.test/",
        "dict://global.test:11211/",
        "javascript:alert(1)",
        "//global.test/",
        "http://",
        "http:///path",
        "http://[fe80::1%25eth0]/",
        "http://global.test:99999/",
    ],
)
def test_unsupported_or_malformed_urls_are_refused(registry: ToolRegistry, url: str) -> None:
    with pytest.raises(URLNotAllowedError):
        get(registry, url)


def test_unresolvable_host_is_an_execution_error(registry: ToolRegistry) -> None:
    with pytest.raises(ToolExecutionError, match="cannot resolve") as info:
        get(registry, "http://nowhere.test/")
    assert isinstance(info.value.__cause__, OSError)


# ----------------------------------------------------------------- redirects are re-checked


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.test/",
        "http://private.test/admin",
        "http://[::1]/",
        "http://2130706434/",
        "http://0x7f.0.0.2/",
        "http://[::ffff:127.0.0.2]/",
        "http://mapped.test/",
    ],
)
def test_redirect_to_a_blocked_address_is_refused(
    registry: ToolRegistry, httpserver: HTTPServer, location: str
) -> None:
    httpserver.expect_request("/start").respond_with_data(
        "", status=302, headers={"Location": location}
    )
    with pytest.raises(BlockedAddressError):
        get(registry, public_url(httpserver, "/start"))
    assert len(httpserver.log) == 1  # only the first hop was fetched


def test_redirect_scheme_change_is_refused(registry: ToolRegistry, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/start").respond_with_data(
        "", status=301, headers={"Location": "file:///etc/passwd"}
    )
    with pytest.raises(URLNotAllowedError):
        get(registry, public_url(httpserver, "/start"))


def test_allowed_redirects_are_followed(registry: ToolRegistry, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/a").respond_with_data("", status=301, headers={"Location": "/b"})
    httpserver.expect_request("/b").respond_with_data(
        "", status=307, headers={"Location": public_url(httpserver, "/c")}
    )
    httpserver.expect_request("/c").respond_with_data("arrived")
    assert get(registry, public_url(httpserver, "/a")) == "arrived"


def test_too_many_redirects(registry: ToolRegistry, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/loop").respond_with_data(
        "", status=302, headers={"Location": "/loop"}
    )
    with pytest.raises(ToolExecutionError, match="more than 5"):
        get(registry, public_url(httpserver, "/loop"))
    assert len(httpserver.log) == 6


# ----------------------------------------------------------------- size, status and time limits


def test_oversized_body_is_refused_without_content(
    registry: ToolRegistry, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/big").respond_with_data(BODY_SECRET * 200)
    with pytest.raises(OutputTooLargeError) as info:
        get(registry, public_url(httpserver, "/big"))
    assert BODY_SECRET not in str(info.value)


def test_oversized_chunked_body_stops_reading(
    registry: ToolRegistry, httpserver: HTTPServer
) -> None:
    sent: list[int] = []

    def endless() -> Iterator[bytes]:
        for index in range(10_000):
            sent.append(index)
            yield BODY_SECRET.encode() * 10

    def handler(request: Request) -> Response:
        return Response(endless())  # no Content-Length: streamed

    httpserver.expect_request("/stream").respond_with_handler(handler)
    with pytest.raises(OutputTooLargeError) as info:
        get(registry, public_url(httpserver, "/stream"))
    assert BODY_SECRET not in str(info.value)
    assert len(sent) < 10_000


def test_non_2xx_is_an_execution_error_without_the_body(
    registry: ToolRegistry, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/missing").respond_with_data(BODY_SECRET, status=404)
    with pytest.raises(HTTPStatusError) as info:
        get(registry, public_url(httpserver, "/missing"))
    assert info.value.status_code == 404
    assert BODY_SECRET not in str(info.value)


def test_a_stalled_server_times_out(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepted by the kernel, never answered
    port = listener.getsockname()[1]
    try:
        registry = ToolRegistry(root=tmp_path, allow_private_network=True, http_timeout_s=0.2)
        with pytest.raises(ToolTimeoutError) as info:
            get(registry, f"http://127.0.0.1:{port}/")
        assert info.value.timeout_s == 0.2
    finally:
        listener.close()


def test_refused_connection_is_an_execution_error(tmp_path: Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    registry = ToolRegistry(root=tmp_path, allow_private_network=True)
    with pytest.raises(ToolExecutionError, match="ConnectionError"):
        get(registry, f"http://127.0.0.1:{port}/")


# ----------------------------------------------------------------- the address policy itself


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("8.8.8.8", "8.8.8.8"),
        ("example.com", None),
        ("1.2.3.4.5", None),
        ("256.1.1.1", None),
        ("4294967296", None),
        ("09.1.1.1", None),
        ("1e3", None),
    ],
)
def test_numeric_host_forms(host: str, expected: str | None) -> None:
    parsed = parse_numeric_ipv4(host)
    assert (None if parsed is None else str(parsed)) == expected


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_global_addresses_are_allowed(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address), allow_private_network=False) is None


def test_literal_address_parses_ipv6_and_numeric_forms() -> None:
    assert literal_address("::1") == ipaddress.ip_address("::1")
    assert literal_address("0x7f.1") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("public.test") is None


@pytest.mark.parametrize(
    "address",
    [
        "fd20:ce::254",  # GCP metadata over IPv6
        "64:ff9b::a9fe:a9fe",  # 169.254.169.254 through NAT64
        "64:ff9b:1::a9fe:a9fe",  # the local-use NAT64 prefix
        "::a9fe:a9fe",  # the same, IPv4-compatible form
        "::ffff:a9fe:a9fe",  # IPv4-mapped
    ],
)
def test_metadata_addresses_in_any_ipv6_dress_stay_blocked_even_on_private_networks(
    address: str,
) -> None:
    ip = ipaddress.ip_address(address)
    assert blocked_reason(ip, allow_private_network=True) == "a cloud metadata endpoint"


def test_deprecated_site_local_ipv6_is_not_public() -> None:
    assert blocked_reason(ipaddress.ip_address("fec0::1"), allow_private_network=False) == (
        "a site-local address"
    )
