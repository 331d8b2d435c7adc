# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The ``file_read`` built-in: read a UTF-8 file beneath the root, one component at a time.

How it is confined, and its known limits as a library that runs in the caller's process:

``file_read`` walks the path one component at a time from a descriptor of the root, each
opened with ``O_NOFOLLOW`` relative to the one before (as Go's ``os.Root`` and Rust's cap-std
do), so a directory swapped for a symlink mid-walk makes the open fail instead of leading
outside. ``..`` steps back to the directory the walk came from and never above the root.
Symlinks are followed only by walking their target the same way: a link that stays inside the
root works, one that leads outside (or an absolute one outside the root) is refused. FIFOs,
devices and sockets are refused before they are opened. Hard links cannot be told apart from
the file they link: a hard link inside the root to a file outside it is that file, and is read
(the sandboxed ``shell`` cannot create one, since links across mounts fail; anyone who can
write to the root outside the sandbox can). A directory already open during a walk and moved
out of the root by someone outside the sandbox is still read from. The root's own path is
trusted as it was resolved at construction.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from aegis_gov._sandbox import SandboxConfig
from aegis_gov._tool_errors import OutputTooLargeError, PathOutsideRootError, ToolExecutionError

__all__ = ["file_read"]

_MAX_SYMLINKS = 40  # as Linux's path walk: more is a loop
_HAS_OPENAT = os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: a FIFO swapped in after the type check cannot block the open; O_NOCTTY: a terminal
# cannot become ours.
_FILE_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
)


def _lstat_at(name: str, dir_fd: int, path: str) -> os.stat_result:
    tool = "file_read"
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError as exc:
        raise ToolExecutionError(f"no such file: {path!r}", tool_name=tool) from exc
    except OSError as exc:
        raise ToolExecutionError(f"cannot stat {path!r}: {exc.strerror}", tool_name=tool) from exc


def _open_beneath(config: SandboxConfig, path: str) -> tuple[int, os.stat_result]:
    """Open the regular file *path* beneath the root; return the descriptor and its stat.

    See ``_BeneathWalk``.
    """
    tool = "file_read"
    if not _HAS_OPENAT:  # pragma: no cover  # Windows
        raise ToolExecutionError("file_read needs openat (a POSIX system)", tool_name=tool)
    if "\x00" in path:
        raise PathOutsideRootError("path contains a NUL byte", tool_name=tool, path=path)
    try:
        root_fd = os.open(config.root, _DIR_FLAGS)
    except OSError as exc:
        raise ToolExecutionError(
            f"cannot open the root directory: {exc.strerror}", tool_name=tool
        ) from exc
    walk = _BeneathWalk(config, path, root_fd)
    try:
        return walk.run()
    finally:
        walk.close()


_MAX_DEPTH = 64  # directories below the root a path may descend through


