"""SDK adapters share one SSL context per process and still verify every certificate."""

from __future__ import annotations

import asyncio
import gc
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import trustme
from aegis_adapters import AnthropicAdapter, Message, OpenAIAdapter, ProviderUnavailableError
from pytest_httpserver import HTTPServer

from tests.adapters._support import OPENAI_REPLY as REPLY


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(authority: trustme.CA) -> Iterator[HTTPServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    server = HTTPServer(ssl_context=context)
    server.start()
    server.expect_request("/v1/chat/completions").respond_with_data(
        json.dumps(REPLY), content_type="application/json"
    )
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def ca_file(authority: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return path


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    made: list[object] = []
    create = httpx2.create_ssl_context

    def counted(*args: object, **kwargs: object) -> ssl.SSLContext:
        context = create(*args, **kwargs)  # type: ignore[arg-type]
        made.append(context)
        return context

    monkeypatch.setattr(httpx2, "create_ssl_context", counted)
    return made


def test_clients_share_one_ssl_context(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A CA setting no earlier test used, so the first client below builds the context.
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    made = _counting(monkeypatch)
    adapters = [
        OpenAIAdapter("m", api_key="k", base_url="http://127.0.0.1:9/v1"),
        OpenAIAdapter("n", api_key="k", base_url="https://example.invalid/v1"),
        AnthropicAdapter("m", api_key="k", base_url="http://127.0.0.1:9"),
    ]
    for adapter in adapters:
        adapter.warm_up()
    assert len(made) == 1  # all three clients (both SDKs sit on httpx2) use one context

    async def warm() -> None:
        for adapter in adapters:
            await adapter.awarm_up()

    asyncio.run(warm())
    assert len(made) == 1  # the async clients too


def test_a_changed_ca_setting_builds_a_new_context(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made = _counting(monkeypatch)
    for folder in ("one", "two", "one"):
        (tmp_path / folder).mkdir(exist_ok=True)
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / folder))
        OpenAIAdapter("m", api_key="k", base_url="http://127.0.0.1:9/v1").warm_up()
    assert len(made) == 2  # "one" again reuses its context


def test_certificates_are_still_verified(
    tls_server: HTTPServer, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = tls_server.url_for("/v1")
    assert url.startswith("https://")
    # The server's certificate is signed by a CA this process does not trust: refused.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    stranger = OpenAIAdapter("m", api_key="k", base_url=url)
    with pytest.raises(ProviderUnavailableError):
        stranger.chat([Message.user("hello")])
    assert not tls_server.log  # no request reached the server
    # Trusting that CA (as the SDK's own client would, through SSL_CERT_FILE): answered.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    trusting = OpenAIAdapter("m", api_key="k", base_url=url)
    assert trusting.chat([Message.user("hello")]).text == "hi"

    async def call() -> str:
        return (await trusting.achat([Message.user("hello")])).text

    assert asyncio.run(call()) == "hi"


def test_a_sync_client_is_closed_with_its_adapter() -> None:
    adapter = OpenAIAdapter("m", api_key="k", base_url="http://127.0.0.1:9/v1")
    adapter.warm_up()
    http_client = adapter._client._client
    assert not http_client.is_closed
    del adapter
    gc.collect()
    assert http_client.is_closed


def test_a_ca_bundle_rewritten_in_place_is_read_again(
    tls_server: HTTPServer, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by an adversarial review: the shared context was keyed by the path only, so a
    # CA taken out of the bundle stayed trusted for every adapter built after, until restart.
    url = tls_server.url_for("/v1")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    assert OpenAIAdapter("m", api_key="k", base_url=url).chat([Message.user("hi")]).text == "hi"
    trusted = ca_file.read_bytes()
    trustme.CA().cert_pem.write_to_path(str(ca_file))  # the server's CA is taken out
    with pytest.raises(ProviderUnavailableError):
        OpenAIAdapter("m", api_key="k", base_url=url).chat([Message.user("hi")])
    ca_file.write_bytes(trusted)  # and put back
    assert OpenAIAdapter("m", api_key="k", base_url=url).chat([Message.user("hi")]).text == "hi"


def test_a_certificate_rewritten_in_a_ca_folder_is_read_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Found by an adversarial review: a folder was checked by its own modification time,
    # which rewriting a file in it (under the same name) does not change.
    made = _counting(monkeypatch)
    certificate = tmp_path / "0a1b2c3d.0"
    certificate.write_bytes(trustme.CA().cert_pem.bytes())
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # a file would be read instead
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    OpenAIAdapter("m", api_key="k", base_url="http://127.0.0.1:9/v1").warm_up()
    OpenAIAdapter("m", api_key="k", base_url="http://127.0.0.1:9/v1").warm_up()
    assert len(made) == 1
    certificate.write_bytes(trustme.CA().cert_pem.bytes() + b"\n")
    OpenAIAdapter("m", api_key="k", base_url="http://127.0.0.1:9/v1").warm_up()
    assert len(made) == 2
