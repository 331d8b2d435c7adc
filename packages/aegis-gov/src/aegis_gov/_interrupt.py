"""SIGINT and SIGTERM for the ``aegis`` command: the first stops a run cleanly, the second at once.

While a run is going, the first signal sets a cancel event: nothing new starts, pending tasks
are skipped as cancelled and calls in flight get a grace period to finish. A second signal
raises :class:`KeyboardInterrupt` in the main thread, which makes the run give up on the
calls still in flight and hand back what finished. Outside a run, any signal raises
:class:`KeyboardInterrupt` at once. The exit status is ``128 + signal number`` (130 for
SIGINT, 143 for SIGTERM), as a shell reports a process that a signal stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Final

__all__ = ["SIGNALS", "Interrupts"]

SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
"""The signals the ``aegis`` command turns into a clean stop."""

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class Interrupts:
    """Catches SIGINT and SIGTERM while :meth:`installed`; see the module's docstring.

    ``cancel`` is the event to hand to ``run_tasks``; ``signum`` is the first signal that
    arrived (``None`` if none did). Once :meth:`defer` is called, signals are only recorded.
    Not thread-safe: signals are handled in the main thread.
    """

    def __init__(self) -> None:
        """Nothing is caught until :meth:`installed`."""
        self.cancel = threading.Event()
        self.signum: int | None = None
        self._graceful = False
        self._deferred = False
        self._notice = ""

    @property
    def exit_status(self) -> int | None:
        """``128 +`` the first signal's number, or ``None`` if no signal arrived."""
        return None if self.signum is None else 128 + self.signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Handle the signals inside the block, then restore the previous handlers.

        Outside the main thread (where Python cannot set handlers) this does nothing.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous: dict[signal.Signals, _Handler] = {}
        try:
            for signum in SIGNALS:
                previous[signum] = signal.signal(signum, self._handle)
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def graceful(self, notice: str) -> None:
        """From now on the first signal sets ``cancel`` and writes ``notice`` to stderr."""
        self._graceful = True
        self._notice = notice

    def defer(self) -> None:
        """From now on signals are only recorded: the result being written must not be lost.

        (The run is over by then; writing the result takes moments.)
        """
        self._deferred = True

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if self._deferred:
            return
        if first and self._graceful:
            self.cancel.set()
            # A raw write: the main thread may be in the middle of writing to sys.stderr.
            with contextlib.suppress(OSError):
                os.write(2, self._notice.encode("utf-8", "replace"))
            return
        raise KeyboardInterrupt
