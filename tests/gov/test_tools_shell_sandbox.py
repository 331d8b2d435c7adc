"""shell runs inside a bubblewrap sandbox: the attacks an allowlist of program names cannot stop.

Each test lets the allowlist permit the program the attack needs (``cat``, ``git``, ``find``,
``env``, ``sh``...), so what is tested is the sandbox itself, the second layer. They need
bubblewrap and are skipped, with the install command, only where it is not installed.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aegis_gov import SandboxUnavailableError, ToolExecutionError, ToolRegistry, ToolTimeoutError
from aegis_gov._shell import SANDBOX_PATH

SECRET = "sk-live-SANDBOX-TEST-SECRET"

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None,
    reason="bubblewrap is not installed (apt-get install bubblewrap); nox installs it",
)


def in_sandbox_path(name: str) -> bool:
    return shutil.which(name, path=SANDBOX_PATH) is not None


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A root, and a sibling directory outside it holding a secret file."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / ".env").write_text(f"ANTHROPIC_API_KEY={SECRET}\n", encoding="utf-8")
    return root, outside


def sandboxed(root: Path, *allow: str, **options: object) -> ToolRegistry:
    return ToolRegistry(root=root, shell_allowlist=allow, **options)  # type: ignore[arg-type]


def attempt(registry: ToolRegistry, command: str) -> str:
    """Run *command*; whatever happens, return what the model would see."""
    return registry.try_call("shell", {"command": command}).output


@pytest.fixture
def process_with_secret() -> Iterator[int]:
    """A host process whose environment, from its start, holds the secret (like an API key)."""
    helper = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        env={**os.environ, "AEGIS_TEST_SECRET_KEY": SECRET},
    )
    try:
        yield helper.pid
    finally:
        assert helper.stdin is not None
        helper.stdin.close()
        helper.wait()


@needs_bwrap
def test_the_parents_environment_is_not_readable_through_proc(
    layout: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, process_with_secret: int
) -> None:
    root, _ = layout
    # Set in this process too, so a bwrap started with our environment would carry it into
    # the sandbox as its PID 1.
    monkeypatch.setenv("AEGIS_TEST_SECRET_KEY", SECRET)
    registry = sandboxed(root, "cat")
    for pid in (process_with_secret, os.getpid(), os.getppid(), 1, 2, 3):
        assert SECRET not in attempt(registry, f"cat /proc/{pid}/environ")
    assert SECRET not in attempt(registry, "cat /proc/self/environ")


@needs_bwrap
def test_files_outside_the_root_are_not_even_readable(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    registry = sandboxed(root, "cat", "ls")
    assert SECRET not in attempt(registry, f"cat {outside / '.env'}")
    home = Path.home()
    if not root.is_relative_to(home):
        listing = attempt(registry, f"ls -a {home}")
        assert "No such file" in listing


@needs_bwrap
@pytest.mark.skipif(not in_sandbox_path("git"), reason="git is not installed")
def test_git_fsmonitor_cannot_write_outside_the_root(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    target = outside / "pwned-by-git"
    registry = sandboxed(root, "git")
    attempt(registry, f"git -c core.fsmonitor='touch {target}' status")
    assert not target.exists()


@needs_bwrap
def test_find_fprint_cannot_write_outside_the_root(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    target = outside / "pwned-by-find"
    attempt(sandboxed(root, "find"), f"find . -maxdepth 0 -fprint {target}")
    assert not target.exists()


@needs_bwrap
@pytest.mark.parametrize(
    "launcher",
    ["env", "timeout 5", "nice", "setsid --wait", "sh -c", "xargs -a args.txt"],
)
def test_programs_launched_by_allowed_programs_stay_confined(
    layout: tuple[Path, Path], process_with_secret: int, launcher: str
) -> None:
    root, outside = layout
    target = outside / "pwned"
    (root / "args.txt").write_text(f"{target}\n", encoding="utf-8")
    registry = sandboxed(root, launcher.split(maxsplit=1)[0])
    write = f"touch {target}" if not launcher.startswith("xargs") else "touch"
    if launcher == "sh -c":
        write = f"'{write}'"
    attempt(registry, f"{launcher} {write}")
    assert not target.exists()
    if not launcher.startswith("xargs"):
        read = f"cat /proc/{process_with_secret}/environ {outside / '.env'}"
        if launcher == "sh -c":
            read = f"'{read}'"
        assert SECRET not in attempt(registry, f"{launcher} {read}")


def _processes_running(argument: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argument.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _wait_until_gone(argument: str, within_s: float) -> list[int]:
    deadline = time.monotonic() + within_s
    while (alive := _processes_running(argument)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@needs_bwrap
def test_the_timeout_kills_processes_that_left_the_session(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    registry = sandboxed(root, "setsid", shell_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(ToolTimeoutError):
        registry.call("shell", {"command": "setsid --wait sleep 12.25"})
    assert time.monotonic() - started < 8  # not 12 s: the sleep was killed
    assert _wait_until_gone("12.25", within_s=3) == []


@needs_bwrap
def test_background_processes_die_with_the_command(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    registry = sandboxed(root, "setsid", shell_timeout_s=1.0)
    started = time.monotonic()
    attempt(registry, "setsid sleep 12.5")  # setsid forks the sleep into a new session, exits
    assert time.monotonic() - started < 8
    assert _wait_until_gone("12.5", within_s=3) == []


PROBE = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
    print("CONNECTED")
except OSError as exc:
    print("REFUSED", exc)
"""


