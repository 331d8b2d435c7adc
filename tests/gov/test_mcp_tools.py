"""MCP servers as tools: a real server (the SDK's MCPServer) over stdio and streamable HTTP."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from aegis_gov import (
    AgentConfig,
    ChatResponse,
    DuplicateToolError,
    InvalidToolArgumentsError,
    InvalidToolNameError,
    MCPConnectionError,
    Message,
    OpenMultiAgent,
    RunEvent,
    ScriptedAdapter,
    Task,
    TaskState,
    ToolCall,
    ToolCalled,
    ToolExecutionError,
    ToolRegistry,
    ToolTimeoutError,
)

pytest.importorskip("mcp")

from tests.gov.mcp_server import HTTPServer  # needs mcp, checked above

SERVER = Path(__file__).with_name("mcp_server.py")


def _stdio(registry: ToolRegistry, name: str = "demo", *extra: str, **options: object) -> list[str]:
    tools = registry.add_mcp_server(
        name,
        command=sys.executable,
        args=[str(SERVER), "--stdio", *extra],
        **options,  # type: ignore[arg-type]  # each test passes what it checks
    )
    return [tool.name for tool in tools]


@pytest.fixture(scope="module")
def shared() -> Iterator[ToolRegistry]:
    """One registry with the stdio server, for the tests that only call tools."""
    with ToolRegistry(builtins=False) as registry:
        _stdio(registry, timeout_s=5.0)
        yield registry


def test_the_servers_tools_are_listed_with_their_schemas_and_prefixed(
    shared: ToolRegistry,
) -> None:
    assert shared.names() == [
        "demo_add",
        "demo_shout",
        "demo_fail",
        "demo_hang",
        "demo_crash",
        "demo_env",
        "demo_where",
    ]
    add = shared.get("demo_add")
    assert add.description == "Add two integers."
    assert add.spec.input_schema["required"] == ["a", "b"]
    assert shared.call("demo_add", {"a": 2, "b": 40}) == "42"
    assert shared.call("demo_shout", '{"text": "hi", "times": 2}') == "HI HI"
    pid, argv = shared.call("demo_where", {}).split(" ", 1)
    assert argv == "--stdio"  # a subprocess, started by the registry
    assert int(pid) != os.getpid()


def test_arguments_are_validated_against_the_servers_schema_first(shared: ToolRegistry) -> None:
    with pytest.raises(InvalidToolArgumentsError) as caught:
        shared.call("demo_add", {"a": 1, "b": "two"})
    assert caught.value.path == "$.b"
    assert caught.value.tool_name == "demo_add"


def test_an_error_the_server_reports_is_a_tool_execution_error(shared: ToolRegistry) -> None:
    outcome = shared.try_call("demo_fail", {"reason": "disk full"})
    assert isinstance(outcome.error, ToolExecutionError)
    assert "failed on purpose: disk full" in outcome.output
    assert outcome.output.startswith("tool 'demo_fail': failed: ")


def test_threads_share_the_session_concurrently(shared: ToolRegistry) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    results: dict[int, list[str]] = {}

    def worker(n: int) -> None:
        barrier.wait()  # every thread calls at once: requests interleave on one session
        results[n] = [shared.call("demo_add", {"a": n, "b": i}) for i in range(5)]

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert results == {n: [str(n + i) for i in range(5)] for n in range(threads)}


def test_a_run_calls_the_servers_tools_within_the_agents_scope(shared: ToolRegistry) -> None:
    def model(messages: Sequence[Message]) -> ChatResponse:
        results = [m for m in messages if m.role == "tool"]
        if not results:
            return ChatResponse(
                "",
                tool_calls=(
                    ToolCall("c1", "demo_add", {"a": 2, "b": 3}),
                    ToolCall("c2", "demo_fail", {"reason": "no"}),
                    ToolCall("c3", "demo_where", {}),  # not given to this agent
                ),
            )
        return ChatResponse(" | ".join(m.content for m in results))

    events: list[RunEvent] = []
    oma = OpenMultiAgent(default_adapter=ScriptedAdapter(model), tools=shared)
    agent = AgentConfig(name="calc", tools=["demo_add", "demo_fail"])
    team = OpenMultiAgent.create_team("t", agent)
    result = oma.run_tasks(
        [Task(id="sum", description="2 + 3?", agent="calc")], team, on_event=events.append
    )

    task = result["sum"]
    assert task.status is TaskState.DONE
    add, fail, where = task.tool_calls
    assert (add.result, add.error) == ("5", None)
    assert fail.error is not None
    assert "failed on purpose: no" in fail.result
    assert where.error is not None
    assert "was not given this tool" in where.result
    assert (task.output or "").startswith("5 | error: tool 'demo_fail'")
    called = [e for e in events if isinstance(e, ToolCalled)]
    assert [e.tool for e in called] == ["demo_add", "demo_fail", "demo_where"]


def test_a_call_past_timeout_s_fails_and_the_session_goes_on() -> None:
    with ToolRegistry(builtins=False) as registry:
        _stdio(registry, timeout_s=0.5)
        with pytest.raises(ToolTimeoutError) as caught:
            registry.call("demo_hang", {})
        assert caught.value.timeout_s == 0.5
        assert "did not answer within 0.5 s" in str(caught.value)
        assert registry.call("demo_add", {"a": 1, "b": 1}) == "2"


def test_a_server_that_dies_fails_its_calls_not_the_run() -> None:
    with ToolRegistry(builtins=False) as registry:
        _stdio(registry, tools=["crash", "add"])
        with pytest.raises(ToolExecutionError, match="MCP server 'demo'"):
            registry.call("demo_crash", {})
        outcome = registry.try_call("demo_add", {"a": 1, "b": 2})
        assert isinstance(outcome.error, ToolExecutionError)
        assert "MCP server 'demo'" in outcome.output


def test_what_the_model_reads_of_each_kind_of_content() -> None:
    import mcp_types  # noqa: PLC0415
    from aegis_gov._mcp import _result_text  # noqa: PLC0415  # the one place it is decided

    link = mcp_types.ResourceLink(name="r", uri="file:///r.txt")
    mixed = mcp_types.CallToolResult(
        content=[
            mcp_types.TextContent(text="one"),
            mcp_types.ImageContent(data="AAAA", mime_type="image/png"),
            mcp_types.AudioContent(data="AAAA", mime_type="audio/wav"),
            link,
            mcp_types.TextContent(text="two"),
        ]
    )
    assert _result_text(mixed) == (
        "one\n[image: image/png, not shown]\n[audio: audio/wav, not shown]\n"
        "[resource_link content, not shown]\ntwo"
    )
    structured = mcp_types.CallToolResult(content=[], structured_content={"n": 1, "é": [True]})
    assert _result_text(structured) == '{"n": 1, "é": [true]}'
    assert _result_text(mcp_types.CallToolResult(content=[])) == ""


def test_prefix_and_tools_choose_the_names(tmp_path: Path) -> None:
    with ToolRegistry(builtins=False) as registry:
        with pytest.raises(InvalidToolNameError) as caught:
            _stdio(registry, "notes", "--dotted")
        assert caught.value.tool_name == "notes_notes.search"
        assert registry.names() == []  # all of a server's tools, or none
        with pytest.raises(ValueError, match="lists no tool named 'nope'; it lists 'add'"):
            _stdio(registry, "notes", "--dotted", tools=["nope"])
        names = _stdio(registry, "notes", "--dotted", prefix="", tools=["shout", "add"])
        assert names == ["shout", "add"]
        assert registry.call("shout", {"text": "a"}) == "A"
        with pytest.raises(ValueError, match="already added"):
            _stdio(registry, "notes")
        with pytest.raises(DuplicateToolError):
            _stdio(registry, "other", prefix="", tools=["add"])
        assert registry.names() == ["shout", "add"]


def test_closing_ends_the_server_and_removes_its_tools() -> None:
    registry = ToolRegistry(builtins=True)
    _stdio(registry)
    pid = int(registry.call("demo_where", {}).split()[0])
    registry.close()
    assert "demo_add" not in registry
    assert "file_read" in registry  # the other tools stay
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the SDK waited for the child: no zombie left either
    registry.close()  # idempotent


def test_a_registry_dropped_without_closing_still_ends_its_server() -> None:
    registry = ToolRegistry(builtins=False)
    _stdio(registry, tools=["where"])
    pid = int(registry.call("demo_where", {}).split()[0])
    del registry
    gc.collect()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_server_that_cannot_start_is_an_mcp_connection_error(tmp_path: Path) -> None:
    with ToolRegistry(builtins=False) as registry:
        with pytest.raises(MCPConnectionError) as caught:
            registry.add_mcp_server("gone", command=str(tmp_path / "no-such-server"))
        assert caught.value.server == "gone"
        assert "no-such-server" in str(caught.value)
        exits = tmp_path / "exits.py"
        exits.write_text("import sys\nsys.exit(3)\n")
        with pytest.raises(MCPConnectionError, match="MCP server 'quits'"):
            registry.add_mcp_server("quits", command=sys.executable, args=[str(exits)])
        assert registry.names() == []


def test_stderr_without_a_file_descriptor_does_not_stop_a_stdio_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As in Jupyter: neither sys.stderr nor sys.__stderr__ has a descriptor."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setattr(sys, "__stderr__", io.StringIO())
    with ToolRegistry(builtins=False) as registry:
        _stdio(registry, tools=["add"])
        assert registry.call("demo_add", {"a": 1, "b": 2}) == "3"


def test_a_server_that_never_answers_times_out_connecting(tmp_path: Path) -> None:
    silent = tmp_path / "silent.py"
    silent.write_text("import sys\nsys.stdin.read()\n")  # reads, never answers
    with (
        ToolRegistry(builtins=False) as registry,
        pytest.raises(MCPConnectionError, match=r"no answer within 0\.5 s"),
    ):
        registry.add_mcp_server(
            "silent", command=sys.executable, args=[str(silent)], connect_timeout_s=0.5
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "either a command or a url"),
        ({"command": "x", "url": "http://127.0.0.1/mcp"}, "either a command or a url"),
        ({"url": "http://127.0.0.1/mcp", "args": ["a"]}, "args, env and cwd are for a command"),
        ({"command": "x", "headers": {"a": "b"}}, "headers are for a url"),
        ({"command": "x", "timeout_s": 0}, "timeout_s must be positive"),
    ],
)
def test_bad_server_settings_are_refused_before_connecting(
    options: dict[str, object], message: str
) -> None:
    registry = ToolRegistry(builtins=False)
    with pytest.raises(ValueError, match=message):
        registry.add_mcp_server("s", **options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1 to 32 letters"):
        registry.add_mcp_server("bad name", command="x")


def test_importing_aegis_gov_imports_neither_mcp_nor_pydantic() -> None:
    code = (
        "import sys, aegis_gov\n"
        "print(sorted(m for m in ('mcp', 'pydantic', 'docstring_parser') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_without_the_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # what a missing package looks like
    with pytest.raises(ImportError, match=r'pip install "\./packages/aegis-gov\[mcp\]"'):
        ToolRegistry(builtins=False).add_mcp_server("s", command="x")


# -- streamable HTTP ------------------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[HTTPServer]:
    server = HTTPServer()
    yield server
    server.stop()


def test_a_streamable_http_server_is_called_by_an_async_run(http_server: HTTPServer) -> None:
    registry = ToolRegistry(builtins=False)
    names = registry.add_mcp_server(
        "web", url=http_server.url, headers={"X-Api-Key": "k-123"}, tools=["add", "where"]
    )
    assert [tool.name for tool in names] == ["web_add", "web_where"]
    model = ScriptedAdapter(
        [
            ChatResponse("", tool_calls=(ToolCall("c1", "web_add", {"a": 20, "b": 22}),)),
            ChatResponse("", tool_calls=(ToolCall("c2", "web_where", {}),)),
            "done",
        ]
    )
    oma = OpenMultiAgent(default_adapter=model, tools=registry)
    team = OpenMultiAgent.create_team("t", AgentConfig(name="a", tools=["web_add", "web_where"]))
    try:
        result = asyncio.run(oma.arun_tasks([Task(id="t1", description="x", agent="a")], team))
    finally:
        registry.close()
    add, where = result["t1"].tool_calls
    assert add.result == "42"
    assert where.result.split()[0] == str(os.getpid())  # the in-process HTTP server
    assert all(h.get(b"x-api-key") == b"k-123" for h in http_server.headers)
    assert len(http_server.headers) >= 3  # connect, list, two calls (and closing)


def test_a_refused_http_port_is_an_mcp_connection_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/mcp"
        with ToolRegistry(builtins=False) as registry, pytest.raises(MCPConnectionError) as caught:
            registry.add_mcp_server("down", url=url, connect_timeout_s=10)
        assert caught.value.server == "down"
