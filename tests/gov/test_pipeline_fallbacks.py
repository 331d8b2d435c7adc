"""Pipeline files: fallback providers per agent, and the explicit root of the file tools."""

from __future__ import annotations

from pathlib import Path

import pytest
from aegis_adapters import EchoAdapter, OpenAIAdapter, ScriptedAdapter
from aegis_gov import RunResult, TaskState
from aegis_gov._cli import main
from aegis_gov._pipeline import PipelineError, load_pipeline, parse_pipeline

EXAMPLES = Path(__file__).parents[2] / "examples"

FALLING_BACK = """
[retry]
max_attempts = 2
initial_delay_s = 0.001
max_delay_s = 0.01

[[agents]]
name = "writer"
provider = "scripted"
replies = [{ error = "unavailable" }, { error = "unavailable" }]
fallbacks = [{ provider = "scripted", replies = ["from the fallback"] }]

[[tasks]]
id = "draft"
description = "Write a draft"
"""


def error_of(text: str) -> PipelineError:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text, path="p.toml")
    return info.value


def test_fallbacks_become_the_agents_fallback_adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKUP_KEY", "k")
    openai_fallback = (
        '{ provider = "openai", model = "gpt-4o-mini", base_url = "http://127.0.0.1:9/v1", '
        'api_key_env = "BACKUP_KEY", timeout_s = 5 }'
    )
    pipeline = parse_pipeline(
        f"""
        [[agents]]
        name = "a"
        provider = "echo"
        fall_back_on_permanent_errors = true
        fallbacks = [
            {openai_fallback},
            {{ provider = "echo" }},
            {{ provider = "scripted", model = "spare", replies = ["ok"] }},
        ]
        [[tasks]]
        id = "t"
        """
    )
    agent = pipeline.team()["a"]
    assert agent.fall_back_on_permanent_errors is True
    openai, echo, scripted = agent.fallbacks
    assert isinstance(openai, OpenAIAdapter)
    assert openai.endpoint.model == "gpt-4o-mini"
    assert openai.endpoint.base_url == "http://127.0.0.1:9/v1"
    assert isinstance(echo, EchoAdapter)
    assert isinstance(scripted, ScriptedAdapter)
    # Offline fallbacks never share the agent's own endpoint, hence its breaker.
    assert isinstance(agent.adapter, EchoAdapter)
    assert len({agent.adapter.endpoint.key, echo.endpoint.key, scripted.endpoint.key}) == 3


def test_no_fallbacks_by_default() -> None:
    agent = parse_pipeline('[[agents]]\nname = "a"\nprovider = "echo"\n[[tasks]]\nid = "t"').team()
    assert agent["a"].fallbacks == ()
    assert agent["a"].fall_back_on_permanent_errors is False


def test_an_unset_fallback_key_names_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_KEY", raising=False)
    pipeline = parse_pipeline(
        FALLING_BACK.replace(
            'fallbacks = [{ provider = "scripted", replies = ["from the fallback"] }]',
            'fallbacks = [{ provider = "openai", api_key_env = "NOPE_KEY" }]',
        ),
        path="p.toml",
    )
    with pytest.raises(PipelineError, match="'NOPE_KEY', which is not set") as info:
        pipeline.team()
    assert info.value.entry == "agent 'writer', fallbacks[0]"
    assert str(info.value).startswith("p.toml: ")


def test_provider_override_drops_the_fallbacks() -> None:
    pipeline = parse_pipeline(FALLING_BACK).with_provider("echo")
    assert pipeline.team()["writer"].fallbacks == ()


def with_fallbacks(value: str) -> str:
    return FALLING_BACK.replace(
        'fallbacks = [{ provider = "scripted", replies = ["from the fallback"] }]',
        f"fallbacks = {value}",
    )


