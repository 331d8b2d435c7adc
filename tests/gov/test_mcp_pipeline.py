"""MCP servers declared in a pipeline file: ``[mcp_servers.NAME]``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from aegis_gov import OpenMultiAgent, TaskState
from aegis_gov._cli import main
from aegis_gov._pipeline import PipelineError, parse_pipeline

pytest.importorskip("mcp")

from tests.gov.mcp_server import HTTPServer  # needs mcp, checked above

SERVER = Path(__file__).with_name("mcp_server.py")

PIPELINE = f"""
[mcp_servers.calc]
command = {json.dumps(sys.executable)}
args = ["server.py"]
tools = ["add", "where"]
timeout_s = 20

[[agents]]
name = "adder"
provider = "scripted"
tools = ["calc_add"]
replies = [
    {{ tool_calls = [{{ name = "calc_add", arguments = {{ a = 2, b = 40 }} }}] }},
    "the answer is 42",
]

[[tasks]]
id = "sum"
agent = "adder"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A pipeline's folder holding the server script (the server runs there)."""
    shutil.copy(SERVER, tmp_path / "server.py")
    return tmp_path


def test_a_pipelines_agent_calls_a_declared_servers_tool(folder: Path) -> None:
    pipeline = parse_pipeline(PIPELINE, base_dir=folder)
    (server,) = pipeline.mcp_servers
    assert server.spec.cwd == str(folder)  # relative to the file, not to where aegis started
    with pipeline.tool_registry() as registry:
        assert [n for n in registry.names() if n.startswith("calc_")] == ["calc_add", "calc_where"]
        oma = OpenMultiAgent(tools=registry)
        result = oma.run_tasks(list(pipeline.tasks), pipeline.team())
    assert result["sum"].status is TaskState.DONE
    assert result["sum"].tool_calls[0].result == "42"
    assert "calc_add" not in registry  # closed: the server's tools are gone


def test_aegis_run_connects_runs_and_closes(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "p.toml"
    path.write_text(PIPELINE, encoding="utf-8")
    output = folder / "result.json"
    assert main(["run", str(path), "--output", str(output), "--plain"]) == 0
    result = json.loads(output.read_text(encoding="utf-8"))
    assert "42" in json.dumps(result)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[mcp_servers.x]\nargs = ["a"]', "[mcp_servers.x]: MCP server 'x': give either a command"),
        ('[mcp_servers."bad name"]\ncommand = "x"', "1 to 32 letters"),
        ('[mcp_servers.x]\ncommand = "x"\nport = 1', "unknown field 'port'"),
        ('[mcp_servers.x]\ncommand = "x"\nenv = { A = 1 }', "'A' must be a string, got 1"),
        ('[mcp_servers.x]\ncommand = "x"\ntimeout_s = 0', "'timeout_s' must be a number > 0"),
        ('[mcp_servers.x]\ncommand = "x"\nheaders_env = { A = "B" }', "headers_env is for a url"),
        ('[mcp_servers.x]\nurl = "http://h/mcp"\npass_env = ["A"]', "pass_env is for a command"),
    ],
)
def test_bad_server_tables_are_reported_before_anything_runs(toml: str, message: str) -> None:
    text = f'{toml}\n[[agents]]\nname = "a"\n[[tasks]]\nid = "t"\n'
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(text)
    assert message in str(caught.value)


def test_agent_tools_must_fit_a_servers_prefix_and_filter() -> None:
    head = '[mcp_servers.calc]\ncommand = "x"\ntools = ["add"]\n'
    tail = '\n[[tasks]]\nid = "t"\n'
    parse_pipeline(head + '[[agents]]\nname = "a"\ntools = ["calc_add"]' + tail)
    for tool in ("calc_shout", "other_add"):
        with pytest.raises(PipelineError, match=f"unknown tool '{tool}'"):
            parse_pipeline(head + f'[[agents]]\nname = "a"\ntools = ["{tool}"]' + tail)


def test_pass_env_gives_a_stdio_server_only_the_variables_named(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_TEST_TOKEN", "t-1")
    monkeypatch.setenv("AEGIS_TEST_OTHER", "o-1")
    text = PIPELINE.replace(
        'tools = ["add", "where"]', 'tools = ["add", "env"]\npass_env = ["AEGIS_TEST_TOKEN"]'
    )
    with parse_pipeline(text, base_dir=folder).tool_registry() as registry:
        assert registry.call("calc_env", {"name": "AEGIS_TEST_TOKEN"}) == "t-1"
        assert registry.call("calc_env", {"name": "AEGIS_TEST_OTHER"}) == "(unset)"
    monkeypatch.delenv("AEGIS_TEST_TOKEN")
    with pytest.raises(PipelineError, match="'AEGIS_TEST_TOKEN' is not set") as caught:
        parse_pipeline(text, base_dir=folder).tool_registry()
    assert caught.value.entry == "[mcp_servers.calc]"


def test_headers_env_sends_a_header_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AEGIS_TEST_AUTH", "Bearer b-2")
    server = HTTPServer()
    try:
        text = (
            f'[mcp_servers.web]\nurl = "{server.url}"\nheaders = {{ X-Team = "blue" }}\n'
            'headers_env = { Authorization = "AEGIS_TEST_AUTH" }\ntools = ["add"]\n'
            '[[agents]]\nname = "a"\ntools = ["web_add"]\n[[tasks]]\nid = "t"\n'
        )
        with parse_pipeline(text).tool_registry() as registry:
            assert registry.call("web_add", {"a": 1, "b": 2}) == "3"
    finally:
        server.stop()
    assert server.headers
    assert all(h.get(b"authorization") == b"Bearer b-2" for h in server.headers)
    assert all(h.get(b"x-team") == b"blue" for h in server.headers)


def test_a_tool_the_server_does_not_offer_fails_when_connecting(folder: Path) -> None:
    text = PIPELINE.replace('tools = ["add", "where"]\n', "").replace(
        'tools = ["calc_add"]', 'tools = ["calc_add", "calc_missing"]'
    )
    pipeline = parse_pipeline(text, base_dir=folder)
    with pytest.raises(PipelineError, match="'tools' lists 'calc_missing', which no MCP server"):
        pipeline.tool_registry()


def test_aegis_run_names_the_file_once_when_a_server_cannot_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pipeline.toml"
    missing = tmp_path / "no-such-server"
    path.write_text(PIPELINE.replace(json.dumps(sys.executable), json.dumps(str(missing))))
    assert main(["run", str(path), "--plain", "--no-checkpoint"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"aegis: error: {path}: [mcp_servers.calc]: MCP server 'calc'"), err
    assert err.count(str(path)) == 1, err
