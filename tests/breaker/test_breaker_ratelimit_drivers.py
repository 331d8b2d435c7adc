"""RateLimiter's drivers: acquire across threads, aacquire with cancellation, timeouts."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aegis_breaker import RateLimiter, RateLimitExceededError

from tests.breaker.support import FakeClock, Interrupt

pytestmark = pytest.mark.timeout(30)


class FakeSleep:
    """Records the sleeps asked for and advances the clock by them (one caller at a time)."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)


def test_acquire_sleeps_its_turn_and_reports_the_wait() -> None:
    clock = FakeClock(0.0)
    sleep = FakeSleep(clock)
    limit = RateLimiter(2, 1.0, clock=clock)
    assert [limit.acquire(sleep=sleep) for _ in range(4)] == [0.0, 0.0, 0.5, 0.5]
    assert sleep.calls == [0.5, 0.5]
    assert clock.now == 1.0


def test_acquire_over_the_timeout_raises_at_once_and_consumes_nothing() -> None:
    clock = FakeClock(0.0)
    sleep = FakeSleep(clock)
    limit = RateLimiter(1, 1.0, burst=1, clock=clock, name="rpm")
    limit.acquire(sleep=sleep)
    with pytest.raises(RateLimitExceededError, match="'rpm'") as info:
        limit.acquire(timeout_s=0.25, sleep=sleep)
    assert info.value.retry_after_s == 1.0
    assert sleep.calls == []
    assert limit.status().queued_s == 0.0
    assert limit.acquire(timeout_s=1.0, sleep=sleep) == 1.0


def test_an_interrupted_sleep_gives_the_reservation_back() -> None:
    clock = FakeClock(0.0)
    limit = RateLimiter(1, 1.0, burst=1, clock=clock)
    limit.acquire()

    def interrupted(seconds: float) -> None:
        assert limit.status().waiting == 1
        raise Interrupt

    with pytest.raises(Interrupt):
        limit.acquire(sleep=interrupted)
    status = limit.status()
    assert (status.available, status.queued_s, status.waiting) == (0.0, 0.0, 0)


def test_threads_are_admitted_in_fifo_order_and_none_starves() -> None:
    """N threads start together on a frozen clock; each gets the next slot in line."""
    threads_n, rate = 16, 4.0
    clock = FakeClock(0.0)  # frozen: every wait comes from the queue alone
    limit = RateLimiter(rate, 1.0, burst=2, clock=clock)
    barrier = threading.Barrier(threads_n)
    waits: list[float] = []
    lock = threading.Lock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        with lock:
            slept.append(seconds)

    def worker() -> None:
        barrier.wait()
        wait = limit.acquire(sleep=sleep)
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # Two go at once (the burst), then one every 1/rate s: each slot exactly once, so nobody
    # was skipped or served twice, whatever order the threads reached the lock in.
    expected = [0.0, 0.0] + [(k + 1) / rate for k in range(threads_n - 2)]
    assert sorted(waits) == pytest.approx(expected)
    assert sorted(slept) == pytest.approx(expected[2:])
    assert limit.status().queued_s == pytest.approx(expected[-1])


def test_threads_with_mixed_amounts_keep_the_order_they_reserved_in() -> None:
    """A later small request never goes before an earlier large one."""
    clock = FakeClock(0.0)
    limit = RateLimiter(10, 1.0, burst=10, clock=clock)
    barrier = threading.Barrier(8)
    lock = threading.Lock()
    order: list[tuple[float, float]] = []  # (go time, amount) in reservation order

    def worker(amount: float) -> None:
        barrier.wait()
        with lock:  # reserve and record atomically, so the list is the reservation order
            wait = limit.reserve(amount)
            order.append((wait, amount))

    threads = [threading.Thread(target=worker, args=(a,)) for a in (9, 1, 8, 2, 7, 3, 6, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    gos = [go for go, _ in order]
    assert gos == sorted(gos)
    total = 0.0
    for go, amount in order:
        total += amount
        assert go == pytest.approx(max(0.0, (total - 10) / 10))


def test_aacquire_awaits_its_turn() -> None:
    clock = FakeClock(0.0)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    limit = RateLimiter(2, 1.0, burst=1, clock=clock)

    async def main() -> list[float]:
        return [await limit.aacquire(sleep=sleep) for _ in range(3)]

    assert asyncio.run(main()) == [0.0, 0.5, 0.5]
    assert slept == [0.5, 0.5]


def test_aacquire_over_the_timeout_raises_at_once() -> None:
    limit = RateLimiter(1, 1.0, burst=1, clock=FakeClock(0.0))

    async def main() -> None:
        await limit.aacquire()
        with pytest.raises(RateLimitExceededError):
            await limit.aacquire(timeout_s=0.5)

    asyncio.run(main())
    assert limit.status().queued_s == 0.0


def test_a_cancelled_waiter_gives_its_reservation_back() -> None:
    """The last in line is cancelled: who comes after waits as if it never was."""
    clock = FakeClock(0.0)
    limit = RateLimiter(1, 1.0, burst=1, clock=clock)

    async def main() -> None:
        parked = asyncio.Event()

        async def park(seconds: float) -> None:
            parked.set()
            await asyncio.Event().wait()  # until cancelled

        await limit.aacquire()  # the bucket is empty now
        waiter = asyncio.create_task(limit.aacquire(3 / 4, sleep=park))
        await parked.wait()
        assert limit.status().waiting == 1
        assert limit.status().queued_s == 0.75
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        status = limit.status()
        assert (status.waiting, status.queued_s, status.available) == (0, 0.0, 0.0)
        assert limit.reserve(1 / 4) == 0.25  # not 1.0: the cancelled 3/4 came back

    asyncio.run(main())


def test_a_cancelled_waiter_in_the_middle_keeps_the_waiters_behind_it_in_place() -> None:
    clock = FakeClock(0.0)
    limit = RateLimiter(1, 1.0, burst=1, clock=clock)

    async def main() -> None:
        parked: list[float] = []
        all_parked = asyncio.Event()

        async def park(seconds: float) -> None:
            parked.append(seconds)
            if len(parked) == 2:
                all_parked.set()
            await asyncio.Event().wait()

        await limit.aacquire()
        first = asyncio.create_task(limit.aacquire(1.0, sleep=park))  # goes at 1
        second = asyncio.create_task(limit.aacquire(0.5, sleep=park))  # goes at 1.5
        await all_parked.wait()
        assert parked == [1.0, 1.5]
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        # Half of the first one's token lies under the second's slot, which keeps its time;
        # the other half comes back, so a newcomer queues right behind the second.
        assert limit.reserve(0.5) == 1.5
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)

    asyncio.run(main())


def test_threads_and_tasks_share_one_bucket() -> None:
    clock = FakeClock(0.0)
    limit = RateLimiter(4, 1.0, burst=4, clock=clock)
    waits: list[float] = []

    async def nosleep(seconds: float) -> None:
        return None

    async def tasks() -> None:
        waits.extend(await asyncio.gather(*(limit.aacquire(sleep=nosleep) for _ in range(3))))

    thread = threading.Thread(target=lambda: asyncio.run(tasks()))
    thread.start()
    thread.join(10)
    waits.extend(limit.acquire(sleep=lambda s: None) for _ in range(3))
    assert sorted(waits) == [0.0] * 4 + [0.25, 0.5]
