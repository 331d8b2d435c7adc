from __future__ import annotations

import asyncio
import threading

import pytest
from aegis_breaker import BreakerError, Bulkhead, BulkheadFullError

TIMEOUT = 10.0


class Gauge:
    """Counts holders now and the most at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def test_threads_never_exceed_the_limit_and_fill_it() -> None:
    bulkhead = Bulkhead(3)
    gauge = Gauge()
    inside = threading.Barrier(3)  # only passes if three hold permits at once

    def worker(i: int) -> None:
        with bulkhead:
            gauge.enter()
            if i < 3:
                inside.wait(TIMEOUT)
            gauge.leave()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert gauge.peak == 3
    assert bulkhead.active == 0


def test_a_full_bulkhead_raises_after_its_wait() -> None:
    bulkhead = Bulkhead(1, max_wait_s=0.0)
    bulkhead.acquire()
    with pytest.raises(BulkheadFullError) as info:
        bulkhead.acquire()
    assert info.value.max_concurrent == 1
    assert info.value.waited_s == 0.0
    assert isinstance(info.value, BreakerError)
    waiting = Bulkhead(1, max_wait_s=0.01)
    waiting.acquire()
    with pytest.raises(BulkheadFullError) as info:
        waiting.acquire()
    assert info.value.waited_s > 0
    assert waiting.active == 1
    assert "1 permits" in str(info.value)


def test_permits_come_back_on_exceptions() -> None:
    bulkhead = Bulkhead(2)
    with pytest.raises(ValueError, match="x"), bulkhead:
        raise ValueError("x")
    assert bulkhead.active == 0
    with pytest.raises(RuntimeError, match="without a matching"):
        bulkhead.release()


def test_a_release_hands_the_permit_to_a_waiting_thread() -> None:
    bulkhead = Bulkhead(1)
    bulkhead.acquire()
    got = threading.Event()

    def waiter() -> None:
        bulkhead.acquire()
        got.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    while not bulkhead._waiters:  # the waiter has queued
        threading.Event().wait(0.001)
    bulkhead.release()
    assert got.wait(TIMEOUT)
    thread.join(TIMEOUT)
    assert bulkhead.active == 1


def test_asyncio_never_exceeds_the_limit_and_releases_on_errors() -> None:
    bulkhead = Bulkhead(2)
    gauge = Gauge()

    async def job(i: int) -> int:
        async with bulkhead:
            gauge.enter()
            for _ in range(3):
                await asyncio.sleep(0)
            gauge.leave()
            if i % 3 == 0:
                raise ValueError(i)
        return i

    async def main() -> list[int | BaseException]:
        return await asyncio.gather(*(job(i) for i in range(12)), return_exceptions=True)

    results = asyncio.run(main())
    assert gauge.peak == 2
    assert sum(isinstance(r, ValueError) for r in results) == 4
    assert bulkhead.active == 0


def test_cancellation_while_waiting_or_holding_leaks_nothing() -> None:
    bulkhead = Bulkhead(1)

    async def main() -> None:
        holding = asyncio.Event()
        never = asyncio.Event()

        async def hold() -> None:
            async with bulkhead:
                holding.set()
                await never.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()
        waiter = asyncio.create_task(bulkhead.aacquire())
        await asyncio.sleep(0)
        assert len(bulkhead._waiters) == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not bulkhead._waiters
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
        assert bulkhead.active == 0
        await bulkhead.aacquire()
        assert bulkhead.active == 1
        bulkhead.release()

    asyncio.run(main())
    assert bulkhead.active == 0


def test_async_wait_times_out() -> None:
    bulkhead = Bulkhead(1, max_wait_s=0.01)
    zero = Bulkhead(1, max_wait_s=0)

    async def main() -> None:
        await bulkhead.aacquire()
        with pytest.raises(BulkheadFullError):
            await bulkhead.aacquire()
        await zero.aacquire()
        with pytest.raises(BulkheadFullError):
            await zero.aacquire()

    asyncio.run(main())
    assert bulkhead.active == 1
    assert not bulkhead._waiters


def test_threads_and_a_loop_share_one_limit() -> None:
    bulkhead = Bulkhead(1)
    bulkhead.acquire()  # a "thread" holds the only permit

    async def main() -> int:
        task = asyncio.create_task(bulkhead.aacquire())
        await asyncio.sleep(0)
        assert bulkhead.active == 1
        releaser = threading.Thread(target=bulkhead.release)
        releaser.start()
        await asyncio.wait_for(task, TIMEOUT)
        releaser.join(TIMEOUT)
        return bulkhead.active

    assert asyncio.run(main()) == 1
    bulkhead.release()
    assert bulkhead.active == 0


def test_invalid_settings() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        Bulkhead(0)
    with pytest.raises(ValueError, match="max_wait_s"):
        Bulkhead(1, max_wait_s=-1)
    assert Bulkhead(2, max_wait_s=1.0).max_wait_s == 1.0
    assert "max_concurrent=2" in repr(Bulkhead(2))
