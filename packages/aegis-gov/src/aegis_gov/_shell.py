# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The ``shell`` built-in: an allowlisted command, no shell, inside a bubblewrap sandbox.

How it is confined, and its known limits as a library that runs in the caller's process:

``shell`` has two layers. The first is the allowlist of program names and the refusal of
shell syntax; it cannot stop an allowed program from running others (``env``, ``xargs``,
``git -c core.fsmonitor=...``, ``find -fprint``), so it is not the boundary. The boundary is a
bubblewrap sandbox around every command (``bwrap_argv``): new namespaces (no network unless
``shell_allow_network``), no capabilities, a fresh ``/proc``, a clean environment (bwrap itself
is started with it, since its init stays in the sandbox as PID 1), only the system directories
and a short list of ``/etc`` files visible read-only, a private ``/tmp``, and the root the only
host directory that can be written. Home directories and every file outside the root are not
visible at all. Killing bwrap at the timeout ends its PID namespace, so nothing a command
started outlives it. Where bubblewrap is missing or cannot create namespaces (some containers),
``shell`` refuses with ``SandboxUnavailableError``; ``shell_sandbox="none-UNSAFE"`` runs
commands on the host instead, with the allowlist as the only barrier.
Not covered: CPU and memory (a command may use all of either until the timeout), the kernel's
own attack surface (no seccomp filter), and the root itself, which a command can read and
change whole (keep secrets out of it). Commands run as the calling user without
capabilities: run agents as an unprivileged user, since a command run by root could leave a
setuid-root file in the root.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from aegis_gov._sandbox import SANDBOX_NONE_UNSAFE, SandboxConfig
from aegis_gov._tool_errors import (
    CommandFailedError,
    CommandNotAllowedError,
    ForbiddenShellSyntaxError,
    OutputTooLargeError,
    SandboxUnavailableError,
    ShellDisabledError,
    ToolExecutionError,
    ToolTimeoutError,
)

__all__ = ["SANDBOX_PATH", "SHELL_METACHARACTERS", "bwrap_argv", "shell"]

# Characters a shell would interpret. We run without a shell, but refusing them means a command
# never *looks* like it does something it does not, and an allowlisted program that re-invokes a
# shell on its arguments gets nothing to inject.
SHELL_METACHARACTERS = frozenset(";|&$`<>(){}[]*?!~#\\\n\r\x00")
_READ_CHUNK = 16_384

# Directories a sandboxed program sees, read-only: the system's programs and libraries. Home
# directories, /root, /opt, /srv, /var, /run, /mnt and the rest of the host are not there at all,
# so a secret outside the root (a .env, ~/.aws/credentials, an SSH key) cannot even be read.
_SANDBOX_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# From /etc, only the world-readable files programs need to start, find users, time zones,
# certificates and (with network) names. Never shadow, sudoers, ssh keys or system gitconfig.
_SANDBOX_ETC_ENTRIES = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "gai.conf",
    "group",
    "host.conf",
    "hostname",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "magic",
    "mime.types",
    "nsswitch.conf",
    "passwd",
    "protocols",
    "resolv.conf",
    "services",
    "ssl/certs",  # not ssl/private: its keys are readable to root, who may run us
    "ssl/openssl.cnf",
    "timezone",
)
# Kernel knobs a fresh /proc exposes read-write to a process that is root outside: a sandbox
# started by root could otherwise change host-wide settings (/proc/sys/kernel/core_pattern
# would even run a program as root). Bound read-only over themselves.
_PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap; Linux only), or, only if every command the model may choose is harmless on "
    "this machine, build the registry with shell_sandbox='none-UNSAFE'"
)
_probed_ok: set[str] = set()
_probe_lock = threading.Lock()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        if sys.platform != "win32":
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass


def _host_path_search() -> str:
    return os.pathsep.join(
        entry
        for entry in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if Path(entry).is_absolute()
    )


def _resolve_executable(name: str, search: str) -> str | None:
    return shutil.which(name, path=search)


