"""The ``aegis`` console script's entry point (the command itself is in ``aegis_gov._cli``).

It lives outside ``aegis_gov`` so that it runs before the packages load, which takes a
second or more on a busy machine: a SIGINT or SIGTERM that arrives meanwhile ends the
command with one line and exit status 128 + the signal, not a traceback. Nothing has run
yet at that point, so nothing is lost.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

__all__ = ["main"]


def _stop_while_loading(signum: int, _frame: FrameType | None) -> None:
    os.write(2, b"aegis: interrupted\n")
    os._exit(128 + signum)


def main() -> None:
    """Run the ``aegis`` command on ``sys.argv`` and exit with its status."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_while_loading)
    from aegis_gov._cli import console_main  # noqa: PLC0415  # the slow import, guarded

    console_main()
