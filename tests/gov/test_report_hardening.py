"""Regression tests for the attack on ``aegis report`` and ``aegis graph --format svg|png``.

Over 400 lines on purpose: one test (or a few) per finding, in the findings' order of
severity, each failing before its fix; split by finding they would share every fixture.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
from aegis_gov import (
    Checkpoint,
    CheckpointError,
    GraphvizError,
    Price,
    ResultFormatError,
    RunInfo,
    RunResult,
    TaskResult,
    TaskStarted,
    Timeline,
    TimelineEntry,
    TimelineRecorder,
    graph_dot,
    render_graph,
    render_report,
)
from aegis_gov._cli import main
from aegis_graph import SkipReason, Task, TaskState

from tests.gov.test_report import EXAMPLES, article

# ---------------------------------------------------------------- -o naming the input


def test_report_refuses_to_write_over_its_result_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = tmp_path / "r.json"
    result.write_text(article().to_json(), encoding="utf-8")
    before = result.read_bytes()
    link = tmp_path / "hard.json"
    os.link(result, link)
    for output in (result, link, tmp_path / "." / "r.json"):
        assert main(["report", str(result), "-o", str(output)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"-o {output} is the input {result}" in err
    assert result.read_bytes() == before


def test_report_refuses_to_write_over_the_checkpoint_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    with Checkpoint(db) as store:
        store.begin(RunInfo("run-1", "p.toml", "t", 0.0), ["a"], [])
        store.record("run-1", [TaskResult("a", TaskState.DONE, agent="w", output="x")])
    before = db.read_bytes()
    assert main(["report", "last", "--checkpoint", str(db), "-o", str(db)]) == 2
    assert f"is the input {db}" in capsys.readouterr().err
    assert db.read_bytes() == before


def test_graph_refuses_to_write_over_its_pipeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = tmp_path / "p.toml"
    pipeline.write_bytes((EXAMPLES / "article.toml").read_bytes())
    before = pipeline.read_bytes()
    for fmt in ("svg", "text"):
        assert main(["graph", str(pipeline), "--format", fmt, "-o", str(pipeline)]) == 2
        assert f"is the input {pipeline}" in capsys.readouterr().err
    assert pipeline.read_bytes() == before


# ---------------------------------------------------------------- valid files, no traceback


@pytest.mark.parametrize("deps", [["draft"], ["research", "research"]], ids=["self", "repeated"])
def test_a_doctored_graph_is_listed_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], deps: list[str]
) -> None:
    data = json.loads(article().to_json())
    data["timeline"]["dependencies"]["draft"] = deps
    source = tmp_path / "r.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    page = tmp_path / "r.html"
    assert main(["report", str(source), "-o", str(page)]) == 0
    capsys.readouterr()
    assert "<ul class='graph-list'>" in page.read_text(encoding="utf-8")


@pytest.mark.parametrize("at_s", [5e-324, 2e-323, 1e-9])
def test_a_run_of_a_tiny_duration_still_gets_an_axis(at_s: float) -> None:
    result = article()
    assert result.timeline is not None
    entries = [attrs.evolve(e, at_s=min(e.at_s, at_s)) for e in result.timeline.entries]
    tiny = attrs.evolve(result, timeline=attrs.evolve(result.timeline, entries=entries))
    assert "class='tick'" in render_report(tiny)


def test_a_running_task_from_the_library_is_drawn() -> None:
    result = RunResult({"a": TaskResult("a", TaskState.RUNNING)})
    assert "data-task='a' data-state='running'" in render_report(result)


# ---------------------------------------------------------------- at a glance


def _glance_of(page: str) -> str:
    return page[page.index("<section id='glance'") : page.index("<section id='graph'")]


def _stopped_run(*, cancelled: bool = False) -> RunResult:
    reason = SkipReason.CANCELLED if cancelled else SkipReason.STOPPED
    tasks = {
        "a": TaskResult("a", TaskState.FAILED, error="no key", error_type="AuthError",
                        attempts=1),
        "b": TaskResult("b", TaskState.DONE, output="x", attempts=1),
        "c": TaskResult("c", TaskState.SKIPPED, skip_reason=reason),
        "d": TaskResult("d", TaskState.SKIPPED, skip_reason=reason),
    }  # fmt: skip
    graph = {"a": [], "b": [], "c": ["b"], "d": ["a"]}
    return RunResult(tasks, cancelled=cancelled, timeline=Timeline([], graph))


def test_the_glance_of_a_stopped_run_names_what_was_skipped_and_why() -> None:
    glance = _glance_of(render_report(_stopped_run()))
    assert "nothing depended on it" not in glance
    assert "The run stopped after <span class='id'>a</span> failed" in glance
    assert "data-victim='d'>d</span> (stopped, waited" in glance
    assert "<li data-reason='stopped'>1 skipped (stopped): <b class='id s-skipped'>c</b>" in glance


def test_the_glance_of_a_cancelled_run_says_so() -> None:
    glance = _glance_of(render_report(_stopped_run(cancelled=True)))
    assert "The run was cancelled" in glance
    assert "data-victim='d'>d</span> (cancelled, waited" in glance
    assert "nothing depended on it" not in glance


def test_the_glance_of_an_unfinished_run_says_it_did_not_finish() -> None:
    result = RunResult({"a": TaskResult("a", TaskState.DONE, output="x")}, unfinished=["b"])
    glance = _glance_of(render_report(result))
    assert "The run did not finish: 1 task(s) never finished" in glance
    assert "Every task is done" not in glance


# ---------------------------------------------------------------- hostile keys in messages

HOSTILE_KEY = "\x1b]0;PWNED\x07\x1b[2J\u202eEVIL"


def test_a_hostile_key_reaches_the_error_as_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "esc.json"
    data = {"format": 1, "tasks": [], "timeline": {"dependencies": {HOSTILE_KEY: "x"}}}
    source.write_text(json.dumps(data), encoding="utf-8")
    pipeline = str(EXAMPLES / "failure-cascade.toml")
    assert main(["run", pipeline, "--resume", str(source), "--no-checkpoint"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert "\u202e" not in err
    assert r"timeline.dependencies.\x1b]0;PWNED\x07\x1b[2J\u202eEVIL: must be an array" in err
    with pytest.raises(ResultFormatError) as caught:
        RunResult.from_json(json.dumps(data))
    assert caught.value.field == f"timeline.dependencies.{HOSTILE_KEY}"
    page = tmp_path / "x.html"
    assert main(["report", str(source), "-o", str(page)]) == 0  # the timeline is left out
    assert "\x1b" not in capsys.readouterr().out
    assert r"dependencies.\x1b]0;PWNED\x07\x1b[2J\u202eEVIL" in page.read_text(encoding="utf-8")


# ---------------------------------------------------------------- bidi and zero-width text

SPOOFS = ["\u202e", "\u2066", "\u200f", "\u061c", "\u200b", "\u200d", "\u2060", "\ufeff"]


@pytest.mark.parametrize("char", SPOOFS)
def test_bidi_and_zero_width_characters_are_shown_as_escapes(char: str) -> None:
    task_id = f"fact_check{char}"
    result = attrs.evolve(article(task_id=task_id), team=f"team{char}")
    page = render_report(result)
    assert char not in page
    escape = char.encode("unicode_escape").decode("ascii")
    assert f"data-failed='fact_check{escape}'" in page
    assert f"team <b>team{escape}</b>" in page
    assert "unicode-bidi: isolate" in page
    dot = graph_dot([Task("a"), Task(task_id, depends_on=["a"])])
    assert char not in dot
    assert f'label="fact_check\\{escape}"' in dot


# ---------------------------------------------------------------- big runs stay small


def test_a_row_of_many_retries_draws_a_bounded_number_of_bars() -> None:
    n = 20_000
    entries = [TimelineEntry(0.0, "started", "a", attempt=1)]
    entries += [
        TimelineEntry(i * 1e-3, "retrying", "a", attempt=i, delay_s=4e-4) for i in range(1, n)
    ]
    entries.append(TimelineEntry(n * 1e-3, "succeeded", "a"))
    result = RunResult(
        {"a": TaskResult("a", TaskState.DONE, output="x")},
        timeline=Timeline(entries, {"a": []}),
    )
    page = render_report(result)
    assert page.count("<rect class='span") <= 401  # 600 plot units / 1.5 per bar
    assert "shorter span(s) drawn under this bar" in page
    assert len(page) < 200_000


def test_the_failed_task_survives_the_caps_of_a_big_run() -> None:
    tasks = {f"t{i}": TaskResult(f"t{i}", TaskState.DONE, output="x") for i in range(6000)}
    tasks["culprit"] = TaskResult("culprit", TaskState.FAILED, error="boom", error_type="E")
    entries = [TimelineEntry(float(i), "succeeded", f"t{i}") for i in range(6000)]
    entries.append(TimelineEntry(6000.0, "failed", "culprit"))
    page = render_report(RunResult(tasks, timeline=Timeline(entries)))
    assert "<g class='tl-row' data-task='culprit'" in page
    assert "<tr class='failed' data-task='culprit'" in page
    assert "<li data-task='culprit' data-state='failed'>" in page
    assert "1000 of 6001 tasks are drawn (failed, skipped and unfinished ones first)" in page
    assert "5001 left out" in page


def test_the_glance_lists_at_most_fifty_failures() -> None:
    tasks: dict[str, TaskResult] = {}
    for i in range(400):
        tasks[f"f{i}"] = TaskResult(f"f{i}", TaskState.FAILED, error="e", error_type="E")
        tasks[f"s{i}"] = TaskResult(
            f"s{i}", TaskState.SKIPPED, skip_reason=SkipReason.UPSTREAM_FAILED, blamed=f"f{i}"
        )
    glance = _glance_of(render_report(RunResult(tasks)))
    assert glance.count("<li data-failed=") == 50
    assert "… and 350 more failed tasks (see the table)" in glance


# ---------------------------------------------------------------- timelines that cannot be read


def test_a_recorder_never_writes_a_time_before_its_start() -> None:
    times = iter([10.0, 9.5, 12.0])  # the second event's clock reads earlier than the first
    recorder = TimelineRecorder([Task("a"), Task("b")], clock=lambda: next(times))
    for task_id in ("a", "b", "a"):
        recorder(TaskStarted(task_id=task_id, agent="w", attempt=1))
    result = recorder.attach(RunResult({}, unfinished=["a", "b"]))
    assert [e.at_s for e in recorder.timeline().entries] == [0.0, 0.0, 2.0]
    assert RunResult.from_json(result.to_json()).timeline == result.timeline


def test_the_first_event_reads_the_clock_under_the_lock() -> None:
    recorder = TimelineRecorder([Task("a")])
    held: list[bool] = []

    def clock() -> float:
        held.append(recorder._lock.locked())  # what this test is about
        return 1.0

    recorder._clock = clock
    recorder(TaskStarted(task_id="a", agent="w", attempt=1))
    assert held == [True]


@pytest.mark.parametrize(
    "field",
    [{"at_s": -0.05}, {"at_s": math.inf}, {"delay_s": -1.0}, {"attempt": -1}, {"attempt": 2**63}],
)
def test_a_timeline_entry_the_reader_would_refuse_cannot_be_made(field: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(field))):
        TimelineEntry(**{"at_s": 0.0, "kind": "started", "subject": "a", **field})  # type: ignore[arg-type]


def test_a_bad_timeline_in_a_file_drops_only_the_timeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(article().to_json())
    data["timeline"]["entries"][0]["at_s"] = -0.05
    source, page = tmp_path / "r.json", tmp_path / "r.html"
    source.write_text(json.dumps(data), encoding="utf-8")
    assert main(["report", str(source), "-o", str(page)]) == 0
    assert "no timeline: The recorded timeline could not be read" in capsys.readouterr().out
    html = page.read_text(encoding="utf-8")
    assert "timeline.entries[0].at_s: must be a finite number &gt;= 0" in html
    assert "data-failed='fact_check'" in html
    data["tasks"][0]["attempts"] = -1  # the tasks are still read strictly
    source.write_text(json.dumps(data), encoding="utf-8")
    assert main(["report", str(source), "-o", str(page)]) == 2
    assert "tasks[0].attempts" in capsys.readouterr().err


# ---------------------------------------------------------------- runs from the store


def _store_with_a_run(tmp_path: Path, pid: int) -> Path:
    db = tmp_path / "runs.db"
    info = RunInfo(
        "run-1", str(EXAMPLES / "article.toml"), "t", 0.0, host=socket.gethostname(), pid=pid
    )
    with Checkpoint(db) as store:
        store.begin(info, ["research", "draft", "translate", "publish"], [])
        store.record("run-1", [TaskResult("research", TaskState.DONE, agent="w", output="x")])
    return db


def test_a_killed_run_is_reported_as_killed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    db, page = _store_with_a_run(tmp_path, child.pid), tmp_path / "r.html"
    assert main(["report", "last", "--checkpoint", str(db), "-o", str(page)]) == 0
    out = capsys.readouterr().out
    assert f"report of run run-1 in {db}: 4 task(s)" in out
    assert "killed" in out
    html = page.read_text(encoding="utf-8")
    assert "The run was killed before it finished" in html
    assert "without a TimelineRecorder" not in html
    assert "The run did not finish: 3 task(s) never finished (killed" in html
    assert "The task graph (each task's dependencies) was not recorded" not in html  # the file's


def test_a_running_run_is_reported_as_not_finished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, page = _store_with_a_run(tmp_path, os.getpid()), tmp_path / "r.html"
    assert main(["report", "last", "--checkpoint", str(db), "-o", str(page)]) == 0
    assert "still running" in capsys.readouterr().out
    assert "The run had not finished when this report was written" in page.read_text(
        encoding="utf-8"
    )


def test_a_file_named_like_a_run_id_does_not_hide_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = _store_with_a_run(tmp_path, os.getpid())
    Path("last").write_text("notes\n", encoding="utf-8")
    assert main(["report", "last", "--checkpoint", str(db), "-o", "x.html"]) == 0
    assert "report of run run-1 in" in capsys.readouterr().out
    Path("mine").write_text(article().to_json(), encoding="utf-8")  # not a run id: the file
    assert main(["report", "mine", "--checkpoint", str(db), "-o", "y.html"]) == 0
    assert "report of mine: 4 task(s)" in capsys.readouterr().out
    assert main(["report", "nope", "--checkpoint", str(db), "-o", "z.html"]) == 2
    assert "nope" in capsys.readouterr().err


# ---------------------------------------------------------------- dot


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in {"Z", "X"}  # a zombie waiting for init to reap it is gone too


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_dot_timeout_kills_what_a_wrapper_dot_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    pidfile = tmp_path / "child.pid"
    dot = folder / "dot"
    dot.write_text(
        f"#!/bin/sh\n{shutil.which('sleep')} 600 &\necho $! > {pidfile}\nwait\n", encoding="utf-8"
    )
    dot.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    with pytest.raises(GraphvizError, match="did not finish"):
        render_graph([Task("a")], timeout_s=0.5)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)  # SIGKILL is delivered asynchronously
    assert _gone(child)


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz")
def test_a_very_long_id_is_cut_in_its_box_and_still_drawn() -> None:
    task_id = '"' * 3000 + "x" * 20_000
    svg = render_graph([Task(task_id), Task("b", depends_on=[task_id])]).decode("utf-8")
    assert "&quot;" * 79 + "…" in svg
    assert "x" * 100 not in svg


# ---------------------------------------------------------------- aegis graph to a full disk


class _FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("fmt", ["text", "mermaid"])
def test_graph_to_a_full_stdout_is_one_line_and_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    with capsys.disabled():
        monkeypatch.setattr(sys, "stdout", _FullDisk())
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        status = main(["graph", str(EXAMPLES / "article.toml"), "--format", fmt])
    assert status == 3
    assert err.getvalue() == (
        "aegis: error: cannot write the graph to standard output: No space left on device\n"
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_graph_to_a_full_output_file_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["graph", str(EXAMPLES / "article.toml"), "--format", "text", "-o", "/dev/full"])
    assert status == 3
    assert capsys.readouterr().err.startswith("aegis: error: /dev/full: cannot write the graph:")


# ---------------------------------------------------------------- small input gaps


@pytest.mark.parametrize(
    ("unfinished", "message"),
    [
        (["a", "a"], "unfinished[1]: 'a' appears more than once"),
        (["done"], "unfinished[0]: 'done' is a finished task"),
    ],
)
def test_unfinished_ids_are_each_a_task_that_did_not_finish(
    unfinished: list[str], message: str
) -> None:
    data = {"format": 1, "tasks": [{"task_id": "done", "status": "done"}], "unfinished": unfinished}
    with pytest.raises(ResultFormatError, match=re.escape(message)):
        RunResult.from_json(json.dumps(data))


def test_a_huge_price_is_shown_not_as_inf() -> None:
    result = article()
    assert result.timeline is not None
    prices = {"gpt-4o-mini": Price(1e308, 1e308)}
    page = render_report(
        attrs.evolve(result, timeline=attrs.evolve(result.timeline, prices=prices))
    )
    assert "$inf" not in page
    assert "over $1.8e308" in page
    page = render_report(article(), prices={"gpt-4o-mini": Price(1e12, 1e12)})
    assert "$3e+08" in page  # 300 tokens at a million million dollars per million


def test_a_bad_stored_timeline_drops_only_the_timeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, page = _store_with_a_run(tmp_path, os.getpid()), tmp_path / "r.html"
    bad = {"entries": [{"at_s": -1, "kind": "started", "subject": "research"}]}
    with sqlite3.connect(db) as connection:
        connection.execute("INSERT INTO aegis_timelines VALUES ('run-1', ?)", (json.dumps(bad),))
    connection.close()
    with Checkpoint(db) as store, pytest.raises(CheckpointError, match="timeline is unreadable"):
        store.load("run-1")  # the library still says so
    assert main(["report", "last", "--checkpoint", str(db), "-o", str(page)]) == 0
    assert "no timeline: The recorded timeline could not be read" in capsys.readouterr().out
    html = page.read_text(encoding="utf-8")
    assert "timeline.entries[0].at_s: must be a finite number &gt;= 0" in html
    assert "data-task='research' data-state='done'" in html
