"""``--output`` is checked before the run, replaced all at once, and never claims a failed write."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest
from aegis_gov import RunResult
from aegis_gov._cli import EXIT_OUTPUT_FAILED, main
from aegis_gov._files import AtomicOutput

OK_PIPELINE = '[[agents]]\nname = "a"\nprovider = "echo"\n[[tasks]]\nid = "t"\ndescription = "hi"\n'


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(OK_PIPELINE, encoding="utf-8")
    return path


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("aegis: error: ")
    return lines[0]


@pytest.mark.parametrize("where", ["missing/out.json", "."])
@pytest.mark.parametrize("command", ["run", "demo"])
def test_an_unwritable_output_path_stops_before_anything_runs(
    tmp_path: Path,
    pipeline: Path,
    capsys: pytest.CaptureFixture[str],
    where: str,
    command: str,
) -> None:
    target = tmp_path / where
    args = ["run", str(pipeline)] if command == "run" else ["demo", "--offline"]
    status = main([*args, "--plain", "--output", str(target)])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""  # nothing ran
    line = one_error_line(captured.err)
    assert f"{target}: cannot write the result there" in line


def test_a_failed_write_exits_non_zero_keeps_the_old_file_and_claims_nothing(
    tmp_path: Path,
    pipeline: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output = tmp_path / "out.json"
    assert main(["run", str(pipeline), "--output", str(output)]) == 0
    before = output.read_bytes()
    capsys.readouterr()

    def no_space(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    # Resume from the file and write over it: the case a truncating write used to destroy.
    status = main(["run", str(pipeline), "--resume", str(output), "--output", str(output)])
    captured = capsys.readouterr()
    assert status == EXIT_OUTPUT_FAILED
    assert "result written" not in captured.out
    line = one_error_line(captured.err)
    assert f"cannot write {output}: No space left on device" in line
    assert output.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "p.toml"]  # no temp file


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_device_that_fails_the_write_exits_non_zero(
    pipeline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["run", str(pipeline), "--output", "/dev/full"])
    captured = capsys.readouterr()
    assert status == EXIT_OUTPUT_FAILED
    assert "result written" not in captured.out
    assert "cannot write /dev/full" in one_error_line(captured.err)


def test_the_file_is_replaced_whole_with_its_permissions_kept(
    tmp_path: Path, pipeline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.json"
    output.write_text("old", encoding="utf-8")
    output.chmod(0o640)
    assert main(["run", str(pipeline), "--output", str(output)]) == 0
    assert f"result written to {output}" in capsys.readouterr().out
    assert RunResult.from_json(output.read_text(encoding="utf-8"))["t"].output == "hi"
    assert stat.S_IMODE(output.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "p.toml"]


def test_a_symlinked_output_replaces_the_file_it_points_to(
    tmp_path: Path, pipeline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "real.json"
    real.write_text("old", encoding="utf-8")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert main(["run", str(pipeline), "--output", str(link)]) == 0
    capsys.readouterr()
    assert link.is_symlink()
    assert json.loads(real.read_text(encoding="utf-8"))["summary"] == {"done": 1}


def test_a_lone_surrogate_in_an_output_is_written_as_its_json_escape(
    tmp_path: Path, pipeline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A resumed (or model-made) output with a lone surrogate cannot be UTF-8 encoded as is.
    previous = tmp_path / "prev.json"
    previous.write_text(
        '{"format": 1, "tasks": [{"task_id": "t", "status": "done", "output": "a\\ud800b"}]}',
        encoding="utf-8",
    )
    output = tmp_path / "out.json"
    status = main(["run", str(pipeline), "--resume", str(previous), "--output", str(output)])
    assert status == 0, capsys.readouterr().err
    assert "a\\ud800b" in capsys.readouterr().out
    assert RunResult.from_json(output.read_bytes())["t"].output == "a\ud800b"


def test_output_to_a_pipe_through_dev_stdout(pipeline: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "aegis_gov._cli", "run", str(pipeline), "--plain"),
            *("--no-outputs", "--output", "/dev/stdout"),
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"format": 1' in proc.stdout
    assert "result written to /dev/stdout" in proc.stdout


def test_a_streamed_write_that_fails_midway_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old", encoding="utf-8")

    def write(stream: IO[str]) -> None:
        stream.write("partial " * 10_000)  # more than the text buffer: some reached the file
        raise ValueError("a task with NaN")

    with AtomicOutput(target) as output, pytest.raises(ValueError, match="NaN"):
        output.commit_written(write)
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temp file left


def test_a_streamed_write_is_utf8_with_lone_surrogates_escaped(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with AtomicOutput(target) as output:
        output.commit_written(lambda stream: stream.write('"é\ud800"\n'))
    assert target.read_bytes() == '"é\\ud800"\n'.encode()
