# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""``LoopThread``: one asyncio event loop on a daemon thread, where a registry's coroutines run.

Tools are called from worker threads (``run``) and from ``asyncio.to_thread`` (``arun``), never
from the run's own event loop, so a coroutine a tool needs (an ``async def`` tool, an MCP
session) runs here and the calling thread waits for it. One loop per registry keeps objects a
coroutine binds to its loop (an MCP session, a cached async client) valid from call to call.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import asyncio

__all__ = ["LoopThread"]

_T = TypeVar("_T")


class LoopThread:
    """An event loop on its own daemon thread, started on first use.

    Thread-safe. ``close`` stops the loop; a later ``run`` starts a new one.
    """

    def __init__(self, name: str) -> None:
        """Name the thread *name*; nothing starts yet."""
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, awaitable: Awaitable[_T]) -> _T:
        """Await *awaitable* on the loop and wait for its result (its exception is raised here).

        Raises:
            RuntimeError: called from the loop's own thread, where waiting would deadlock
                (*awaitable* is closed, never run).
        """
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        if threading.current_thread() is self._thread:
            close = getattr(awaitable, "close", None)
            if callable(close):
                close()
            raise RuntimeError(
                f"{self._name}: a coroutine on this loop cannot wait for another one on it"
            )
        future = asyncio.run_coroutine_threadsafe(_awaited(awaitable), self._started())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # interrupted while waiting (KeyboardInterrupt): stop the coroutine
            raise

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the loop after what is scheduled on it; wait up to *timeout_s* for its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(timeout_s)

    def _started(self) -> asyncio.AbstractEventLoop:
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        with self._lock:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_serve, args=(loop,), name=self._name, daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
            return loop


async def _awaited(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    import asyncio  # noqa: PLC0415  # asyncio loads with the async API

    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        # Whatever is still pending (a server that did not say goodbye) is cancelled, not leaked.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
