"""The aegis command on hostile input: one line and exit 2, never a traceback or a hang."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aegis_gov._cli import main

MINIMAL = '[[agents]]\nname = "a"\nprovider = "echo"\n[[tasks]]\nid = "t"\n'
SCRIPTED_WITH_DATE = """
[[agents]]
name = "a"
provider = "scripted"
tools = ["memory_store"]
replies = [
    { tool_calls = [
        { name = "memory_store", arguments = { key = "k", value = 1979-05-27T07:32:00Z } },
    ] },
    "done",
]
[[tasks]]
id = "t"
"""


def aegis(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aegis_gov._cli", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        cwd=cwd,
    )


def test_version_names_every_package(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{name} {importlib.metadata.version(name)}"
        for name in ("aegis-gov", "aegis-graph", "aegis-breaker", "aegis-adapters")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-concurrent", "1025"], "must be at most 1024"),
        (["--max-concurrent", "99999999999999999999"], "must be at most 1024"),
        (["--cancel-grace", "nan"], "must be from 0 to 3600 seconds"),
        (["--cancel-grace", "-1"], "must be from 0 to 3600 seconds"),
        (["--cancel-grace", "soon"], "expected a number of seconds"),
    ],
)
def test_numbers_on_the_command_line_are_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(MINIMAL, encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        main(["run", str(pipeline), *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_toml_date_in_tool_arguments_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It used to run, then crash with a traceback when the result was written as JSON.
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(SCRIPTED_WITH_DATE, encoding="utf-8")
    status = main(["run", str(pipeline), "--output", str(tmp_path / "out.json")])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "tool_calls[0]: 'arguments': the TOML date/time 1979-05-27T07:32:00+00:00" in (
        captured.err
    )
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(
    "text",
    [
        "[retry]\nmax_attempts = inf\n" + MINIMAL,
        "max_concurrent = 99999999999999999999\n" + MINIMAL,
        "max_concurrent = 9223372036854775807\n" + MINIMAL,
        "max_concurrent = 100000000\n" + MINIMAL,
        "x = " + "[" * 2000 + "]" * 2000 + "\n" + MINIMAL,
        MINIMAL.replace('provider = "echo"', 'provider = "echo"\ndelay_s = nan'),
    ],
)
def test_bad_numbers_and_nesting_are_one_line_in_a_subprocess(tmp_path: Path, text: str) -> None:
    (tmp_path / "p.toml").write_text(text, encoding="utf-8")
    proc = aegis("run", "p.toml", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("aegis: error: p.toml: ")
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_as_the_pipeline_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p.toml")
    proc = aegis("graph", "p.toml", cwd=tmp_path)  # the 60 s timeout fails a hang
    assert proc.returncode == 2
    assert proc.stderr == (
        "aegis: error: p.toml: cannot read the file: "
        "not a regular file (a FIFO, socket or device)\n"
    )


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_dev_zero_as_the_pipeline_is_refused(tmp_path: Path) -> None:
    proc = aegis("run", "/dev/zero", cwd=tmp_path)
    assert proc.returncode == 2
    assert "not a regular file" in proc.stderr
