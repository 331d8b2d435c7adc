"""Drive Debian's headless chromium: dump a page's DOM, take a screenshot, check a PNG.

No Python dependency: chromium is run as a program (installed by the noxfile like
redis-server), and PNGs are checked with zlib alone.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

__all__ = ["CHROMIUM", "chromium", "dump_dom", "idat_variety", "png_size", "screenshot"]

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
"""The chromium program on PATH, or None."""

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
_TIMEOUT_S = 120.0  # a busy 2-core machine starts chromium slowly


def chromium(*args: str) -> str:
    """Run headless chromium with *args* in a throwaway profile; its standard output."""
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed")
    with tempfile.TemporaryDirectory(prefix="aegis-chromium-") as profile:
        done = subprocess.run(  # a fixed program and flags
            [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited with {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def dump_dom(page: Path) -> str:
    """The DOM chromium built from the HTML file *page*, serialised."""
    return chromium("--dump-dom", page.resolve().as_uri())


def screenshot(page: Path, png: Path, *, width: int = 1280, height: int = 1600) -> None:
    """A PNG of *page* (a file) as chromium draws it in a window of *width* x *height*."""
    chromium(f"--screenshot={png}", f"--window-size={width},{height}", page.resolve().as_uri())


def png_size(data: bytes) -> tuple[int, int]:
    """The width and height of the PNG *data* (ValueError if it is not a PNG)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def idat_variety(data: bytes) -> int:
    """How many different byte values the PNG *data*'s image stream holds.

    A blank (one-colour) picture's filtered rows are almost all zeros, so this is a cheap
    "is anything drawn" test: a page of text and charts gives well over a hundred.
    """
    png_size(data)  # a PNG at all
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return len(set(zlib.decompress(b"".join(chunks))))
