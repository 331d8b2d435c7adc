"""Files the ``aegis`` command reads and writes: bounded reads of regular files, atomic writes.

Reading opens without blocking and refuses anything but a regular file, so a FIFO cannot hang
the command and ``/dev/zero`` cannot exhaust its memory. Writing goes to a temporary file
beside the target, is flushed to disk and renamed over it, so a failed write never destroys
the previous file (which ``--resume FILE --output FILE`` depends on).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Final

__all__ = ["AtomicOutput", "read_regular_file", "same_file"]

_READ_FLAGS: Final = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_CHUNK: Final = 1 << 16


def _mebibytes(limit: int) -> str:
    return f"{limit / (1 << 20):g} MiB"


def same_file(first: str | os.PathLike[str], second: str | os.PathLike[str]) -> bool:
    """Whether the two paths name one file (a hard link, a symlink or another spelling of it)."""
    try:
        return Path(first).samefile(second)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return os.path.realpath(first) == os.path.realpath(second)


def read_regular_file(path: str | os.PathLike[str], *, max_bytes: int) -> bytes:
    """The whole content of the regular file at ``path``, which must hold at most ``max_bytes``.

    Raises:
        OSError: the file cannot be opened or read, is not a regular file (a directory, a
            FIFO, a device) or is larger than ``max_bytes``; ``strerror`` says which in words.
    """
    fd = os.open(path, _READ_FLAGS)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise OSError(errno.EISDIR, "it is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)")
        if info.st_size > max_bytes:
            raise OSError(errno.EFBIG, f"larger than the {_mebibytes(max_bytes)} limit")
        chunks: list[bytes] = []
        size = 0
        while True:  # the file may grow after fstat: stop one byte past the limit
            chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise OSError(errno.EFBIG, f"larger than the {_mebibytes(max_bytes)} limit")
        return b"".join(chunks)
    finally:
        os.close(fd)


class AtomicOutput:
    """A file that is replaced all at once, or not at all.

    Making one checks that the target can be written: it creates the temporary file beside
    the target at once, so an unwritable path fails before any work is done.
    :meth:`commit` writes the text, flushes it to disk and renames the temporary file over
    the target; :meth:`discard` (or leaving the ``with`` block without committing) removes
    it. A target that exists and is not a regular file (``/dev/stdout``, a FIFO) is written
    directly, since it cannot be replaced. A symlink is followed: its target is replaced.

    Raises:
        OSError: from the constructor when the target cannot be written (``strerror`` says
            why); from :meth:`commit` when writing fails, the previous file left intact.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Check that ``path`` can be written and create the temporary file beside it."""
        self.path = os.fspath(path)
        self._fd: int | None = None
        self._temp: Path | None = None
        self._direct = False
        self._target = Path(self.path)
        try:
            existing: os.stat_result | None = self._target.stat()
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise OSError(errno.EISDIR, "it is a directory")
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            if not os.access(self.path, os.W_OK):
                raise OSError(errno.EACCES, "permission denied")
            self._direct = True
            return
        self._target = self._target.resolve()
        folder = self._target.parent
        if not folder.is_dir():
            raise OSError(errno.ENOENT, f"no such directory: {folder}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        flags |= getattr(os, "O_BINARY", 0)
        while self._fd is None:
            temp = folder / f".{self._target.name}.{secrets.token_hex(4)}.tmp"
            with contextlib.suppress(FileExistsError):
                self._fd = os.open(temp, flags, 0o666)
                self._temp = temp
        if existing is not None:
            # Keep the permissions the replaced file had.
            with contextlib.suppress(OSError):
                temp.chmod(stat.S_IMODE(existing.st_mode))

    def commit(self, text: str | bytes) -> None:
        r"""Write ``text`` (str as UTF-8, bytes as given) and put it in place, or keep the old.

        A lone surrogate (which UTF-8 cannot encode) is written as its ``\\uXXXX`` escape,
        which is what it means inside a JSON string.
        """
        data = text if isinstance(text, bytes) else text.encode("utf-8", errors="backslashreplace")
        self._put(lambda stream: stream.write(data))

    def commit_written(self, write: Callable[[IO[str]], object]) -> None:
        """Like :meth:`commit` for text, with ``write(stream)`` writing it piece by piece.

        A large output is then never held whole in memory. If *write* raises, the temporary
        file is removed and the old file survives (a device or FIFO written directly keeps
        what was written before the failure).
        """
        self._put(functools.partial(_write_text, write=write))

    def _put(self, write: Callable[[IO[bytes]], object]) -> None:
        """Have *write* fill the file, flush it to disk and put it in place."""
        if self._direct:
            with open(self.path, "wb") as stream:  # noqa: PTH123  # a device or FIFO
                write(stream)
            return
        if self._fd is None or self._temp is None:
            raise OSError(errno.EBADF, "the output was already committed or discarded")
        fd, self._fd = self._fd, None
        try:
            with os.fdopen(fd, "wb") as stream:
                write(stream)
                stream.flush()
                os.fsync(stream.fileno())
            self._temp.replace(self._target)
        except BaseException:
            self.discard()
            raise
        self._temp = None
        _fsync_directory(self._target.parent)

    def discard(self) -> None:
        """Remove the temporary file, leaving the target as it was; safe to call twice."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._temp is not None:
            temp, self._temp = self._temp, None
            with contextlib.suppress(OSError):
                temp.unlink()

    def __enter__(self) -> AtomicOutput:  # noqa: PYI034  # typing.Self is 3.11+
        """Use it in a ``with`` block: the temporary file is removed unless committed."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Discard what was not committed."""
        self.discard()


def _write_text(binary: IO[bytes], write: Callable[[IO[str]], object]) -> None:
    """Have *write* write text to *binary*: UTF-8, a lone surrogate as its backslash escape."""
    stream = io.TextIOWrapper(binary, encoding="utf-8", errors="backslashreplace", newline="")
    write(stream)
    stream.flush()
    stream.detach()  # the caller closes *binary*


def _fsync_directory(folder: Path) -> None:
    # Make the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
