"""The one-off cost of a first call (importing an SDK) is paid before any task clock starts."""

from __future__ import annotations

import asyncio
import json
from types import ModuleType

import pytest
from aegis_adapters import _sdk
from aegis_gov import AgentConfig, OpenAIAdapter, OpenMultiAgent, Task, TaskState
from pytest_httpserver import HTTPServer


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _answer() -> str:
    return json.dumps(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


@pytest.fixture
def slow_import(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    """Importing an SDK takes 5 s of the facade's clock, as on a loaded machine."""
    clock = _Clock()
    real = _sdk.import_sdk

    def slow(module: str, extra: str, adapter: str) -> ModuleType:
        clock.now += 5.0
        return real(module, extra, adapter)

    monkeypatch.setattr(_sdk, "import_sdk", slow)
    return clock


@pytest.mark.parametrize("how", ["run_tasks", "arun_tasks", "run_agent", "arun_agent"])
def test_a_slow_sdk_import_is_not_counted_in_a_task(
    httpserver: HTTPServer, slow_import: _Clock, how: str
) -> None:
    httpserver.expect_request("/v1/chat/completions").respond_with_data(
        _answer(), content_type="application/json"
    )
    adapter = OpenAIAdapter("m", base_url=httpserver.url_for("/v1"), api_key="sk-test")
    oma = OpenMultiAgent(clock=slow_import)
    agent = AgentConfig(name="a", adapter=adapter)
    team = OpenMultiAgent.create_team("t", agent)
    tasks = [Task("t", agent="a")]
    if how == "run_tasks":
        duration = oma.run_tasks(tasks, team, stream=False)["t"].duration_s
    elif how == "arun_tasks":
        result = asyncio.run(oma.arun_tasks(tasks, team, stream=False))
        assert result["t"].status is TaskState.DONE
        duration = result["t"].duration_s
    elif how == "run_agent":
        duration = oma.run_agent(agent, "hi").duration_s
    else:
        duration = asyncio.run(oma.arun_agent(agent, "hi")).duration_s
    assert slow_import.now >= 5.0  # the import did happen, and was slow
    assert duration == 0.0  # but not inside the task's clock


def test_warm_up_leaves_a_missing_key_for_the_first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    adapter = OpenAIAdapter("m")
    adapter.warm_up()  # does not raise
    oma = OpenMultiAgent()
    result = oma.run_tasks(
        [Task("t", agent="a")],
        OpenMultiAgent.create_team("t", AgentConfig(name="a", adapter=adapter)),
    )
    assert result["t"].status is TaskState.FAILED
    assert "OPENAI_API_KEY" in (result["t"].error or "")
