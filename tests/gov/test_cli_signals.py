"""SIGINT and SIGTERM stop ``aegis run`` and ``aegis demo`` cleanly and keep what finished.

Each test starts the real command in a subprocess. One agent answers at once; another talks
to a loopback Anthropic-compatible server that holds its answer until the test releases it,
so the test knows a call is in flight when it sends the signal. No fixed sleeps: the tests
wait for lines the command prints.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aegis_gov import RunResult, TaskState
from aegis_gov._cli import main
from aegis_gov._interrupt import Interrupts
from pytest_httpserver import HTTPServer

from tests.gov.fake_providers import serve_anthropic

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROOT = Path(__file__).parents[2]
WAIT_S = 60.0

PIPELINE = """
[retry]
max_attempts = 1

[[agents]]
name = "quick"
provider = "scripted"

[[agents]]
name = "held"
provider = "anthropic"
model = "claude-test"
base_url = "{base_url}"
api_key_env = "AEGIS_TEST_KEY"

[[tasks]]
id = "quick"
agent = "quick"

[[tasks]]
id = "held"
agent = "held"

[[tasks]]
id = "after"
agent = "quick"
depends_on = ["held"]
"""


class Running:
    """A running ``aegis`` subprocess whose output lines are read as they come."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env.update(AEGIS_TEST_KEY="sk-test", PYTHONIOENCODING="utf-8", OLLAMA_HOST="127.0.0.1:9")
        env.pop("TERM", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aegis_gov._cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=cwd,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._lines: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, "err"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: object, name: str) -> None:
        for line in stream:  # type: ignore[attr-defined]  # a text stream
            self._lines.put((name, line))
        self._lines.put((name, ""))

    def wait_for(self, text: str, stream: str = "out") -> None:
        """Block until a line of ``stream`` contains ``text`` (fail after a minute)."""
        seen = self.out if stream == "out" else self.err
        if any(text in line for line in seen):
            return
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                name, line = self._lines.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            (self.out if name == "out" else self.err).append(line)
            if name == stream and text in line:
                return
        pytest.fail(f"never saw {text!r}; stdout: {''.join(self.out)} stderr: {''.join(self.err)}")

    def finish(self) -> int:
        """Wait for the process to exit; return its status with every line read."""
        status = self.proc.wait(timeout=WAIT_S)
        for reader in self._readers:
            reader.join(timeout=WAIT_S)
        while not self._lines.empty():
            name, line = self._lines.get()
            (self.out if name == "out" else self.err).append(line)
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def held(httpserver: HTTPServer) -> Iterator[tuple[str, threading.Event, threading.Event]]:
    """(base URL, set when the held request arrived, set to let the server answer)."""
    arrived = threading.Event()
    release = threading.Event()

    def answer(body: dict[str, object]) -> str:
        arrived.set()
        release.wait(timeout=WAIT_S)
        return "held answer"

    serve_anthropic(httpserver, answer)
    try:
        yield httpserver.url_for("/").rstrip("/"), arrived, release
    finally:
        release.set()  # never leave the server thread blocked


def start_run(
    tmp_path: Path, base_url: str, arrived: threading.Event, *extra: str
) -> tuple[Running, Path]:
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(PIPELINE.format(base_url=base_url), encoding="utf-8")
    output = tmp_path / "out.json"
    running = Running(
        ["run", str(pipeline), "--plain", "--no-outputs", "--output", str(output), *extra],
        tmp_path,
    )
    running.wait_for("quick: done")
    assert arrived.wait(WAIT_S), "the held call never reached the server"
    return running, output


