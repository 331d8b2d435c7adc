"""file_read attack suite: traversal, absolute paths, symlinks, size, encodings, special files."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aegis_gov import (
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


# ----------------------------------------------------------------- races and the component walk

FLIPPER = """
import ctypes, os, sys
directory, parked, outside = sys.argv[1:4]
os.symlink(outside, parked)
try:  # Linux: swap the two names atomically, so the directory is never missing
    renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    args = (AT_FDCWD, directory.encode(), AT_FDCWD, parked.encode(), RENAME_EXCHANGE)
    if renameat2(*args) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")
    while True:  # killed by the test
        renameat2(*args)
except (AttributeError, OSError):
    os.unlink(parked)
    while True:
        os.rename(directory, parked)
        os.symlink(outside, directory)
        os.unlink(directory)
        os.rename(parked, directory)
"""


def test_flipping_a_directory_to_a_symlink_never_leaks(tmp_path: Path) -> None:
    """Another process swaps root/d between a directory and a symlink to outside during reads."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.txt").write_text("inside", encoding="utf-8")
    outside.mkdir()
    (outside / "f.txt").write_text(SECRET, encoding="utf-8")
    registry = ToolRegistry(root=root)
    flipper = subprocess.Popen(
        [sys.executable, "-c", FLIPPER, str(root / "d"), str(root / "parked"), str(outside)]
    )
    outcomes: collections.Counter[str] = collections.Counter()
    try:
        for _ in range(20_000):
            output = registry.try_call("file_read", {"path": "d/f.txt"}).output
            outcomes["leak" if SECRET in output else output[:60]] += 1
    finally:
        flipper.kill()
        flipper.wait()
    assert outcomes["leak"] == 0, outcomes
    assert outcomes["inside"] > 0, outcomes  # the reads did overlap with both states


