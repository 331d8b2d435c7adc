"""http_get over https: the connection goes to the checked address, while TLS still uses the
hostname for SNI and certificate verification (so pinning never weakens TLS)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from aegis_gov import ToolExecutionError, ToolRegistry


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=public.test", "-addext", "subjectAltName=DNS:public.test",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(self_signed: tuple[Path, Path]) -> Iterator[tuple[int, list[str | None]]]:
    """A one-connection TLS server on 127.0.0.1 that records the SNI name it was sent."""
    cert, key = self_signed
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []

    def remember(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = remember
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass  # the client refuses our self-signed certificate, as it must

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, names
    thread.join(timeout=10)
    listener.close()


def test_https_is_pinned_to_the_checked_address_with_sni_and_verification(
    tmp_path: Path, tls_server: tuple[int, list[str | None]]
) -> None:
    port, names = tls_server
    lookups: list[str] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    registry = ToolRegistry(
        root=tmp_path, http_timeout_s=5.0, _resolver=resolve, _trusted_addresses=["127.0.0.1"]
    )
    with pytest.raises(ToolExecutionError, match="SSLError") as info:
        registry.call("http_get", {"url": f"https://public.test:{port}/"})
    assert lookups == ["public.test"]  # resolved once, by us, then connected to that address
    assert names == ["public.test"]  # TLS still named the host: SNI went out as public.test
    assert "public.test" in str(info.value)