class _BeneathWalk:
    """One path walked beneath the root, one component at a time.

    Each component is looked up with ``fstatat`` and opened with ``O_NOFOLLOW`` relative to the
    directory descriptor of the one before, so swapping any directory for a symlink mid-walk
    cannot lead outside (the open fails instead). ``..`` pops back to the parent *we* opened,
    never the file system's, and cannot go above the root. A symlink is followed only by walking
    its target the same way, from the root for an absolute target that lies under the root.
    Special files are refused before they are opened.
    """

    def __init__(self, config: SandboxConfig, path: str, root_fd: int) -> None:
        self.config = config
        self.path = path
        self.dirs = [root_fd]  # the root, then each directory opened below it
        self.links = 0
        self.outside = PathOutsideRootError(
            f"path {path!r} resolves outside the root directory", tool_name="file_read", path=path
        )
        parts = self.below_root(path) if Path(path).is_absolute() else list(Path(path).parts)
        self.pending = parts[::-1]  # a stack: the next component is at the end

    def below_root(self, absolute: str) -> list[str]:
        """The components of *absolute* below the root, or raise ``PathOutsideRootError``."""
        if not Path(absolute).is_relative_to(self.config.root):
            raise self.outside
        return list(Path(absolute).relative_to(self.config.root).parts)

    def run(self) -> tuple[int, os.stat_result]:
        tool = "file_read"
        while self.pending:
            name = self.pending.pop()
            if name == "..":
                if len(self.dirs) == 1:
                    raise self.outside
                os.close(self.dirs.pop())
                continue
            found = _lstat_at(name, self.dirs[-1], self.path)
            if stat.S_ISLNK(found.st_mode):
                self.follow(name)
            elif stat.S_ISDIR(found.st_mode):
                if len(self.dirs) > _MAX_DEPTH:
                    # Each level holds a descriptor: a deep tree would exhaust the process's.
                    raise ToolExecutionError(
                        f"{self.path!r} is more than {_MAX_DEPTH} directories deep",
                        tool_name=tool,
                    )
                self.dirs.append(_open_checked(name, self.dirs[-1], _DIR_FLAGS, found, self.path))
            elif not stat.S_ISREG(found.st_mode):
                raise ToolExecutionError(f"{self.path!r} is not a regular file", tool_name=tool)
            elif self.pending:
                raise ToolExecutionError(f"{self.path!r}: not a directory", tool_name=tool)
            else:
                return _open_checked(name, self.dirs[-1], _FILE_FLAGS, found, self.path), found
        raise ToolExecutionError(f"{self.path!r} is not a regular file", tool_name=tool)

    def follow(self, name: str) -> None:
        """Queue the target of the symlink *name* to be walked in its place."""
        self.links += 1
        if self.links > _MAX_SYMLINKS:
            raise ToolExecutionError(
                f"too many levels of symbolic links in {self.path!r}", tool_name="file_read"
            )
        try:
            target = os.readlink(name, dir_fd=self.dirs[-1])
        except OSError as exc:  # no longer a link: it changed under us
            raise PathOutsideRootError(
                f"path {self.path!r} changed while being opened",
                tool_name="file_read",
                path=self.path,
            ) from exc
        if Path(target).is_absolute():
            parts = self.below_root(target)
            while len(self.dirs) > 1:
                os.close(self.dirs.pop())
        else:
            parts = list(Path(target).parts)
        self.pending.extend(reversed(parts))

    def close(self) -> None:
        for fd in self.dirs:
            os.close(fd)
        self.dirs.clear()


def _open_checked(name: str, dir_fd: int, flags: int, found: os.stat_result, path: str) -> int:
    """Open *name* in *dir_fd* and check it is still the object ``fstatat`` found."""
    tool = "file_read"
    changed = PathOutsideRootError(
        f"path {path!r} changed while being opened", tool_name=tool, path=path
    )
    try:
        fd = os.open(name, flags | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in {errno.ELOOP, errno.ENOTDIR}:  # swapped for a link or a file
            raise changed from exc
        if exc.errno == errno.ENOENT:
            raise ToolExecutionError(f"no such file: {path!r}", tool_name=tool) from exc
        raise ToolExecutionError(f"cannot open {path!r}: {exc.strerror}", tool_name=tool) from exc
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (found.st_dev, found.st_ino):
        os.close(fd)
        raise changed
    return fd


def file_read(config: SandboxConfig, path: str) -> str:
    """Read the UTF-8 text file *path* (relative to the root), refusing anything outside it."""
    tool = "file_read"
    fd, checked = _open_beneath(config, path)
    with os.fdopen(fd, "rb") as handle:
        if checked.st_size > config.max_output_bytes:
            raise OutputTooLargeError(
                f"file {path!r} is {checked.st_size} bytes, "
                f"over the {config.max_output_bytes}-byte cap",
                tool_name=tool,
                limit_bytes=config.max_output_bytes,
            )
        data = handle.read(config.max_output_bytes + 1)
    if len(data) > config.max_output_bytes:
        raise OutputTooLargeError(
            f"file {path!r} grew over the {config.max_output_bytes}-byte cap",
            tool_name=tool,
            limit_bytes=config.max_output_bytes,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ToolExecutionError(
            f"file {path!r} is not UTF-8 text (invalid byte at offset {exc.start})",
            tool_name=tool,
        ) from exc
