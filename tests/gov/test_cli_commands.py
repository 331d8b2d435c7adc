"""The aegis command end to end, in subprocesses, on the example pipelines and offline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aegis_gov import RunResult, TaskState
from aegis_gov._cli import main

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
PROVIDER_VARIABLES = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AEGIS_MODEL",
    "AZURE_OPENAI_API_KEY",
)


@pytest.fixture(scope="module")
def refused_port() -> Iterator[int]:
    """A loopback port with nothing listening: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]  # bound but not listening: connections are refused


@pytest.fixture(scope="module")
def offline_env(refused_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES}
    env["OLLAMA_HOST"] = f"127.0.0.1:{refused_port}"
    env["PYTHONIOENCODING"] = "utf-8"
    env.pop("TERM", None)
    return env


def aegis(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aegis_gov._cli", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_demo_runs_offline_and_shows_every_behaviour(offline_env: dict[str, str]) -> None:
    proc = aegis(offline_env, "demo")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "OFFLINE" in out
    assert "built-in offline model" in out
    # Retry-After honoured: the research task waits at least the 1 s it was asked to.
    retry = next(line for line in out.splitlines() if "research: retrying in" in line)
    assert float(retry.split("retrying in ")[1].split("s")[0]) >= 1.0
    # A failure cascading into a skip, while the other branches finish.
    assert "fact_check: FAILED" in out
    assert "cite_sources: skipped (upstream 'fact_check' failed)" in out
    assert "Fallback: 'summary''s endpoint stayed down" in out
    for task in ("research", "draft", "translate", "publish", "headlines", "summary"):
        assert f"{task}: done" in out
    # The flaky endpoint's breaker opens and recovers.
    flaky = [line for line in out.splitlines() if "] circuit " in line and "offline-flaky" in line]
    assert [line.rsplit(": ", 1)[1] for line in flaky] == [
        "closed -> open",
        "open -> half_open",
        "half_open -> closed",
    ]
    # The parallel branch: both start before either is done.
    lines = out.splitlines()
    index = {key: i for i, line in enumerate(lines) for key in [line.split("] ", 1)[-1]]}
    assert index["translate: started (translator)"] < min(
        i for i, line in enumerate(lines) if "publish: done" in line
    )
    assert index["publish: started (publisher)"] < min(
        i for i, line in enumerate(lines) if "translate: done" in line
    )
    assert "What this run showed:" in out
    assert "Retry-After" in out
    assert "Parallel branch" in out
    assert "Failure cascade" in out
    assert "Circuit breaker" in out
    assert "Rate limit: 'offline-tagger' is declared at 240 requests a minute" in out


def test_demo_output_file_records_the_scripted_outcome(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    proc = aegis(
        offline_env, "demo", "--offline", "--no-outputs", "--output", "demo.json", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = RunResult.from_json((tmp_path / "demo.json").read_text(encoding="utf-8"))
    assert result.summary() == {"done": 9, "failed": 1, "skipped": 1}
    assert result["summary"].endpoint == "scripted|scripted://offline-backup|offline-backup"
    assert result["research"].attempts == 2
    assert result["cite_sources"].blamed == "fact_check"
    assert result["headlines"].attempts == 3
    # The declared rate limit (one request every 0.25 s) paced the three tags tasks, ready
    # at once: the second's request went 0.25 s after the first's, the third's 0.5 s after.
    tags = ("tags_agents", "tags_models", "tags_reliability")
    durations = sorted(result[t].duration_s for t in tags)
    assert durations[1] >= 0.45
    assert durations[2] >= 0.7
    assert "--- translate ---" not in proc.stdout


@pytest.mark.parametrize(
    ("example", "extra", "status", "summary"),
    [
        ("offline.toml", (), 0, {"done": 3}),
        ("failure-cascade.toml", (), 1, {"failed": 1, "skipped": 2, "done": 1}),
        ("article.toml", ("--provider", "echo"), 0, {"done": 4}),
        ("mixed-providers.toml", ("--provider", "scripted"), 0, {"done": 4}),
        ("tools.toml", (), 0, {"done": 2}),
    ],
)
def test_examples_run(  # noqa: PLR0917  # pytest passes parameters positionally
    offline_env: dict[str, str],
    tmp_path: Path,
    example: str,
    extra: tuple[str, ...],
    status: int,
    summary: dict[str, int],
) -> None:
    output = tmp_path / "result.json"
    proc = aegis(offline_env, "run", str(EXAMPLES / example), *extra, "--output", str(output))
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    result = RunResult.from_json(output.read_text(encoding="utf-8"))
    assert result.summary() == summary
    assert f"result written to {output}" in proc.stdout


def test_plain_lines_show_retries_and_tokens(offline_env: dict[str, str]) -> None:
    proc = aegis(offline_env, "run", str(EXAMPLES / "offline.toml"))
    out = proc.stdout
    assert "research: retrying in 0.20s (attempt 2 next) after: scripted (HTTP 429)" in out
    # A Retry-After holds the endpoint in its pace: its circuit is no business of a 429's.
    assert "circuit " not in out
    assert "research: done" in out
    assert "tokens" in out
    assert "--- review ---" in out  # the final task's output


def test_tools_example_reads_the_file_through_the_sandbox(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    output = tmp_path / "result.json"
    proc = aegis(offline_env, "run", str(EXAMPLES / "tools.toml"), "--output", str(output))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "lookup: tool file_read ok" in proc.stdout
    (call,) = RunResult.from_json(output.read_text(encoding="utf-8"))["lookup"].tool_calls
    assert (call.tool, dict(call.arguments), call.error) == (
        "file_read",
        {"path": "trends.txt"},
        None,
    )
    expected = (EXAMPLES / "notes" / "trends.txt").read_text(encoding="utf-8")
    assert call.result == expected


def test_failure_cascade_reports_blame(offline_env: dict[str, str]) -> None:
    proc = aegis(offline_env, "run", str(EXAMPLES / "failure-cascade.toml"), "--no-outputs")
    assert proc.returncode == 1
    assert "failed  fetch: AuthenticationError" in proc.stdout
    assert "skipped report (upstream_failed) because 'fetch' failed" in proc.stdout
    assert "weather: done" in proc.stdout


def test_stop_on_failure_flag_halts_everything(offline_env: dict[str, str], tmp_path: Path) -> None:
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(
        """
        [[agents]]
        name = "bad"
        provider = "scripted"
        delay_s = 0.0
        replies = [{ error = "invalid" }]
        [[agents]]
        name = "slow"
        provider = "scripted"
        [[tasks]]
        id = "a"
        agent = "bad"
        [[tasks]]
        id = "b"
        agent = "slow"
        depends_on = ["c"]
        [[tasks]]
        id = "c"
        agent = "slow"
        depends_on = ["a2"]
        [[tasks]]
        id = "a2"
        agent = "slow"
        depends_on = ["a"]
        """,
        encoding="utf-8",
    )
    output = tmp_path / "r.json"
    proc = aegis(
        offline_env,
        "run",
        str(pipeline),
        "--stop-on-failure",
        "--max-concurrent",
        "1",
        "--output",
        str(output),
    )
    assert proc.returncode == 1
    result = RunResult.from_json(output.read_text(encoding="utf-8"))
    assert result["a"].status is TaskState.FAILED
    assert {result[t].status for t in ("b", "c", "a2")} == {TaskState.SKIPPED}


def test_resume_round_trip(offline_env: dict[str, str], tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    proc = aegis(offline_env, "run", str(EXAMPLES / "offline.toml"), "--output", str(first))
    assert proc.returncode == 0
    # Pretend "draft" failed the first time: resuming keeps "research", runs the rest.
    data = json.loads(first.read_text(encoding="utf-8"))
    for task in data["tasks"]:
        if task["task_id"] == "draft":
            task.update(status="failed", output=None, error="boom", error_type="X")
        if task["task_id"] == "review":
            task.update(
                status="skipped", output=None, blamed="draft", skip_reason="upstream_failed"
            )
    first.write_text(json.dumps(data), encoding="utf-8")
    second = tmp_path / "second.json"
    proc = aegis(
        offline_env,
        "run",
        str(EXAMPLES / "offline.toml"),
        "--resume",
        str(first),
        "--output",
        str(second),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "keep research: unchanged" in proc.stdout
    assert "research: started" not in proc.stdout  # the 429 script would have shown again
    assert "draft: started" in proc.stdout
    result = RunResult.from_json(second.read_text(encoding="utf-8"))
    assert result.summary() == {"done": 3}
    assert result["research"].output == data["tasks"][0]["output"]
    # Resuming a finished run runs nothing.
    proc = aegis(offline_env, "run", str(EXAMPLES / "offline.toml"), "--resume", str(second))
    assert proc.returncode == 0
    assert "started" not in proc.stdout
    assert "keeping 3, running 0, dropping 0 task(s)" in proc.stdout


def test_graph_prints_text_and_mermaid(offline_env: dict[str, str]) -> None:
    proc = aegis(offline_env, "graph", str(EXAMPLES / "article.toml"))
    assert proc.returncode == 0
    out = proc.stdout
    assert "pipeline 'pipeline': 4 agents, 4 tasks, valid" in out
    assert (
        "step 3 (in parallel):\n  translate [translator] <- draft\n  publish [publisher] <- draft"
        in out
    )
    assert "flowchart TD" in out
    assert 't0["research"]' in out
    assert "t1 --> t2" in out


def test_graph_formats_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(EXAMPLES / "failure-cascade.toml"), "--format", "mermaid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart TD")
    assert main(["graph", str(EXAMPLES / "failure-cascade.toml"), "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert "flowchart" not in out
    assert "step 1 (in parallel):" in out


BAD_FILES = {
    "syntax.toml": ('[[agents]\nname = "a"\n', "syntax.toml: invalid TOML"),
    "field.toml": (
        '[[agents]]\nname = "a"\nprovider = "echo"\nsytem_prompt = "x"\n[[tasks]]\nid = "t"\n',
        "field.toml: agent 'a': unknown field 'sytem_prompt' (did you mean 'system_prompt'?)",
    ),
    "agent.toml": (
        '[[agents]]\nname = "writer"\n[[tasks]]\nid = "t"\nagent = "writter"\n',
        "agent.toml: task 't': agent 'writter' is not declared (did you mean 'writer'?)",
    ),
    "dependency.toml": (
        (
            '[[agents]]\nname = "a"\n[[tasks]]\nid = "research"\n'
            '[[tasks]]\nid = "draft"\ndepends_on = ["reserch"]\n'
        ),
        (
            "dependency.toml: task 'draft': depends on unknown task 'reserch' "
            "(did you mean 'research'?)"
        ),
    ),
    "cycle.toml": (
        (
            '[[agents]]\nname = "a"\n[[tasks]]\nid = "x"\ndepends_on = ["y"]\n'
            '[[tasks]]\nid = "y"\ndepends_on = ["x"]\n'
        ),
        "cycle.toml: task 'x': dependency cycle: x -> y -> x",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
@pytest.mark.parametrize("command", ["run", "graph"])
def test_bad_files_get_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, command: str
) -> None:
    text, message = BAD_FILES[name]
    (tmp_path / name).write_text(text, encoding="utf-8")
    status = main([command, str(tmp_path / name)])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"aegis: error: {tmp_path}")
    assert message in lines[0]


def test_bad_file_in_a_subprocess_has_no_traceback(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    text, message = BAD_FILES["cycle.toml"]
    (tmp_path / "cycle.toml").write_text(text, encoding="utf-8")
    proc = aegis(offline_env, "run", "cycle.toml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"aegis: error: {message}")
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.toml"], "missing.toml: cannot read the file"),
        (["run", "{ok}", "--resume", "nope.json"], "nope.json: cannot read the result to resume"),
        (["run", "{ok}", "--resume", "{garbage}"], "not a result written by --output"),
        (["run", "{ok}", "--model", "m"], "--model needs --provider"),
        (
            ["run", "{ok}", "--resume", "{other}"],
            "cannot resume: task 't' is recorded DONE but has no output",
        ),
    ],
)
def test_bad_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    ok = tmp_path / "ok.toml"
    ok.write_text(
        '[[agents]]\nname = "a"\nprovider = "echo"\n[[tasks]]\nid = "t"\n', encoding="utf-8"
    )
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json", encoding="utf-8")
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps({"format": 1, "tasks": [{"task_id": "t", "status": "done"}]}),
        encoding="utf-8",
    )
    paths = {"ok": str(ok), "garbage": str(garbage), "other": str(other)}
    status = main([arg.format(**paths) if "{" in arg else arg for arg in args])
    captured = capsys.readouterr()
    assert status == 2
    assert message in captured.err
    assert captured.err.startswith("aegis: error: ")


def test_usage_errors_from_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "x.toml", "--max-concurrent", "0"])
    assert info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_live_display_renders_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Force rich to treat the captured stdout as a terminal: the live table is drawn.
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "160")
    status = main(["run", str(EXAMPLES / "offline.toml"), "--no-outputs"])
    out = capsys.readouterr().out
    assert status == 0
    assert "endpoints" in out
    assert "tokens in/out" in out
    assert "researcher" in out
    assert "3 tasks: 3 done" in out
    assert "retrying in" not in out  # no plain lines on a terminal


def test_a_reader_that_closes_early_gets_no_traceback(offline_env: dict[str, str]) -> None:
    """``aegis graph … | head -0``: the pipe is closed before the command writes a byte."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aegis_gov._cli", "graph", str(EXAMPLES / "article.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=offline_env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the interpreter is still starting: every write will find no reader
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert b"Traceback" not in err
    assert b"Exception ignored" not in err


def test_demo_checkpoints_so_that_report_last_draws_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "runs.db"
    assert main(["demo", "--offline", "--plain", "--checkpoint", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"checkpointed in {store}: aegis report " in out
    page = tmp_path / "report.html"
    assert main(["report", "last", "--checkpoint", str(store), "-o", str(page)]) == 0
    assert "with its timeline" in capsys.readouterr().out
    assert "fact_check" in page.read_text(encoding="utf-8")


def test_demo_no_checkpoint_writes_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "runs.db"
    monkeypatch.setenv("AEGIS_CHECKPOINT", str(store))
    assert main(["demo", "--offline", "--plain", "--no-checkpoint"]) == 0
    assert not store.exists()


LIMITS_PIPELINE = """\
name = "p"
[[agents]]
name = "w"
provider = "scripted"
model = "m"
replies = ["a", "b", "c"]
[[tasks]]
id = "a"
description = "x"
"""
UNMATCHED = (
    "aegis: warning: limits['mm'] matches no model of this run (its models: 'm'), so it "
    "limits nothing; did you mean 'm'? (keys are a model name, 'provider:model' or an "
    "endpoint key)"
)
DISAGREEING_LIMITS = (
    '[limits."scripted:m"]\nrequests_per_minute = 600\n[limits."m"]\nrequests_per_minute = 300\n'
)
DISAGREEING = (
    "aegis: warning: limits 'scripted:m', 'm' all name the endpoint 'scripted|scripted://m|m' "
    "with different values: only limits['scripted:m'] applies"
)


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ('[limits."mm"]\nrequests_per_minute = 600\n', UNMATCHED),
        (DISAGREEING_LIMITS, DISAGREEING),
    ],
    ids=["unmatched", "disagreeing"],
)
@pytest.mark.parametrize("command", ["run", "graph"])
def test_limits_warnings_are_one_aegis_line_in_run_and_graph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, limits: str, expected: str
) -> None:
    # Found by an adversarial review: `aegis run` printed a raw UserWarning, with an
    # internal file path and source line, and `aegis graph` said nothing of the key.
    import warnings  # noqa: PLC0415

    pipeline = tmp_path / "p.toml"
    pipeline.write_text(LIMITS_PIPELINE + limits, encoding="utf-8")
    shown = warnings.showwarning
    args = ["--plain", "--no-checkpoint"] if command == "run" else []
    for _ in range(2):  # each command says it, however many ran before in the process
        assert main([command, str(pipeline), *args]) == 0
        captured = capsys.readouterr()
        lines = captured.err.splitlines()
        assert len(lines) == 1, captured.err
        assert lines[0].startswith(expected), captured.err
        assert "UserWarning" not in captured.err
        assert ".py" not in captured.err
        if command == "graph":
            assert "pipeline 'p': 1 agents, 1 tasks, valid" in captured.out
    assert warnings.showwarning is shown  # only for the command


def test_a_limits_warning_in_a_subprocess_is_one_line(
    offline_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "p.toml").write_text(
        LIMITS_PIPELINE + '[limits."mm"]\nrequests_per_minute = 600\n', encoding="utf-8"
    )
    proc = aegis(offline_env, "run", "p.toml", "--plain", "--no-checkpoint", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [UNMATCHED]


def test_graph_refuses_limits_keys_for_one_endpoint_as_run_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Found by an adversarial review: two [limits] keys differing only by credentials, with
    # different values, made `aegis run` exit 2 while `aegis graph` called the file valid.
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(
        LIMITS_PIPELINE + '[limits."openai|http://u:pw-SECRET@h/v1|m"]\nrequests_per_minute = 5\n'
        '[limits."openai|http://h/v1|m"]\nrequests_per_minute = 6\n',
        encoding="utf-8",
    )
    said = {}
    for command, args in (("run", ["--plain", "--no-checkpoint"]), ("graph", [])):
        assert main([command, str(pipeline), *args]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        said[command] = captured.err.splitlines()
        assert len(said[command]) == 1, captured.err
        assert said[command][0].startswith(f"aegis: error: {pipeline}: limits["), captured.err
        assert "name one endpoint" in captured.err
        assert "SECRET" not in captured.err
    assert said["graph"] == said["run"]


def test_a_limits_warning_never_quotes_a_password_that_free_text_redaction_cuts_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Found by an adversarial review: a key that is not a full endpoint key was redacted as
    # free text, where a URL's userinfo ends at the first '@', quote or space.
    keys = [
        "openai|http://user:p@SECRET-1@host/v1",
        "openai|http://user:p'SECRET-2@host/v1",
        "http://user:p SECRET-3@host/v1",
        'openai|http://user:p"SECRET-4@host/v1|m',
    ]
    limits = "".join(f"[limits.{json.dumps(key)}]\nrequests_per_minute = 5\n" for key in keys)
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(LIMITS_PIPELINE + limits, encoding="utf-8")
    assert main(["graph", str(pipeline)]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(keys), lines
    assert all(line.startswith("aegis: warning: limits[") for line in lines), lines
    assert "SECRET" not in "\n".join(lines)
    assert "http://***@host/v1" in lines[0]


def test_only_aegis_s_own_modules_make_aegis_warning_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Found by an adversarial review: a user's warning from a file under a folder named
    # aegis_gov was relabelled "aegis: warning:".
    import warnings  # noqa: PLC0415

    import aegis_gov._cli as cli  # noqa: PLC0415

    mine = tmp_path / "projects" / "aegis_gov" / "tool.py"
    with warnings.catch_warnings(record=True) as passed_on, cli._warnings_as_lines():
        warnings.simplefilter("always")
        warnings.warn_explicit("user tool says", UserWarning, str(mine), 3)
        warnings.warn_explicit("aegis says", UserWarning, cli.__file__, 3)
    assert capsys.readouterr().err == "aegis: warning: aegis says\n"
    assert [(str(w.message), w.filename) for w in passed_on] == [("user tool says", str(mine))]
