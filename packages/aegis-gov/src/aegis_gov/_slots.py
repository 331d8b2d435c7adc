"""A run's concurrency slots: held by a task while it works, given up while it waits.

A task waiting out a retry delay, a Retry-After or an open circuit does nothing useful with
its slot, so it *parks*: the slot goes to a task of another endpoint (a waiting task first,
then new work), and the parked task queues for a slot again when its wait is over. Slots are
handed over first come, first served, so a task back from a wait never starves behind new
work. Thread-safe; async waiters are woken through their loop.

A wait may carry an :class:`~aegis_gov._adaptive.Alarm`: the endpoint it waits for rings it
when it can take more (a call ended, a probe settled), and the wait ends early.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aegis_gov._adaptive import Alarm

if TYPE_CHECKING:
    import asyncio

    from aegis_gov._outcome import Failure

__all__ = ["Slot", "Slots", "asyncio_sleep"]

_ACTIVE = "active"
_PARKED = "parked"
_WAITING = "waiting"
_GONE = "gone"


async def asyncio_sleep(seconds: float) -> None:
    """``asyncio.sleep``, imported on first use: the default of the async API's ``async_sleep``.

    Importing aegis_gov then loads no asyncio (about a fifth of the import time).
    """
    import asyncio  # noqa: PLC0415  # asyncio loads with the async API

    await asyncio.sleep(seconds)


class Slots:
    """``limit`` slots shared by the tasks of one run; ``wake`` nudges its driver."""

    def __init__(self, limit: int, *, max_parked: int, wake: Callable[[], object]) -> None:
        """Build *limit* free slots; at most *max_parked* tasks may wait without one."""
        self.limit = limit
        self.max_parked = max_parked
        self.active = 0
        self.parked = 0  # parked or waiting for a slot back
        self._wake = wake
        self._lock = threading.Lock()
        self._waiters: collections.deque[tuple[Slot, Callable[[], None]]] = collections.deque()

    def claimable(self, *, past_lot: bool = False) -> int:
        """How many new tasks may start now (none while a returning task waits for a slot).

        None either once ``max_parked`` tasks wait without a slot, unless *past_lot*: then as
        many as there are slots and threads for (each parked task past the cap keeps one of
        the threads that slots count on), for a driver that starts only the tasks an
        endpoint will take at once (see :attr:`lot_full`).
        """
        with self._lock:
            if self._waiters:
                return 0
            over = self.parked - self.max_parked
            if over >= 0 and not past_lot:
                return 0
            return max(self.limit - self.active - max(over, 0), 0)

    @property
    def lot_full(self) -> bool:
        """Whether ``max_parked`` tasks wait without a slot: a new task should not park."""
        return self.parked >= self.max_parked

    def claim(self) -> Slot:
        """A slot for a task the driver is starting (it checked :meth:`claimable`)."""
        with self._lock:
            self.active += 1
        return Slot(self)

    def claim_many(self, count: int) -> list[Slot]:
        """*count* slots at once, as :meth:`claim` would give them one by one."""
        with self._lock:
            self.active += count
        return [Slot(self) for _ in range(count)]

    def _hand_over(self) -> None:
        # Under the lock: give free slots to the tasks that have waited longest.
        while self._waiters and self.active < self.limit:
            slot, grant = self._waiters.popleft()
            slot.state = _ACTIVE
            self.active += 1
            self.parked -= 1
            grant()


class Slot:
    """One task's hold on a slot of its run."""

    __slots__ = ("_alarm", "_gone", "_slots", "progress", "state")

    def __init__(self, slots: Slots) -> None:
        """Hold a slot of *slots* (see :meth:`Slots.claim`)."""
        self._slots = slots
        self.state = _ACTIVE
        # What the task did so far, as the failure a run giving it up reports (its attempts,
        # usage and tool calls); set by the task's conversation once it starts.
        self.progress: Callable[[Exception], Failure] | None = None
        self._gone = False  # True once the run is done with the task (a flag: nobody waits on it)
        self._alarm: Alarm | None = None  # the alarm of the wait under way, if any

    @property
    def abandoned(self) -> bool:
        """Whether the run is done with this task (it finished, or was given up on)."""
        return self.state == _GONE

    @property
    def parked(self) -> bool:
        """Whether the task waits without its slot (to retry, or to take a slot back)."""
        return self.state in {_PARKED, _WAITING}

    def park(self) -> None:
        """Give the slot up for a wait."""
        slots = self._slots
        with slots._lock:  # noqa: SLF001  # Slot and Slots are one mechanism
            if self.state != _ACTIVE:
                return
            self.state = _PARKED
            slots.active -= 1
            slots.parked += 1
            slots._hand_over()  # noqa: SLF001
        slots._wake()  # noqa: SLF001  # the freed slot may start new work

    def _queue(self, grant: Callable[[], None]) -> bool:
        """Take a slot back now (True) or queue for one, to be granted by *grant*."""
        slots = self._slots
        with slots._lock:  # noqa: SLF001
            if self.state != _PARKED:
                return True  # gone (abandoned by its run) or never parked: carry on
            if not slots._waiters and slots.active < slots.limit:  # noqa: SLF001
                self.state = _ACTIVE
                slots.active += 1
                slots.parked -= 1
                return True
            self.state = _WAITING
            slots._waiters.append((self, grant))  # noqa: SLF001
            return False

    def unpark(self) -> None:
        """Wait (blocking) until the task holds a slot again."""
        event = threading.Event()
        if not self._queue(event.set):
            event.wait()

    async def aunpark(self) -> None:
        """Wait (on the running loop) until the task holds a slot again."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def grant() -> None:
            loop.call_soon_threadsafe(_resolve, future)

        if self._queue(grant):
            return
        try:
            await future
        except asyncio.CancelledError:
            self.leave(wake=True)
            raise

    def leave(self, *, wake: bool = False) -> None:
        """The task is over (done, abandoned or cancelled): free whatever it holds.

        The driver calls this itself when a task lands, so it needs no wake-up; *wake* is
        for a task that leaves on its own (a cancelled waiter).
        """
        slots = self._slots
        self._gone = True  # a real wait of this task's ends now (set before the alarm is read)
        alarm = self._alarm
        if alarm is not None:
            alarm.ring()
        grants: list[Callable[[], None]] = []
        with slots._lock:  # noqa: SLF001
            state, self.state = self.state, _GONE
            if state == _ACTIVE:
                slots.active -= 1
            elif state == _PARKED:
                slots.parked -= 1
            elif state == _WAITING:
                slots.parked -= 1
                kept: collections.deque[tuple[Slot, Callable[[], None]]] = collections.deque()
                for waiter, grant in slots._waiters:  # noqa: SLF001
                    if waiter is self:
                        grants.append(grant)
                    else:
                        kept.append((waiter, grant))
                slots._waiters = kept  # noqa: SLF001
            if slots._waiters:  # noqa: SLF001  # (no call when nobody waits: the common case)
                slots._hand_over()  # noqa: SLF001
        for grant in grants:
            # Its thread blocks until granted: wake it, to find itself given up and leave
            # (it waited for ever, and its process could not exit). A loop already closed
            # has nothing left to wake.
            with contextlib.suppress(RuntimeError):
                grant()
        if wake and state in {_ACTIVE, _PARKED, _WAITING}:
            slots._wake()  # noqa: SLF001

    def sleep(
        self, seconds: float, sleep: Callable[[float], object], alarm: Alarm | None = None
    ) -> None:
        """Wait *seconds* with *sleep*, parked, then take a slot back.

        With the real ``time.sleep`` the wait ends early when *alarm* rings, or once the run
        gives the task up (so an abandoned task's thread does not linger and keep its
        process alive). An injected *sleep* is called as it is, unless *alarm* already rang.
        """
        self.park()
        try:
            if alarm is not None and alarm.rung:
                return
            if sleep is time.sleep:
                alarm = alarm or Alarm()
                self._alarm = alarm
                if not self._gone:  # read after the alarm is set: leave() rings it or we see this
                    alarm.wait(seconds)
            else:
                sleep(seconds)
        finally:
            self._alarm = None
            if alarm is not None:
                alarm.close()
            self.unpark()

    async def asleep(
        self,
        seconds: float,
        sleep: Callable[[float], Awaitable[object]],
        alarm: Alarm | None = None,
    ) -> None:
        """The async twin of :meth:`sleep` (*alarm* must be made on the running loop)."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        self.park()
        try:
            if alarm is not None and alarm.rung:
                return
            if alarm is not None and sleep in {asyncio_sleep, asyncio.sleep}:
                await alarm.await_for(seconds)
            else:
                await sleep(seconds)
        finally:
            if alarm is not None:
                alarm.close()
            await self.aunpark()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
