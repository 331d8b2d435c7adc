"""file_read attack suite: traversal, absolute paths, symlinks, size, encodings, special files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aegis_gov._tools import (
    OutputTooLargeError,
    PathOutsideRootError,
    ToolError,
    ToolExecutionError,
    ToolRegistry,
)
from hypothesis import given
from hypothesis import strategies as st

SECRET = "TOP-SECRET-CONTENT"


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[ToolRegistry, Path]:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("hello", encoding="utf-8")
    (root / "sub" / "b.txt").write_text("nested", encoding="utf-8")
    (tmp_path / "secret.txt").write_text(SECRET, encoding="utf-8")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET, encoding="utf-8")
    (root / "link_out").symlink_to(tmp_path / "secret.txt")
    (root / "linkdir_out").symlink_to(outside, target_is_directory=True)
    (root / "link_in").symlink_to(root / "sub" / "b.txt")
    return ToolRegistry(root=root, max_output_bytes=100), tmp_path


def read(registry: ToolRegistry, path: str) -> str:
    return registry.call("file_read", {"path": path})


@pytest.mark.parametrize("path", ["a.txt", "./a.txt", "sub/b.txt", "sub/../a.txt", "link_in"])
def test_reads_files_inside_the_root(sandbox: tuple[ToolRegistry, Path], path: str) -> None:
    registry, _ = sandbox
    assert read(registry, path) in {"hello", "nested"}


def test_absolute_path_inside_the_root_is_allowed(sandbox: tuple[ToolRegistry, Path]) -> None:
    registry, tmp_path = sandbox
    assert read(registry, str(tmp_path / "root" / "a.txt")) == "hello"


@pytest.mark.parametrize(
    "path",
    [
        "../secret.txt",
        "sub/../../secret.txt",
        "./../outside/secret.txt",
        "link_out",
        "linkdir_out/secret.txt",
        "/etc/passwd",
        "//etc/passwd",
        "..",
        "a.txt\x00",
    ],
)
def test_escapes_are_refused_without_leaking(sandbox: tuple[ToolRegistry, Path], path: str) -> None:
    registry, _ = sandbox
    with pytest.raises(PathOutsideRootError) as info:
        read(registry, path)
    assert info.value.tool_name == "file_read"
    assert SECRET not in str(info.value)


def test_absolute_path_to_a_file_outside_is_refused(sandbox: tuple[ToolRegistry, Path]) -> None:
    registry, tmp_path = sandbox
    with pytest.raises(PathOutsideRootError):
        read(registry, str(tmp_path / "secret.txt"))


def test_symlink_target_is_not_disclosed(sandbox: tuple[ToolRegistry, Path]) -> None:
    registry, tmp_path = sandbox
    with pytest.raises(PathOutsideRootError) as info:
        read(registry, "link_out")
    assert str(tmp_path) not in str(info.value)


def test_root_given_through_a_symlink_still_works(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "f.txt").write_text("ok", encoding="utf-8")
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    registry = ToolRegistry(root=tmp_path / "alias")
    assert read(registry, "f.txt") == "ok"
    assert registry.root == real.resolve()


def test_oversized_file_is_refused_without_content(sandbox: tuple[ToolRegistry, Path]) -> None:
    registry, tmp_path = sandbox
    (tmp_path / "root" / "big.txt").write_text(SECRET * 50, encoding="utf-8")
    with pytest.raises(OutputTooLargeError) as info:
        read(registry, "big.txt")
    assert info.value.limit_bytes == 100
    assert SECRET not in str(info.value)


def test_non_utf8_is_reported_not_raised_raw(sandbox: tuple[ToolRegistry, Path]) -> None:
    registry, tmp_path = sandbox
    (tmp_path / "root" / "bin.dat").write_bytes(b"SECRET\xff\xfe")
    with pytest.raises(ToolExecutionError, match=r"not UTF-8.*offset 6") as info:
        read(registry, "bin.dat")
    assert "SECRET" not in str(info.value)
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_missing_file_and_directory_are_execution_errors(
    sandbox: tuple[ToolRegistry, Path],
) -> None:
    registry, _ = sandbox
    with pytest.raises(ToolExecutionError, match="no such file"):
        read(registry, "missing.txt")
    with pytest.raises(ToolExecutionError, match="not a regular file"):
        read(registry, "sub")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_instead_of_blocking(sandbox: tuple[ToolRegistry, Path]) -> None:
    registry, tmp_path = sandbox
    os.mkfifo(tmp_path / "root" / "pipe")
    with pytest.raises(ToolExecutionError, match="not a regular file"):
        read(registry, "pipe")


def test_symlink_loop_is_an_execution_error(sandbox: tuple[ToolRegistry, Path]) -> None:
    registry, tmp_path = sandbox
    (tmp_path / "root" / "loop1").symlink_to(tmp_path / "root" / "loop2")
    (tmp_path / "root" / "loop2").symlink_to(tmp_path / "root" / "loop1")
    with pytest.raises(ToolError):
        read(registry, "loop1")


@given(
    segments=st.lists(
        st.sampled_from(["..", ".", "sub", "a.txt", "link_out", "linkdir_out", "secret.txt", ""]),
        min_size=1,
        max_size=6,
    ),
    absolute=st.booleans(),
)
def test_no_path_ever_yields_the_secret(
    tmp_path_factory: pytest.TempPathFactory, segments: list[str], absolute: bool
) -> None:
    base = tmp_path_factory.getbasetemp() / "prop"
    if not base.exists():
        (base / "root" / "sub").mkdir(parents=True)
        (base / "root" / "a.txt").write_text("hello", encoding="utf-8")
        (base / "root" / "sub" / "a.txt").write_text("nested", encoding="utf-8")
        (base / "secret.txt").write_text(SECRET, encoding="utf-8")
        (base / "outside").mkdir()
        (base / "outside" / "secret.txt").write_text(SECRET, encoding="utf-8")
        (base / "root" / "link_out").symlink_to(base / "secret.txt")
        (base / "root" / "linkdir_out").symlink_to(base / "outside", target_is_directory=True)
    registry = ToolRegistry(root=base / "root", builtins=True)
    path = "/".join(segments)
    if absolute:
        path = str(base / "root") + "/" + path
    outcome = registry.try_call("file_read", {"path": path} if path else {"path": "."})
    assert SECRET not in outcome.output
    if not outcome.is_error:
        assert outcome.output in {"hello", "nested"}
