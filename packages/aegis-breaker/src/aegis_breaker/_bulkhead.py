"""A bulkhead: bounds calls in flight across threads and asyncio tasks together."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from aegis_breaker._errors import BulkheadFullError

if TYPE_CHECKING:
    import asyncio

R = TypeVar("R")

__all__ = ["Bulkhead"]

# Tokens made up front; the rest are minted when first needed, so memory never depends on
# max_concurrent (a limit of sys.maxsize is fine).
_PREMINTED = 64


class _ThreadWaiter:
    """A blocked thread; granted a permit by `Bulkhead.release` (under the bulkhead's lock)."""

    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.granted = False

    def grant(self) -> bool:
        self.granted = True
        self.event.set()
        return True


class _TaskWaiter:
    """A waiting asyncio task; woken through its loop, which may run in another thread."""

    __slots__ = ("future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False

    def grant(self) -> bool:
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # its loop is closed: nobody is left to take the permit
            return False
        self.granted = True
        return True

    def _wake(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class Bulkhead:
    """Limits how many calls run at once, shared by threads and asyncio tasks.

    Exactly ``max_concurrent`` permit tokens exist, shared by sync and async holders, so the
    total in flight never exceeds the limit. Free tokens sit in a deque whose ``pop`` and
    ``append`` are atomic, so an uncontended acquire or release takes no lock. Tokens are
    minted on first need (64 up front), so memory grows with the calls actually in flight,
    never with ``max_concurrent`` (which may be as large as you like). Waiting and
    waking happen under one `threading.Lock`. Waiters are served first come, first served: a
    released permit is handed straight to the oldest waiter. Async waiting binds to the
    running loop lazily, so one bulkhead can serve threads and event loops at once.

    Args:
        max_concurrent: Permits available (>= 1).
        max_wait_s: Seconds a caller waits for a permit before `BulkheadFullError`; None waits
            for ever, 0 never waits.

    Raises:
        ValueError: When *max_concurrent* < 1 or *max_wait_s* is negative.
    """

    __slots__ = ("_free", "_lock", "_max", "_max_wait_s", "_mint_lock", "_unminted", "_waiters")

    def __init__(self, max_concurrent: int, *, max_wait_s: float | None = None) -> None:
        """Build a bulkhead with *max_concurrent* free permits."""
        if max_concurrent < 1:
            raise ValueError(f"bulkhead: max_concurrent must be >= 1, got {max_concurrent}")
        if max_wait_s is not None and not max_wait_s >= 0:
            raise ValueError(f"bulkhead: max_wait_s must be >= 0 or None, got {max_wait_s}")
        self._max = max_concurrent
        self._max_wait_s = max_wait_s
        preminted = min(max_concurrent, _PREMINTED)
        self._free: collections.deque[None] = collections.deque([None] * preminted)
        self._unminted = max_concurrent - preminted
        self._lock = threading.Lock()
        # Taken inside `_lock` (never the other way round) and alone by `_take`.
        self._mint_lock = threading.Lock()
        self._waiters: collections.deque[_ThreadWaiter | _TaskWaiter] = collections.deque()

    @property
    def max_concurrent(self) -> int:
        """The limit on permits held at once."""
        return self._max

    @property
    def max_wait_s(self) -> float | None:
        """Seconds a caller waits for a permit (None: for ever)."""
        return self._max_wait_s

    @property
    def active(self) -> int:
        """Permits held right now."""
        return self._max - len(self._free) - self._unminted

    def _mint(self) -> bool:
        """Make a new token if some were never made (none is free); False when all exist."""
        if not self._unminted:
            return False
        with self._mint_lock:
            if not self._unminted:
                return False
            self._unminted -= 1
        return True

    def _take(self) -> bool:
        """Take a free token, minting one if none is free but some were never minted."""
        free = self._free
        if not free:  # none free (as while the first calls mint theirs): no IndexError to raise
            return self._mint()
        try:
            free.pop()
        except IndexError:  # another thread took the last one after we looked
            return self._mint()
        return True

    def try_acquire(self) -> bool:
        """Take a permit if one is free and nobody is queued for one; never waits.

        Returns whether a permit was taken (give it back with `release`).
        """
        if self._waiters:
            return False
        free = self._free
        if not free:  # none free (as while the first calls mint theirs): no IndexError to raise
            return self._mint()
        try:
            free.pop()
        except IndexError:  # another thread took the last one after we looked
            return self._mint()
        return True

    _try_take = try_acquire

    def _serve_waiters(self) -> None:
        """Hand free permits to the oldest waiters (lock held)."""
        waiters = self._waiters
        while waiters and self._take():
            if not waiters.popleft().grant():  # its loop is closed: the permit stays free
                self._free.append(None)

    def acquire(self) -> None:
        """Take a permit, blocking the thread up to ``max_wait_s``.

        Raises:
            BulkheadFullError: When no permit came free in time.
        """
        if self._try_take():
            return
        with self._lock:
            if self._try_take():
                return
            if self._max_wait_s == 0:
                raise BulkheadFullError(self._max, 0.0)
            waiter = _ThreadWaiter()
            self._waiters.append(waiter)
            self._serve_waiters()  # a permit freed since our first look goes to the oldest
        started = time.monotonic()
        if waiter.event.wait(self._max_wait_s):
            return
        with self._lock:
            if waiter.granted:  # granted just as the wait ran out: keep it
                return
            self._waiters.remove(waiter)
        raise BulkheadFullError(self._max, time.monotonic() - started)

    async def aacquire(self) -> None:
        """Take a permit, awaiting up to ``max_wait_s`` without blocking the loop.

        If the awaiting task is cancelled, no permit is kept.

        Raises:
            BulkheadFullError: When no permit came free in time.
        """
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        if self._try_take():
            return
        with self._lock:
            if self._try_take():
                return
            if self._max_wait_s == 0:
                raise BulkheadFullError(self._max, 0.0)
            waiter = _TaskWaiter(asyncio.get_running_loop())
            self._waiters.append(waiter)
            self._serve_waiters()
        started = time.monotonic()
        try:
            await asyncio.wait_for(waiter.future, self._max_wait_s)
        except asyncio.TimeoutError:
            with self._lock:
                if waiter.granted:
                    return
                self._waiters.remove(waiter)
            raise BulkheadFullError(self._max, time.monotonic() - started) from None
        except BaseException:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted:  # the permit arrived as we were cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        """Give a permit back; the oldest waiter, if any, receives it.

        Raises:
            RuntimeError: When no permit is held.
        """
        free = self._free
        if len(free) + self._unminted >= self._max:
            raise RuntimeError("bulkhead: release() without a matching acquire()")
        free.append(None)
        # Looking after the append closes the race with a waiter queuing meanwhile: either
        # it saw this permit when it queued, or we see it now and hand the permit over.
        if self._waiters:
            with self._lock:
                self._serve_waiters()

    def _run(self, fn: Callable[..., R], args: tuple[object, ...], kwargs: dict[str, object]) -> R:
        """Call ``fn(*args, **kwargs)`` holding a permit (taken as `acquire` takes one).

        `AgentPool`'s hot path: `try_acquire` and `release` inlined, and the arguments passed
        packed, as the pool received them (re-splatting them costs more than the permit).

        Raises:
            BulkheadFullError: When no permit came free within ``max_wait_s``.
        """
        free = self._free
        if self._waiters:
            self.acquire()
        elif not free:  # none free (the first calls mint theirs): no IndexError to raise
            if not self._mint():
                self.acquire()
        else:
            try:
                free.pop()
            except IndexError:  # another thread took the last one after we looked
                if not self._mint():
                    self.acquire()
        try:
            return fn(*args, **kwargs)
        finally:
            free.append(None)
            if self._waiters:
                with self._lock:
                    self._serve_waiters()

    def __enter__(self) -> Bulkhead:  # noqa: PYI034  # typing.Self is 3.11+
        """Take a permit for the ``with`` body (see `acquire`)."""
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Give the permit back, whatever happened in the body."""
        self.release()

    async def __aenter__(self) -> Bulkhead:  # noqa: PYI034  # typing.Self is 3.11+
        """Take a permit for the ``async with`` body (see `aacquire`)."""
        await self.aacquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Give the permit back, whatever happened in the body, cancellation included."""
        self.release()

    def __repr__(self) -> str:
        """Show permits in use and the limit."""
        return f"Bulkhead(active={self.active}, max_concurrent={self._max})"