@pytest.mark.parametrize(
    ("text", "entry", "problem"),
    [
        (with_fallbacks('"openai"'), "agent 'writer'", "'fallbacks' must be a list of tables"),
        (with_fallbacks('["openai"]'), "agent 'writer'", "'fallbacks' must be a list of tables"),
        (
            with_fallbacks('[{ provider = "auto" }]'),
            "agent 'writer', fallbacks[0]",
            "unknown provider 'auto'",
        ),
        (
            with_fallbacks('[{ model = "gpt-4o-mini" }]'),
            "agent 'writer', fallbacks[0]",
            "has no 'provider'; expected one of 'anthropic', 'openai'",
        ),
        (
            with_fallbacks('[{ provider = "gemini" }]'),
            "agent 'writer', fallbacks[0]",
            "unknown provider 'gemini'",
        ),
        (
            with_fallbacks('[{ provider = "openai", modle = "m" }]'),
            "agent 'writer', fallbacks[0]",
            "unknown field 'modle' (did you mean 'model'?)",
        ),
        (
            with_fallbacks('[{ provider = "echo" }, { provider = "openai", timeout_s = nan }]'),
            "agent 'writer', fallbacks[1]",
            "'timeout_s' must be a number > 0 and <= 86400, got nan",
        ),
        (
            with_fallbacks('[{ provider = "openai", replies = ["x"] }]'),
            "agent 'writer', fallbacks[0]",
            "'replies' is only for provider = \"scripted\"",
        ),
        (
            with_fallbacks('[{ provider = "scripted", replies = [{ error = "boom" }] }]'),
            "agent 'writer', fallbacks[0], replies[0]",
            "unknown error 'boom'",
        ),
        (
            with_fallbacks('[{ provider = "openai", name = "x" }]'),
            "agent 'writer', fallbacks[0]",
            "unknown field 'name'",
        ),
        (
            FALLING_BACK.replace("fallbacks =", "fall_back_on_permanent_errors = 1\nfallbacks ="),
            "agent 'writer'",
            "'fall_back_on_permanent_errors' must be true or false, got 1",
        ),
    ],
)
def test_fallback_mistakes_name_the_fallback(text: str, entry: str, problem: str) -> None:
    error = error_of(text)
    assert error.entry == entry
    assert problem in error.problem, error.problem
    assert "\n" not in str(error)


def test_the_cli_docs_fallback_example_falls_back_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in docs.split("```toml\n")[1:]]
    (example,) = [b for b in blocks if "from the fallback" in b]
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(example, encoding="utf-8")
    output = tmp_path / "out.json"
    status = main(["run", str(pipeline), "--plain", "--no-checkpoint", "--output", str(output)])
    assert status == 0, capsys.readouterr().out
    assert RunResult.from_json(output.read_text(encoding="utf-8"))["draft"].output == (
        "from the fallback"
    )


def test_aegis_run_falls_back_when_the_primary_keeps_failing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(FALLING_BACK, encoding="utf-8")
    output = tmp_path / "out.json"
    status = main(["run", str(pipeline), "--plain", "--output", str(output)])
    out = capsys.readouterr().out
    assert status == 0, out
    result = RunResult.from_json(output.read_text(encoding="utf-8"))
    draft = result["draft"]
    assert draft.status is TaskState.DONE
    assert draft.output == "from the fallback"
    assert draft.attempts >= 1
    assert "503" in out  # the primary's retryable errors were seen before falling back


def test_a_permanent_error_falls_back_only_when_asked(tmp_path: Path) -> None:
    text = FALLING_BACK.replace(
        'replies = [{ error = "unavailable" }, { error = "unavailable" }]',
        'replies = [{ error = "auth" }]',
    )
    for allowed, expected in ((False, TaskState.FAILED), (True, TaskState.DONE)):
        pipeline = tmp_path / f"p-{allowed}.toml"
        flag = "true" if allowed else "false"
        pipeline.write_text(
            text.replace("fallbacks =", f"fall_back_on_permanent_errors = {flag}\nfallbacks ="),
            encoding="utf-8",
        )
        output = tmp_path / f"out-{allowed}.json"
        main(["run", str(pipeline), "--plain", "--no-outputs", "--output", str(output)])
        result = RunResult.from_json(output.read_text(encoding="utf-8"))
        assert result["draft"].status is expected


# -- [tools] root ----------------------------------------------------------------------------


def rooted(tools: str, tools_table: str = "") -> str:
    return (
        f'{tools_table}\n[[agents]]\nname = "a"\nprovider = "echo"\ntools = {tools}\n'
        '[[tasks]]\nid = "t"\n'
    )


@pytest.mark.parametrize(
    ("tools", "named"),
    [('["file_read"]', "'file_read'"), ('["memory_store", "shell"]', "'shell'")],
)
def test_file_tools_without_a_root_are_refused(tools: str, named: str) -> None:
    error = error_of(rooted(tools, '[tools]\nshell_allowlist = ["echo"]'))
    assert error.entry == "agent 'a'"
    assert error.problem == (
        f"'tools' lists {named}, but [tools] has no 'root': set [tools] root to the directory "
        "they may use (relative to this file)"
    )


def test_other_tools_need_no_root() -> None:
    pipeline = parse_pipeline(rooted('["memory_store", "memory_retrieve"]'))
    assert pipeline.tools_root is None


def test_a_relative_root_is_relative_to_the_pipeline_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    path = tmp_path / "p.toml"
    path.write_text(rooted('["file_read"]', '[tools]\nroot = "data"'), encoding="utf-8")
    pipeline = load_pipeline(path)
    assert pipeline.tools_root == str(tmp_path / "data")
    assert pipeline.tool_registry().root == (tmp_path / "data").resolve()


def test_the_tools_example_sets_its_root() -> None:
    pipeline = load_pipeline(EXAMPLES / "tools.toml")
    assert pipeline.tools_root == str(EXAMPLES / "notes")
