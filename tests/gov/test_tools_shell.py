"""shell attack suite: disabled by default, allowlist, metacharacters, timeout, output cap."""

from __future__ import annotations

from pathlib import Path

import pytest
from aegis_gov import (
    CommandFailedError,
    CommandNotAllowedError,
    ForbiddenShellSyntaxError,
    OutputTooLargeError,
    ShellDisabledError,
    ToolRegistry,
    ToolTimeoutError,
)

ALLOW = ["echo", "pwd", "env", "false", "ls", "yes", "sleep", "cat"]


@pytest.fixture
def registry(tmp_path: Path) -> ToolRegistry:
    return ToolRegistry(root=tmp_path, shell_allowlist=ALLOW, max_output_bytes=1000)


def run(registry: ToolRegistry, command: str) -> str:
    return registry.call("shell", {"command": command})


def test_shell_is_disabled_without_an_allowlist(tmp_path: Path) -> None:
    with pytest.raises(ShellDisabledError, match="disabled"):
        ToolRegistry(root=tmp_path).call("shell", {"command": "echo hi"})


def test_runs_an_allowlisted_command_with_quoting(registry: ToolRegistry) -> None:
    assert run(registry, "echo 'a  b' \"c d\"") == "a  b c d\n"


def test_runs_in_the_root(registry: ToolRegistry, tmp_path: Path) -> None:
    assert run(registry, "pwd").strip() == str(tmp_path.resolve())


def test_environment_is_minimal(registry: ToolRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEGIS_TEST_SECRET_KEY", "sk-live-123")
    output = run(registry, "env")
    assert "sk-live-123" not in output
    assert "PATH=" in output


@pytest.mark.parametrize(
    "command",
    [
        "echo hi; touch pwned",
        "echo hi && touch pwned",
        "echo hi || touch pwned",
        "echo hi | cat",
        "echo hi > pwned",
        "cat < /etc/passwd",
        "echo $(touch pwned)",
        "echo `touch pwned`",
        "echo ${HOME}",
        "echo $HOME",
        "echo hi & touch pwned",
        "echo hi\ntouch pwned",
        "echo *",
        "echo ~",
        "echo a\\;b",
    ],
)
def test_shell_metacharacters_are_refused(
    registry: ToolRegistry, tmp_path: Path, command: str
) -> None:
    with pytest.raises(ForbiddenShellSyntaxError, match="metacharacters") as info:
        run(registry, command)
    assert info.value.characters
    assert not (tmp_path / "pwned").exists()


def test_unparseable_and_empty_commands_are_refused(registry: ToolRegistry) -> None:
    with pytest.raises(ForbiddenShellSyntaxError, match="does not parse"):
        run(registry, "echo 'unterminated")
    with pytest.raises(ForbiddenShellSyntaxError, match="empty"):
        run(registry, "   ")


@pytest.mark.parametrize(
    ("command", "executable"),
    [
        ("rm -rf /", "rm"),
        ("/bin/echo hi", "/bin/echo"),
        ("./echo hi", "./echo"),
        ("sh -c 'echo hi'", "sh"),
        ("python3 -V", "python3"),
        ("ECHO hi", "ECHO"),
    ],
)
def test_executables_outside_the_allowlist_are_refused(
    registry: ToolRegistry, command: str, executable: str
) -> None:
    with pytest.raises(CommandNotAllowedError) as info:
        run(registry, command)
    assert info.value.executable == executable


def test_allowlist_entries_must_be_bare_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bare executable name"):
        ToolRegistry(root=tmp_path, shell_allowlist=["/bin/ls"])


def test_non_zero_exit_is_an_execution_error_with_output(registry: ToolRegistry) -> None:
    with pytest.raises(CommandFailedError) as info:
        run(registry, "false")
    assert info.value.returncode == 1
    with pytest.raises(CommandFailedError) as listing:
        run(registry, "ls does-not-exist")
    assert "does-not-exist" in listing.value.output


def test_oversized_output_is_killed_and_refused(registry: ToolRegistry) -> None:
    with pytest.raises(OutputTooLargeError) as info:
        run(registry, "yes SECRETLINE")
    assert info.value.limit_bytes == 1000
    assert "SECRETLINE" not in str(info.value)


def test_timeout_kills_the_command(tmp_path: Path) -> None:
    registry = ToolRegistry(root=tmp_path, shell_allowlist=["sleep"], shell_timeout_s=0.2)
    with pytest.raises(ToolTimeoutError) as info:
        run(registry, "sleep 30")
    assert info.value.timeout_s == 0.2
    assert isinstance(info.value, TimeoutError)
    assert registry.call("memory_store", {"key": "still", "value": "usable"})
