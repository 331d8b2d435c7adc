"""``aegis demo`` choosing its provider: the shared factory, OLLAMA_HOST, and what it prints."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aegis_adapters import AnthropicAdapter, OllamaAdapter, OpenAIAdapter
from aegis_gov import _demo
from aegis_gov._demo import detect_provider, ollama_url

ROOT = Path(__file__).parents[2]
SECRETS = ("hunter2", "qsecret")
CREDENTIALED = "http://user:hunter2@127.0.0.1:1/?api_key=qsecret"


@pytest.fixture(scope="module")
def refused_port() -> Iterator[int]:
    """A loopback port with nothing listening: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_ollama_url_is_the_adapters_normalisation() -> None:
    assert ollama_url({}) == "http://localhost:11434"
    assert ollama_url({"OLLAMA_HOST": "10.0.0.2:11434"}) == "http://10.0.0.2:11434"
    assert ollama_url({"OLLAMA_HOST": "https://ollama.example/"}) == "https://ollama.example"


def test_keys_pick_their_provider_with_the_demos_settings() -> None:
    anthropic = detect_provider({"ANTHROPIC_API_KEY": "k"})
    assert not isinstance(anthropic, str)
    assert isinstance(anthropic[0], AnthropicAdapter)
    assert anthropic[0].endpoint.model == "claude-haiku-4-5-20251001"
    openai = detect_provider({"OPENAI_API_KEY": "k", "AEGIS_MODEL": "m"})
    assert not isinstance(openai, str)
    assert isinstance(openai[0], OpenAIAdapter)
    assert openai[0].endpoint.model == "m"


def test_no_ollama_answering_redacts_the_url(refused_port: int) -> None:
    host = f"http://user:hunter2@127.0.0.1:{refused_port}/?api_key=qsecret"
    reason = detect_provider({"OLLAMA_HOST": host})
    assert isinstance(reason, str)
    assert "no Ollama answering at http://***@127.0.0.1" in reason
    assert not any(secret in reason for secret in SECRETS)


def test_no_model_pulled_redacts_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_demo, "probe_ollama", lambda _url: [])
    reason = detect_provider({"OLLAMA_HOST": CREDENTIALED})
    assert isinstance(reason, str)
    assert reason.startswith("Ollama at http://***@127.0.0.1:1/?api_key=*** has no model pulled")
    assert not any(secret in reason for secret in SECRETS)


def test_a_found_ollama_is_described_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_demo, "probe_ollama", lambda _url: ["qwen:7b", "llama3.2:latest"])
    found = detect_provider({"OLLAMA_HOST": CREDENTIALED})
    assert not isinstance(found, str)
    adapter, described = found
    assert isinstance(adapter, OllamaAdapter)
    assert adapter.endpoint.model == "llama3.2:latest"
    assert described == "Ollama (llama3.2:latest) at http://***@127.0.0.1:1/?api_key=***"


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("127.0.0.1:abc", "its port is not a number from 1 to 65535"),
        ("127.0.0.1:99999", "its port is not a number from 1 to 65535"),
        ("http://127.0.0.1:1/\x01", "it holds a control character or a space"),
        ("http://[::1", "it is not a valid URL"),
        ("ftp://127.0.0.1:1", "its scheme is not http or https"),
        ("http://:1", "it names no host"),
    ],
)
def test_an_unusable_ollama_host_is_a_reason_not_a_traceback(host: str, problem: str) -> None:
    reason = detect_provider({"OLLAMA_HOST": host})
    assert isinstance(reason, str)
    assert reason.endswith(f"is not a usable address: {problem}")
    assert reason.isprintable()
    assert _demo.probe_ollama(ollama_url({"OLLAMA_HOST": host})) is None


@pytest.mark.parametrize("host", ["127.0.0.1:abc", "http://127.0.0.1:1/\x01", CREDENTIALED])
def test_aegis_demo_with_a_bad_ollama_host_runs_offline(host: str) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "AEGIS_MODEL"}
    }
    env.update(OLLAMA_HOST=host, PYTHONIOENCODING="utf-8")
    env.pop("TERM", None)
    proc = subprocess.run(
        [sys.executable, "-m", "aegis_gov._cli", "demo", "--plain", "--no-outputs"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("aegis demo: OFFLINE.")
    assert not any(secret in proc.stdout + proc.stderr for secret in SECRETS)