def read_result(output: Path) -> dict[str, object]:
    data = json.loads(output.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def statuses(data: dict[str, object]) -> dict[str, tuple[str, str | None]]:
    tasks = data["tasks"]
    assert isinstance(tasks, list)
    return {t["task_id"]: (t["status"], t["skip_reason"] or t["error_type"]) for t in tasks}


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_signal_lets_the_call_in_flight_finish_and_writes_the_partial_result(
    tmp_path: Path,
    held: tuple[str, threading.Event, threading.Event],
    signum: signal.Signals,
    status: int,
) -> None:
    base_url, arrived, release = held
    running, output = start_run(tmp_path, base_url, arrived)
    try:
        running.proc.send_signal(signum)
        running.wait_for("aegis: stopping", stream="err")
        release.set()  # the call in flight answers within the grace period
        assert running.finish() == status
    finally:
        running.kill()
    stderr = "".join(running.err)
    assert "Traceback" not in stderr
    data = read_result(output)
    assert data["cancelled"] is True
    assert statuses(data) == {
        "quick": ("done", None),
        "held": ("done", None),
        "after": ("skipped", "cancelled"),
    }
    assert f"result written to {output}" in "".join(running.out)


def test_second_signal_stops_at_once_and_still_writes_what_finished(
    tmp_path: Path, held: tuple[str, threading.Event, threading.Event]
) -> None:
    base_url, arrived, _release = held
    # A grace period far longer than the test may take: only the second signal can end it.
    running, output = start_run(tmp_path, base_url, arrived, "--cancel-grace", "600")
    try:
        running.proc.send_signal(signal.SIGINT)
        running.wait_for("aegis: stopping", stream="err")
        started = time.monotonic()
        running.proc.send_signal(signal.SIGINT)
        assert running.finish() == 130
        assert time.monotonic() - started < WAIT_S
    finally:
        running.kill()
    assert "Traceback" not in "".join(running.err)
    data = read_result(output)
    assert data["cancelled"] is True
    assert statuses(data) == {
        "quick": ("done", None),
        "held": ("failed", "RunCancelledTaskError"),
        "after": ("skipped", "cancelled"),
    }


def test_grace_period_ends_a_call_that_does_not_finish(
    tmp_path: Path, held: tuple[str, threading.Event, threading.Event]
) -> None:
    base_url, arrived, _release = held
    running, output = start_run(tmp_path, base_url, arrived, "--cancel-grace", "0.2")
    try:
        running.proc.send_signal(signal.SIGTERM)
        assert running.finish() == 143
    finally:
        running.kill()
    assert "Traceback" not in "".join(running.err)
    data = read_result(output)
    assert data["cancelled"] is True
    assert statuses(data)["held"] == ("failed", "RunCancelledTaskError")
    assert statuses(data)["quick"] == ("done", None)


def test_demo_keeps_what_finished_on_ctrl_c(tmp_path: Path) -> None:
    output = tmp_path / "demo.json"
    running = Running(
        ["demo", "--offline", "--plain", "--no-outputs", "--output", str(output)], tmp_path
    )
    try:
        # 'research' finishes after its 1 s Retry-After; 'draft', then 'translate' and
        # 'publish' (0.25 s each) are still to come when the signal arrives.
        running.wait_for("research: done")
        running.proc.send_signal(signal.SIGINT)
        assert running.finish() == 130
    finally:
        running.kill()
    assert "Traceback" not in "".join(running.err)
    data = read_result(output)
    assert data["cancelled"] is True
    done = {task for task, (state, _) in statuses(data).items() if state == "done"}
    assert "research" in done
    assert ("skipped", "cancelled") in statuses(data).values()


LOADING = """
import os, sys, time
import aegis_gov_cli

class SlowImport:
    # Holds the import of aegis_gov (a second or more on a busy machine) until signalled.
    def find_spec(self, name, path=None, target=None):
        if name == "aegis_gov":
            os.write(1, b"loading\\n")
            time.sleep(WAIT)
        return None

sys.meta_path.insert(0, SlowImport())
sys.argv = ["aegis", "demo", "--offline"]
aegis_gov_cli.main()
"""


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_packages_load_is_one_line(
    tmp_path: Path, signum: signal.Signals, status: int
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", LOADING.replace("WAIT", str(WAIT_S))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "loading\n"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status
    assert err == "aegis: interrupted\n"


def signal_self(signum: signal.Signals) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(WAIT_S)  # the handler raises before this ends


def test_interrupts_in_process() -> None:
    """The handler itself: graceful first signal, immediate second, deferred while writing."""
    assert Interrupts().exit_status is None
    interrupts = Interrupts()
    with interrupts.installed():
        interrupts.graceful("")
        os.kill(os.getpid(), signal.SIGTERM)
        assert interrupts.cancel.wait(WAIT_S)
        with pytest.raises(KeyboardInterrupt):
            signal_self(signal.SIGINT)
        interrupts.defer()
        os.kill(os.getpid(), signal.SIGINT)  # only noted now
    assert interrupts.exit_status == 143  # the first signal decides
    assert signal.getsignal(signal.SIGINT) is not interrupts._handle  # restored


def test_interrupts_outside_a_run_raise_at_once() -> None:
    interrupts = Interrupts()
    with interrupts.installed(), pytest.raises(KeyboardInterrupt):
        signal_self(signal.SIGINT)
    assert interrupts.exit_status == 130
    assert not interrupts.cancel.is_set()


def test_interrupts_do_nothing_outside_the_main_thread() -> None:
    interrupts = Interrupts()
    handler = signal.getsignal(signal.SIGINT)
    seen: list[object] = []

    def install() -> None:
        with interrupts.installed():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=install)
    thread.start()
    thread.join()
    assert seen == [handler]


def test_ctrl_c_in_process_keeps_the_result(
    tmp_path: Path,
    held: tuple[str, threading.Event, threading.Event],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base_url, arrived, release = held
    monkeypatch.setenv("AEGIS_TEST_KEY", "sk-test")
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(PIPELINE.format(base_url=base_url), encoding="utf-8")
    output = tmp_path / "out.json"

    def interrupt_once_the_call_is_in_flight() -> None:
        if arrived.wait(WAIT_S):
            os.kill(os.getpid(), signal.SIGINT)
        release.set()

    helper = threading.Thread(target=interrupt_once_the_call_is_in_flight)
    helper.start()
    try:
        status = main(["run", str(pipeline), "--plain", "--output", str(output)])
    finally:
        helper.join()
    assert status == 130
    assert "Traceback" not in capsys.readouterr().err
    result = RunResult.from_json(output.read_bytes())
    assert result["quick"].status is TaskState.DONE