def test_a_symlink_swapped_in_after_the_check_is_refused(
    sandbox: tuple[ToolRegistry, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic version of the race: the swap happens between fstatat and open."""
    registry, tmp_path = sandbox
    real_stat = os.stat

    def stat_then_swap(name: str, *args: object, **kwargs: object) -> os.stat_result:
        result = real_stat(name, *args, **kwargs)  # type: ignore[arg-type]
        if name == "sub" and kwargs.get("dir_fd") is not None:
            (tmp_path / "root" / "sub").rename(tmp_path / "root" / "parked")
            (tmp_path / "root" / "sub").symlink_to(tmp_path / "outside")
        return result

    (tmp_path / "outside" / "b.txt").write_text(SECRET, encoding="utf-8")
    monkeypatch.setattr(os, "stat", stat_then_swap)
    with pytest.raises(PathOutsideRootError, match="changed while being opened") as info:
        read(registry, "sub/b.txt")
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("link", "target", "expected"),
    [
        ("rel_in", "sub/b.txt", "nested"),
        ("rel_up_in", "sub/../a.txt", "hello"),
        ("sub/rel_parent", "../a.txt", "hello"),
        ("abs_in", "ROOT/sub/b.txt", "nested"),
        ("dir_in", "sub", None),
    ],
)
def test_symlinks_that_stay_inside_are_followed(
    sandbox: tuple[ToolRegistry, Path], link: str, target: str, expected: str | None
) -> None:
    registry, tmp_path = sandbox
    root = tmp_path / "root"
    (root / link).symlink_to(target.replace("ROOT", str(root)))
    if expected is None:
        assert read(registry, f"{link}/b.txt") == "nested"
    else:
        assert read(registry, link) == expected


@pytest.mark.parametrize(
    "target",
    ["../../secret.txt", "../sub/../../secret.txt", "OUTSIDE/secret.txt", "/etc/passwd", "../.."],
)
def test_symlinks_that_lead_outside_are_refused(
    sandbox: tuple[ToolRegistry, Path], target: str
) -> None:
    registry, tmp_path = sandbox
    (tmp_path / "root" / "sub" / "escape").symlink_to(
        target.replace("OUTSIDE", str(tmp_path / "outside"))
    )
    with pytest.raises(PathOutsideRootError) as info:
        read(registry, "sub/escape")
    assert SECRET not in str(info.value)
    assert str(tmp_path) not in str(info.value)


def test_dot_dot_is_lexical_on_the_directories_opened(sandbox: tuple[ToolRegistry, Path]) -> None:
    """``linkdir/..`` is the directory holding the link, as in the walk, not the target's parent."""
    registry, tmp_path = sandbox
    root = tmp_path / "root"
    (root / "deep" / "er").mkdir(parents=True)
    (root / "to_deeper").symlink_to(root / "deep" / "er")
    (root / "deep" / "a.txt").write_text("deep", encoding="utf-8")
    assert read(registry, "to_deeper/../a.txt") == "deep"
    assert read(registry, "sub/../sub/../a.txt") == "hello"
    with pytest.raises(PathOutsideRootError):
        read(registry, "sub/../../root/a.txt")


def test_a_file_used_as_a_directory_is_an_execution_error(
    sandbox: tuple[ToolRegistry, Path],
) -> None:
    registry, _ = sandbox
    with pytest.raises(ToolExecutionError, match="not a directory"):
        read(registry, "a.txt/anything")


def test_device_files_are_refused_without_being_opened(
    sandbox: tuple[ToolRegistry, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, tmp_path = sandbox
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    (tmp_path / "root" / "zero").symlink_to("/dev/zero")  # outside: refused as such
    with pytest.raises(PathOutsideRootError):
        read(registry, "zero")
    opened: list[object] = []
    real_open = os.open

    def spy(path: object, *args: object, **kwargs: object) -> int:
        opened.append(path)
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", spy)
    registry_at_dev = ToolRegistry(root="/dev")
    with pytest.raises(ToolExecutionError, match="not a regular file"):
        read(registry_at_dev, "zero")
    assert "zero" not in opened


def test_hard_links_are_read_as_the_file_they_are(sandbox: tuple[ToolRegistry, Path]) -> None:
    """Documented, not refused: a hard link *is* the file; the sandboxed shell cannot make one
    to a file outside the root (links across mounts fail), but anyone else can."""
    registry, tmp_path = sandbox
    try:
        os.link(tmp_path / "secret.txt", tmp_path / "root" / "hard")
    except OSError:
        pytest.skip("hard links are not supported here")
    assert read(registry, "hard") == SECRET


def test_a_symlink_replaced_before_it_is_read_is_refused(
    sandbox: tuple[ToolRegistry, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, tmp_path = sandbox
    real_stat = os.stat

    def stat_then_replace(name: str, *args: object, **kwargs: object) -> os.stat_result:
        result = real_stat(name, *args, **kwargs)  # type: ignore[arg-type]
        if name == "link_in" and kwargs.get("dir_fd") is not None:
            (tmp_path / "root" / "link_in").unlink()
            (tmp_path / "root" / "link_in").write_text("now a file", encoding="utf-8")
        return result

    monkeypatch.setattr(os, "stat", stat_then_replace)
    with pytest.raises(PathOutsideRootError, match="changed while being opened"):
        read(registry, "link_in")


def test_an_absolute_link_deeper_down_restarts_from_the_root(
    sandbox: tuple[ToolRegistry, Path],
) -> None:
    registry, tmp_path = sandbox
    (tmp_path / "root" / "sub" / "to_a").symlink_to(tmp_path / "root" / "a.txt")
    assert read(registry, "sub/to_a") == "hello"


@pytest.mark.parametrize("swap", ["remove", "replace"])
def test_a_file_removed_or_replaced_after_the_check_is_reported(
    sandbox: tuple[ToolRegistry, Path], monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    registry, tmp_path = sandbox
    real_stat = os.stat
    target = tmp_path / "root" / "a.txt"

    def stat_then_swap(name: str, *args: object, **kwargs: object) -> os.stat_result:
        result = real_stat(name, *args, **kwargs)  # type: ignore[arg-type]
        if name == "a.txt" and kwargs.get("dir_fd") is not None:
            if swap == "replace":  # a different inode: written before the old one is gone
                other = tmp_path / "root" / "other.txt"
                other.write_text("another file", encoding="utf-8")
                other.replace(target)
            else:
                target.unlink()
        return result

    monkeypatch.setattr(os, "stat", stat_then_swap)
    expected = "no such file" if swap == "remove" else "changed while being opened"
    with pytest.raises(ToolError, match=expected):
        read(registry, "a.txt")


def test_unusable_names_and_a_vanished_root_are_execution_errors(
    sandbox: tuple[ToolRegistry, Path],
) -> None:
    registry, tmp_path = sandbox
    with pytest.raises(ToolExecutionError, match="cannot stat"):
        read(registry, "x" * 300)  # ENAMETOOLONG
    gone = tmp_path / "gone"
    gone.mkdir()
    vanished = ToolRegistry(root=gone)
    gone.rmdir()
    with pytest.raises(ToolExecutionError, match="cannot open the root directory"):
        read(vanished, "a.txt")


def test_a_path_deeper_than_the_limit_is_refused_without_exhausting_descriptors(
    tmp_path: Path,
) -> None:
    # Every level of the walk holds a directory descriptor; a hostile tree thousands of
    # levels deep would starve the process of them. Past 64 levels the read is refused.
    deep = tmp_path
    for _ in range(70):
        deep = deep / "a"
    deep.mkdir(parents=True)
    (deep / "f.txt").write_text("deep")
    registry = ToolRegistry(root=tmp_path)
    outcome = registry.try_call("file_read", {"path": "/".join(["a"] * 70) + "/f.txt"})
    assert outcome.is_error
    assert "more than 64 directories deep" in outcome.output
    shallow = tmp_path / "b"
    shallow.mkdir()
    (shallow / "f.txt").write_text("ok")
    assert registry.call("file_read", {"path": "b/f.txt"}) == "ok"
