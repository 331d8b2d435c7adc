"""What a new user tripped over: clear type errors, quiet logging, a visible default adapter."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap

import pytest
from aegis_gov import (
    AgentConfig,
    EchoAdapter,
    OllamaAdapter,
    OpenAIAdapter,
    OpenMultiAgent,
    RetryPolicy,
    Task,
    Team,
    ToolRegistry,
    UnknownAgentError,
)


@pytest.fixture
def oma() -> OpenMultiAgent:
    return OpenMultiAgent(default_adapter=EchoAdapter())


def test_a_list_instead_of_a_team_is_a_type_error(oma: OpenMultiAgent) -> None:
    agents = [AgentConfig(name="a")]
    with pytest.raises(TypeError, match=r"team must be a Team \(make one with .*create_team\)"):
        oma.run_tasks([Task("t", agent="a")], agents)  # type: ignore[arg-type]


async def _arun(oma: OpenMultiAgent, team: object) -> None:
    await oma.arun_tasks([Task("t", agent="a")], team)  # type: ignore[arg-type]


def test_async_runs_check_the_team_too(oma: OpenMultiAgent) -> None:
    with pytest.raises(TypeError, match="got str: 'pipeline'"):
        asyncio.run(_arun(oma, "pipeline"))


def test_a_string_instead_of_an_agent_is_a_type_error(oma: OpenMultiAgent) -> None:
    with pytest.raises(TypeError, match="agent must be an AgentConfig, got str: 'writer'"):
        oma.run_agent("writer", "hi")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="task must be a string, got int"):
        oma.run_agent(AgentConfig(name="a"), 3)  # type: ignore[arg-type]


def test_a_string_instead_of_tasks_is_a_type_error(oma: OpenMultiAgent) -> None:
    team = Team("t", [AgentConfig(name="a")])
    with pytest.raises(TypeError, match="tasks must be an iterable of Task, got 'research'"):
        oma.run_tasks("research", team)  # type: ignore[arg-type]


def test_an_empty_team_says_it_has_no_agents(oma: OpenMultiAgent) -> None:
    with pytest.raises(UnknownAgentError) as info:
        oma.run_tasks([Task("t", agent="a")], Team("t", []))
    assert str(info.value) == "task 't' asks for agent 'a', but team 't' has no agents"


def test_the_environment_default_adapter_is_announced_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "AEGIS_MODEL"):
        monkeypatch.delenv(name, raising=False)
    oma = OpenMultiAgent()
    with caplog.at_level(logging.WARNING, logger="aegis_gov"):
        first = oma.default_adapter
        assert oma.default_adapter is first
    assert isinstance(first, OllamaAdapter)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "OllamaAdapter" in message
    assert "neither ANTHROPIC_API_KEY nor OPENAI_API_KEY is set" in message
    assert "default_adapter=" in message


def test_no_package_prints_through_logging_last_resort() -> None:
    # An app that never configured logging: a failed task must not print on stderr.
    code = textwrap.dedent(
        """
        from aegis_gov import *
        failing = ScriptedAdapter([RateLimitError("p", "slow down")])
        oma = OpenMultiAgent(default_adapter=failing, retry=RetryPolicy(max_attempts=1))
        result = oma.run_tasks([Task("x", agent="a")], Team("t", [AgentConfig(name="a")]))
        assert not result.ok
        import logging
        for name in ("aegis_graph", "aegis_breaker", "aegis_adapters", "aegis_gov"):
            handlers = logging.getLogger(name).handlers
            assert any(isinstance(h, logging.NullHandler) for h in handlers), name
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_one_task_instead_of_a_list_is_a_type_error(oma: OpenMultiAgent) -> None:
    team = Team("t", [AgentConfig(name="a")])
    with pytest.raises(TypeError, match="tasks must be an iterable of Task, got Task"):
        oma.run_tasks(Task("t", agent="a"), team)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"allow_private_network": "false"}, TypeError, "allow_private_network must be True"),
        ({"shell_allowlist": "ls"}, TypeError, "not the string 'ls'"),
        ({"http_timeout_s": float("inf")}, ValueError, "http_timeout_s must be finite"),
        ({"max_output_bytes": 1.5}, TypeError, "max_output_bytes must be an int"),
        ({"http_timeout_s": "5"}, TypeError, "http_timeout_s must be a number"),
        ({"memory_max_entries": "3"}, TypeError, "memory_max_entries must be an int"),
    ],
)
def test_tool_registry_settings_of_the_wrong_type_fail_closed(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ToolRegistry(**kwargs)  # type: ignore[arg-type]


def test_constructors_and_runs_name_the_wrong_argument(oma: OpenMultiAgent) -> None:
    with pytest.raises(TypeError, match="pool must be a AgentPool or None, got 5"):
        OpenMultiAgent(pool=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tools must be a ToolRegistry or None"):
        OpenMultiAgent(tools="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="default_adapter must be an adapter"):
        OpenMultiAgent(default_adapter="openai")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="adapter must be an adapter"):
        AgentConfig(name="a", adapter="openai")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_attempts must be an int"):
        RetryPolicy(max_attempts="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="initial_delay_s must be finite"):
        RetryPolicy(initial_delay_s=float("nan"))
    with pytest.raises(TypeError, match="fn"):
        ToolRegistry(builtins=False).define_tool("x", "d", None, {"type": "object"})  # type: ignore[arg-type]
    team = Team("t", [AgentConfig(name="a")])
    tasks = [Task("t", agent="a")]
    with pytest.raises(TypeError, match="on_event must be a callable"):
        oma.run_tasks(tasks, team, on_event=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cancel must be an Event"):
        oma.run_tasks(tasks, team, cancel=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="executor must be an Executor"):
        oma.run_tasks(tasks, team, executor=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="resume must be a RunResult, a ResumePlan or None"):
        oma.run_tasks(tasks, team, resume="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="base_url must be a string, got 5"):
        OpenAIAdapter("m", base_url=5)  # type: ignore[arg-type]
