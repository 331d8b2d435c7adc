"""``kill -9`` at many points of a checkpointed CLI run: resuming loses no finished task.

A loopback OpenAI-format server answers deterministically from the prompt, so a run that was
killed and resumed must end with exactly the outputs of a run that never was, and the resume
must not ask the server again for any task the store had recorded as finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aegis_gov import Checkpoint, RunResult
from aegis_gov._cli import main

from tests.gov.slow_openai import SlowOpenAIServer, slow_openai_server

TASKS = {  # a diamond, a chain and a fan-in: several tasks run at once at some points
    "t1": [],
    "t2": ["t1"],
    "t3": ["t1"],
    "t4": ["t2", "t3"],
    "t5": [],
    "t6": ["t5"],
    "t7": ["t4", "t6"],
    "t8": ["t7"],
}


def _answer(body: dict[str, object]) -> str:
    messages = body["messages"]
    assert isinstance(messages, list)
    prompt = str(messages[-1]["content"])
    return f"{prompt.splitlines()[0]} <- {len(prompt)} chars"


def _pipeline(tmp_path: Path, base_url: str) -> Path:
    lines = [
        'name = "kill"',
        "[[agents]]",
        'name = "w"',
        'provider = "openai"',
        'model = "m"',
        f'base_url = "{base_url}"',
        'api_key_env = "KILL_TEST_KEY"',
    ]
    for task_id, deps in TASKS.items():
        lines += ["[[tasks]]", f'id = "{task_id}"', f'description = "task {task_id}"']
        lines += ['agent = "w"', f"depends_on = {json.dumps(deps)}"]
    path = tmp_path / "kill.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _aegis(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["KILL_TEST_KEY"] = "sk-test"
    return subprocess.Popen(
        [sys.executable, "-m", "aegis_gov._cli", "run", *args, "--plain", "--max-concurrent", "2"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _asked(bodies: list[dict[str, object]]) -> list[str]:
    """The task ids the server was asked for (from each prompt's first line)."""
    asked = []
    for body in bodies:
        messages = body["messages"]
        assert isinstance(messages, list)
        asked.append(str(messages[-1]["content"]).splitlines()[0].removeprefix("task "))
    return asked


KILL_AFTER_S = (0.0, 0.3, 0.6, 0.9, 1.3)
"""Seconds after the run's first task started (a task takes 0.25 s on the server)."""


@pytest.mark.timeout(600)  # ten interpreter start-ups: slow on a loaded machine
def test_sigkill_then_resume_loses_no_finished_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    with slow_openai_server(0.25, _answer) as server:
        pipeline = _pipeline(tmp_path, server.base_url)
        # The run that is never interrupted, for the expected outputs.
        monkeypatch.setenv("KILL_TEST_KEY", "sk-test")
        clean = ["run", str(pipeline), "--plain", "--no-checkpoint", "--output", "clean.json"]
        monkeypatch.chdir(tmp_path)
        assert main(clean) == 0
        expected = RunResult.from_json((tmp_path / "clean.json").read_text("utf-8")).outputs
        assert set(expected) == set(TASKS)
        for number, kill_after_s in enumerate(KILL_AFTER_S):
            store = tmp_path / f"runs-{number}.db"
            seen.append(_kill_and_resume(server, pipeline, store, kill_after_s, expected))
    # The kills landed at different points, some of them in the middle of the run.
    assert any(0 < count < len(TASKS) for count in seen), seen


def _kill_and_resume(
    server: SlowOpenAIServer,
    pipeline: Path,
    store: Path,
    kill_after_s: float,
    expected: dict[str, str],
) -> int:
    cwd = pipeline.parent
    victim = _aegis(str(pipeline), "--checkpoint", str(store), cwd=cwd)
    assert victim.stdout is not None
    for line in victim.stdout:  # wait for the run itself, not the interpreter's start-up
        if ": started" in line:
            break
    time.sleep(kill_after_s)  # a real process killed at a real moment: nothing to inject
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)

    finished: set[str] = set()
    if store.exists():
        with Checkpoint(store) as opened:
            runs = opened.runs()
            if runs:
                assert len(runs) == 1
                killed = opened.load(runs[0].run_id)
                finished = {t for t, r in killed.items() if r.status.value == "done"}
                assert killed.unfinished == tuple(t for t in TASKS if t not in killed)
                # Whatever the store kept is what the server answered.
                assert {t: killed[t].output for t in finished} == {t: expected[t] for t in finished}
    before = len(server.bodies)
    resume = ["--resume", "last"] if finished else []
    again = _aegis(
        str(pipeline), "--checkpoint", str(store), *resume, "--output", "out.json", cwd=cwd
    )
    out = again.communicate(timeout=60)[0]
    assert again.returncode == 0, out
    asked = _asked(server.bodies[before:])
    assert not finished & set(asked), f"asked again for finished tasks: {asked}"
    assert sorted(asked) == sorted(set(TASKS) - finished)
    result = RunResult.from_json((cwd / "out.json").read_text("utf-8"))
    assert result.outputs == expected
    return len(finished)