def bwrap_argv(config: SandboxConfig, bwrap: str) -> list[str]:
    """The bubblewrap command line (up to ``--``) that confines one command to *config*'s root.

    New user, PID, IPC, UTS, mount, cgroup and network namespaces (the network only when
    ``shell_allow_network``), no capabilities, its own session (no terminal injection), killed
    with its parent; a fresh ``/proc`` that shows only the sandbox's processes, a minimal
    ``/dev``, a private ``/tmp``; the system directories and a few ``/etc`` files read-only, the
    root read-write at its own path as the working directory, everything else absent; and a
    clean environment.
    """
    root = str(config.root)
    argv = [bwrap, "--unshare-all"]
    if config.shell_allow_network:
        argv.append("--share-net")
    argv += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]
    for name, value in _sandbox_env(config).items():
        argv += ["--setenv", name, value]
    for directory in map(Path, _SANDBOX_SYSTEM_DIRS):
        if directory.is_symlink():  # /bin -> usr/bin on merged-/usr systems
            argv += ["--symlink", str(directory.readlink()), str(directory)]
        elif directory.is_dir():
            argv += ["--ro-bind", str(directory), str(directory)]
    for entry in _SANDBOX_ETC_ENTRIES:
        argv += ["--ro-bind-try", f"/etc/{entry}", f"/etc/{entry}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108  # private
    for knob in _PROC_READ_ONLY:
        argv += ["--ro-bind-try", knob, knob]
    # After /tmp, so a root below /tmp is bound over the fresh tmpfs; then everything but the
    # root and /tmp is made read-only, the directories bubblewrap created included.
    argv += ["--bind", root, root, "--remount-ro", "/", "--chdir", root]
    return argv


def _sandbox_env(config: SandboxConfig) -> dict[str, str]:
    return {
        "PATH": SANDBOX_PATH,
        "LANG": "C.UTF-8",
        "HOME": str(config.root),
        "TMPDIR": "/tmp",  # noqa: S108  # the sandbox's private tmpfs
    }


def _find_bwrap() -> str:
    """Return a bubblewrap that can create a sandbox here, or raise SandboxUnavailableError."""
    found = shutil.which("bwrap", path=_host_path_search())
    if found is None:
        raise SandboxUnavailableError(
            f"the shell tool runs commands only inside a sandbox, and bubblewrap (bwrap) was "
            f"not found on PATH: {_INSTALL_HINT}",
            tool_name="shell",
        )
    return found


def _probe(config: SandboxConfig, bwrap: str) -> None:
    """Check once per (bwrap, network setting) that the sandbox starts; successes are cached."""
    key = f"{bwrap}\x00{config.shell_allow_network}"
    with _probe_lock:
        if key in _probed_ok:
            return
    true = _resolve_executable("true", SANDBOX_PATH) or "/bin/true"
    try:
        probe = subprocess.run(  # noqa: S603  # fixed argv, no shell
            [*bwrap_argv(config, bwrap), "--", true],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=_sandbox_env(config),
            timeout=max(config.shell_timeout_s, 10.0),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailableError(
            f"bubblewrap at {bwrap!r} could not be started ({exc}): {_INSTALL_HINT}",
            tool_name="shell",
        ) from exc
    if probe.returncode != 0:
        detail = probe.stderr.decode("utf-8", errors="replace").strip()[-300:]
        raise SandboxUnavailableError(
            f"bubblewrap at {bwrap!r} cannot create a sandbox here ({detail or 'no message'}); "
            "it needs unprivileged user namespaces or to run as root (in a container: allow "
            f"namespaces, e.g. a seccomp profile that permits them): {_INSTALL_HINT}",
            tool_name="shell",
        )
    with _probe_lock:
        _probed_ok.add(key)


def shell(config: SandboxConfig, command: str) -> str:
    """Run *command* as an argv (no shell) if its executable is allowlisted; return its output.

    Two layers: the program allowlist, then (unless ``shell_sandbox="none-UNSAFE"``) a
    bubblewrap sandbox around the process and everything it starts (see ``bwrap_argv``).
    """
    tool = "shell"
    if not config.shell_allowlist:
        raise ShellDisabledError(
            "the shell tool is disabled (no shell_allowlist was given)", tool_name=tool
        )
    found = sorted(set(command) & SHELL_METACHARACTERS)
    if found:
        shown = " ".join(repr(c) for c in found)
        raise ForbiddenShellSyntaxError(
            f"command contains shell metacharacters ({shown}); commands run without a shell",
            tool_name=tool,
            characters="".join(found),
        )
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ForbiddenShellSyntaxError(
            f"command does not parse: {exc}", tool_name=tool, characters=""
        ) from exc
    if not argv:
        raise ForbiddenShellSyntaxError("command is empty", tool_name=tool, characters="")
    executable = argv[0]
    if executable not in config.shell_allowlist:
        raise CommandNotAllowedError(
            f"executable {executable!r} is not in the allowlist "
            f"({', '.join(sorted(config.shell_allowlist))})",
            tool_name=tool,
            executable=executable,
        )
    if config.shell_sandbox == SANDBOX_NONE_UNSAFE:
        path = _resolve_executable(executable, _host_path_search())
        if path is None:
            raise ToolExecutionError(
                f"executable {executable!r} was not found on PATH", tool_name=tool
            )
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"}
        env["HOME"] = str(config.root)
        return _run(config, [path, *argv[1:]], executable, env)
    bwrap = _find_bwrap()
    _probe(config, bwrap)
    # Only the system directories exist in the sandbox: look the program up there.
    path = _resolve_executable(executable, SANDBOX_PATH)
    if path is None:
        raise ToolExecutionError(
            f"executable {executable!r} was not found in the sandbox's PATH ({SANDBOX_PATH})",
            tool_name=tool,
        )
    # bwrap itself gets the clean environment too: its first process stays in the sandbox as
    # PID 1, and anything there can read /proc/1/environ.
    sandboxed = [*bwrap_argv(config, bwrap), "--", path, *argv[1:]]
    return _run(config, sandboxed, executable, _sandbox_env(config))


def _run(config: SandboxConfig, argv: list[str], executable: str, env: dict[str, str]) -> str:
    tool = "shell"
    cap = config.max_output_bytes
    try:
        process = subprocess.Popen(  # noqa: S603  # argv, no shell, allowlisted executable
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=config.root,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise ToolExecutionError(
            f"cannot start {executable!r}: {exc.strerror}", tool_name=tool
        ) from exc
    output = bytearray()
    overflow = threading.Event()

    stdout = process.stdout
    assert stdout is not None  # noqa: S101  # stdout=PIPE above

    def pump() -> None:
        while chunk := os.read(stdout.fileno(), _READ_CHUNK):
            if len(output) + len(chunk) > cap:
                overflow.set()
                _kill_group(process)
                return
            output.extend(chunk)

    # Killing the process group reaches bwrap, whose sandbox init dies with it
    # (--die-with-parent); the kernel then kills every process left in the PID namespace,
    # including those that called setsid. Unsandboxed, a process that left the group survives.
    reader = threading.Thread(target=pump, name="aegis-shell-output", daemon=True)
    reader.start()
    try:
        try:
            returncode = process.wait(timeout=config.shell_timeout_s)
        except subprocess.TimeoutExpired as exc:
            _kill_group(process)
            process.wait()
            reader.join()
            raise ToolTimeoutError(
                f"{executable!r} ran longer than {config.shell_timeout_s} s and was killed",
                tool_name=tool,
                timeout_s=config.shell_timeout_s,
            ) from exc
        # A grandchild may still hold the pipe open after the child exited: kill the group.
        reader.join(timeout=config.shell_timeout_s)
        if reader.is_alive():
            _kill_group(process)
            reader.join()
    finally:
        stdout.close()
    if overflow.is_set():
        raise OutputTooLargeError(
            f"output of {executable!r} passed the {cap}-byte cap; the command was killed",
            tool_name=tool,
            limit_bytes=cap,
        )
    text = output.decode("utf-8", errors="replace")
    if returncode != 0:
        raise CommandFailedError(
            f"{executable!r} exited with status {returncode}: {text[-1000:]}",
            tool_name=tool,
            returncode=returncode,
            output=text,
        )
    return text
