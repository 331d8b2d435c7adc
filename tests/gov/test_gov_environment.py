"""The default adapter comes from the environment, as documented."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aegis_gov import (
    AgentConfig,
    AnthropicAdapter,
    EchoAdapter,
    OllamaAdapter,
    OpenAIAdapter,
    OpenMultiAgent,
    adapter_from_environment,
    endpoint_key,
)


def test_anthropic_key_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-oai")
    adapter = adapter_from_environment()
    assert isinstance(adapter, AnthropicAdapter)
    assert adapter.endpoint.model == AnthropicAdapter.DEFAULT_MODEL


def test_openai_key_without_anthropic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-oai")
    monkeypatch.setenv("AEGIS_MODEL", "gpt-test")
    adapter = adapter_from_environment()
    assert isinstance(adapter, OpenAIAdapter)
    assert adapter.endpoint.model == "gpt-test"


def test_ollama_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:11500")
    adapter = adapter_from_environment()
    assert isinstance(adapter, OllamaAdapter)
    assert adapter.endpoint.base_url.startswith("http://127.0.0.1:11500")
    assert adapter.endpoint.model == OllamaAdapter.DEFAULT_MODEL


def test_the_default_is_chosen_once_at_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    oma = OpenMultiAgent()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-oai")  # read at first use, not at construction
    first = oma.default_adapter
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    assert oma.default_adapter is first
    assert isinstance(first, OpenAIAdapter)


def test_an_agents_own_adapter_beats_the_default() -> None:
    own = EchoAdapter(name="own")
    oma = OpenMultiAgent(default_adapter=EchoAdapter(name="default"))
    assert oma.adapter_for(AgentConfig(name="a", adapter=own)) is own
    assert endpoint_key(own) == "echo|echo://own|own"


def test_a_custom_adapter_gets_its_own_breaker_key() -> None:
    class Plain:
        def generate(self, prompt: str, *, system: str | None = None) -> str:
            return prompt

        def stream(self, prompt: str, *, system: str | None = None) -> Iterator[str]:
            yield prompt

    one, two = Plain(), Plain()
    assert endpoint_key(one) != endpoint_key(two)
    assert endpoint_key(one).startswith("custom:")
    result = OpenMultiAgent(default_adapter=one).run_agent(AgentConfig(name="a"), "hello")
    assert str(result) == "hello"
