"""``aegis run`` checkpoints by default; ``--resume`` takes a run id; ``aegis runs`` looks back."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from aegis_gov import Checkpoint, RunResult
from aegis_gov._cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _pipeline(tmp_path: Path, description: str = "write it") -> Path:
    path = tmp_path / "p.toml"
    path.write_text(
        '[[agents]]\nname = "a"\nprovider = "echo"\n'
        '[[tasks]]\nid = "first"\ndescription = "look it up"\nagent = "a"\n'
        f'[[tasks]]\nid = "second"\ndescription = "{description}"\nagent = "a"\n'
        'depends_on = ["first"]\n',
        encoding="utf-8",
    )
    return path


def test_the_default_store_lives_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AEGIS_CHECKPOINT")
    assert main(["run", str(_pipeline(tmp_path)), "--plain"]) == 0
    out = capsys.readouterr().out
    store = tmp_path / ".aegis" / "runs.db"
    assert f"checkpointed in {Path('.aegis') / 'runs.db'}" in out
    assert (tmp_path / ".aegis" / ".gitignore").read_text(encoding="utf-8").endswith("*\n")
    with Checkpoint(store) as opened:
        [run] = opened.runs()
        assert dict(run.counts) == {"done": 2}
    assert main(["runs"]) == 0
    assert run.run_id in capsys.readouterr().out
    # --no-checkpoint leaves the store alone.
    assert main(["run", str(_pipeline(tmp_path)), "--plain", "--no-checkpoint"]) == 0
    with Checkpoint(store) as opened:
        assert len(opened.runs()) == 1


def test_resume_by_id_or_last_explains_the_plan_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "runs.db")
    assert main(["run", str(_pipeline(tmp_path)), "--plain", "--checkpoint", store]) == 0
    with Checkpoint(store) as opened:
        first = opened.runs()[0].run_id
    capsys.readouterr()
    edited = _pipeline(tmp_path, "write it again")
    assert main(["run", str(edited), "--plain", "--checkpoint", store, "--resume", first]) == 0
    out = capsys.readouterr().out
    plan, _, run_log = out.partition("second: started")
    assert f"resuming {first}: keeping 1, running 1, dropping 0 task(s)" in plan
    assert "keep first: unchanged" in plan
    assert "run  second: its description changed" in plan
    assert "first: started" not in out
    assert run_log  # the plan came before the run
    assert main(["run", str(edited), "--plain", "--checkpoint", store, "--resume", "last"]) == 0
    assert "keeping 2, running 0" in capsys.readouterr().out


def test_runs_show_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "runs.db")
    assert main(["run", str(_pipeline(tmp_path)), "--plain", "--checkpoint", store]) == 0
    capsys.readouterr()
    assert main(["runs", "show", "last", "--checkpoint", store]) == 0
    shown = capsys.readouterr().out
    assert "2 done" in shown
    assert "first" in shown
    assert "done" in shown
    exported = tmp_path / "result.json"
    assert main(["runs", "export", "last", "--checkpoint", store, "--output", str(exported)]) == 0
    result = RunResult.from_json(exported.read_text(encoding="utf-8"))
    assert result.summary() == {"done": 2}
    assert result.run_id is not None
    assert f"run {result.run_id} written to" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "--checkpoint", "{missing}"], "no checkpoint store here"),
        (["runs", "show", "nope", "--checkpoint", "{store}"], "no run with id 'nope'"),
        (["runs", "show", "--checkpoint", "{store}"], "'aegis runs show' needs a run id"),
        (["runs", "export", "last", "--checkpoint", "{store}"], "needs --output FILE"),
        (["runs", "--checkpoint", "{garbage}"], "not an aegis checkpoint store"),
        (["run", "{pipeline}", "--checkpoint", "{garbage}"], "not an aegis checkpoint store"),
        (["run", "{pipeline}", "--checkpoint", "{store}", "--resume", "nope"], "no run with id"),
        (["run", "{pipeline}", "--checkpoint", "{newer}"], "written by a newer aegis"),
    ],
)
def test_checkpoint_mistakes_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    pipeline = _pipeline(tmp_path)
    store = tmp_path / "runs.db"
    assert main(["run", str(pipeline), "--plain", "--checkpoint", str(store)]) == 0
    garbage = tmp_path / "garbage.db"
    garbage.write_text("not sqlite at all " * 100, encoding="utf-8")
    newer = tmp_path / "newer.db"
    Checkpoint(newer).close()
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE aegis_meta SET value = '2' WHERE key = 'version'")
    paths = {
        "missing": str(tmp_path / "missing.db"),
        "store": str(store),
        "garbage": str(garbage),
        "pipeline": str(pipeline),
        "newer": str(newer),
    }
    capsys.readouterr()
    assert main([arg.format(**paths) if "{" in arg else arg for arg in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aegis: error: ")
    assert err.count("\n") == 1
    assert message in err


def test_a_json_resume_still_works_next_to_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.json"
    store = str(tmp_path / "runs.db")
    pipeline = str(_pipeline(tmp_path))
    assert main(["run", pipeline, "--plain", "--checkpoint", store, "--output", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["run_id"]
    capsys.readouterr()
    assert main(["run", pipeline, "--plain", "--checkpoint", store, "--resume", str(out)]) == 0
    assert "keeping 2, running 0" in capsys.readouterr().out


def test_resume_last_never_takes_another_directorys_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "shared.db")
    for name in ("A", "B"):
        (tmp_path / name).mkdir()
        _pipeline(tmp_path / name)
    monkeypatch.chdir(tmp_path / "A")
    assert main(["run", "p.toml", "--plain", "--checkpoint", store]) == 0
    monkeypatch.chdir(tmp_path / "B")
    capsys.readouterr()
    assert main(["run", "p.toml", "--plain", "--checkpoint", store, "--resume", "last"]) == 2
    assert "no run of p.toml to resume" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # the same file by another path is the same pipeline
    assert main(["run", "A/p.toml", "--plain", "--checkpoint", store, "--resume", "last"]) == 0
    assert "keeping 2, running 0" in capsys.readouterr().out


def test_a_store_that_refuses_the_run_is_one_line_and_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "runs.db"
    Checkpoint(store).close()
    with sqlite3.connect(store) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON aegis_runs "
            "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded (simulated)'); END"
        )
    assert main(["run", str(_pipeline(tmp_path)), "--plain", "--checkpoint", str(store)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert "disk quota exceeded (simulated)" in captured.err
    assert "started" not in captured.out


def test_a_store_that_fails_mid_run_is_reported_not_claimed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "runs.db"
    Checkpoint(store).close()
    with sqlite3.connect(store) as db:  # the run starts, then no task can be recorded
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON aegis_tasks "
            "BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END"
        )
    assert main(["run", str(_pipeline(tmp_path)), "--plain", "--checkpoint", str(store)]) == 0
    captured = capsys.readouterr()
    assert "checkpointed in" not in captured.out
    assert "is incomplete (0 of 2 tasks recorded)" in captured.err