@needs_bwrap
@pytest.mark.skipif(not in_sandbox_path("python3"), reason="python3 is not in /usr/bin")
@pytest.mark.parametrize("allow_network", [False, True])
def test_network_is_off_unless_allowed(layout: tuple[Path, Path], allow_network: bool) -> None:
    root, _ = layout
    (root / "probe.py").write_text(PROBE, encoding="utf-8")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        registry = sandboxed(root, "python3", shell_allow_network=allow_network)
        output = attempt(registry, f"python3 probe.py {port}")
    assert ("CONNECTED" in output) is allow_network, output


@needs_bwrap
def test_only_the_root_and_a_private_tmp_are_writable(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    registry = sandboxed(root, "touch", "ls")
    assert registry.call("shell", {"command": "touch made-inside /tmp/scratch"}) == ""
    assert (root / "made-inside").exists()
    for path in ("/usr/pwned", "/pwned", "/etc/pwned"):
        assert "Read-only file system" in attempt(registry, f"touch {path}")
    assert "shadow" not in attempt(registry, "ls /etc")


def test_without_bubblewrap_the_shell_refuses_and_says_how_to_get_it(
    layout: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = layout
    monkeypatch.setenv("PATH", str(root))  # no bwrap there
    registry = sandboxed(root, "echo")
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap") as info:
        registry.call("shell", {"command": "echo hi"})
    assert "none-UNSAFE" in str(info.value)


def test_a_bubblewrap_that_cannot_sandbox_is_refused(
    layout: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, outside = layout
    fake = outside / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n",
        encoding="utf-8",
    )
    (fake / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    with pytest.raises(SandboxUnavailableError, match="No permissions to create new namespace"):
        sandboxed(root, "echo").call("shell", {"command": "echo hi"})


def test_the_unsafe_opt_out_runs_without_bubblewrap_and_says_so(
    layout: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root, _ = layout
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(shutil, "which", _which_without_bwrap)
    with caplog.at_level(logging.WARNING):
        registry = sandboxed(root, "echo", shell_sandbox="none-UNSAFE")
    assert "WITHOUT a sandbox" in caplog.text
    assert registry.call("shell", {"command": "echo hi"}) == "hi\n"


_real_which = shutil.which


def _which_without_bwrap(
    name: str, mode: int = os.F_OK | os.X_OK, path: str | None = None
) -> str | None:
    return None if name == "bwrap" else _real_which(name, mode, path)


def test_unknown_sandbox_kinds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shell_sandbox"):
        ToolRegistry(root=tmp_path, shell_sandbox="none")  # type: ignore[arg-type]


@needs_bwrap
def test_programs_outside_the_sandboxs_path_are_not_found(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with pytest.raises(ToolExecutionError, match="sandbox's PATH"):
        sandboxed(root, "aegis-no-such-program").call("shell", {"command": "aegis-no-such-program"})


def test_unsafe_mode_reports_a_missing_program(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    registry = sandboxed(root, "aegis-no-such-program", shell_sandbox="none-UNSAFE")
    with pytest.raises(ToolExecutionError, match="not found on PATH"):
        registry.call("shell", {"command": "aegis-no-such-program"})


def test_a_bubblewrap_that_cannot_start_is_refused(
    layout: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, outside = layout
    fake = outside / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/nonexistent/interpreter\n", encoding="utf-8")
    (fake / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    with pytest.raises(SandboxUnavailableError, match="could not be started"):
        sandboxed(root, "echo").call("shell", {"command": "echo hi"})


def test_the_model_is_told_what_the_sandbox_allows(tmp_path: Path) -> None:
    offline = ToolRegistry(root=tmp_path, shell_allowlist=["ls"]).get("shell").description
    assert "sandbox" in offline
    assert "no network" in offline
    online = ToolRegistry(root=tmp_path, shell_allowlist=["ls"], shell_allow_network=True)
    assert "network is reachable" in online.get("shell").description
    unsafe = ToolRegistry(root=tmp_path, shell_allowlist=["ls"], shell_sandbox="none-UNSAFE")
    assert "sandbox" not in unsafe.get("shell").description


@needs_bwrap
def test_kernel_settings_stay_read_only_even_for_root(layout: tuple[Path, Path]) -> None:
    # Started by root, a sandboxed program could write /proc/sys (host-wide sysctls, and
    # kernel/core_pattern runs a program as root). It writes back the value it read, so a
    # failure of this test changes nothing on the host.
    root, _outside = layout
    (root / "knob.py").write_text(
        "import os\n"
        "v = open('/proc/sys/kernel/printk_ratelimit').read()\n"
        "try:\n"
        "    open('/proc/sys/kernel/printk_ratelimit', 'w').write(v)\n"
        "    print('WRITABLE')\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
        "print('core_pattern writable:', os.access('/proc/sys/kernel/core_pattern', os.W_OK))\n"
        "print('ssl/private visible:', os.path.exists('/etc/ssl/private'))\n"
    )
    out = attempt(sandboxed(root, "python3"), "python3 knob.py")
    assert "WRITABLE" not in out
    assert "refused" in out
    assert "core_pattern writable: False" in out
    assert "ssl/private visible: False" in out
