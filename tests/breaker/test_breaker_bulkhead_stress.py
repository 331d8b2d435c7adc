"""The bulkhead's lock-free permits under contention: never over the limit, no lost wake-ups."""

from __future__ import annotations

import asyncio
import threading
import time

from aegis_breaker import Bulkhead

ROUNDS = 300


def test_threads_hammering_one_permit_never_overlap_and_never_hang() -> None:
    bulkhead = Bulkhead(1)
    start = threading.Barrier(8)
    lock = threading.Lock()
    inside = 0
    peak = 0
    done = 0

    def worker() -> None:
        nonlocal inside, peak, done
        start.wait()
        for _ in range(ROUNDS):
            with bulkhead:
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0)  # give up the GIL while holding the permit: others must queue
                with lock:
                    inside -= 1
                    done += 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # A lost wake-up would leave a waiter asleep with the permit free: join would time out.
    assert not any(thread.is_alive() for thread in threads)
    assert done == 8 * ROUNDS
    assert peak == 1
    assert bulkhead.active == 0
    assert not bulkhead._waiters


def test_threads_and_an_event_loop_share_the_limit() -> None:
    bulkhead = Bulkhead(2)
    lock = threading.Lock()
    inside = 0
    peak = 0

    def enter() -> None:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)

    def leave() -> None:
        nonlocal inside
        with lock:
            inside -= 1

    def thread_worker() -> None:
        for _ in range(ROUNDS):
            with bulkhead:
                enter()
                time.sleep(0)
                leave()

    async def task_worker() -> None:
        for _ in range(ROUNDS):
            async with bulkhead:
                enter()
                await asyncio.sleep(0)
                leave()

    async def tasks() -> None:
        await asyncio.gather(*(task_worker() for _ in range(4)))

    threads = [threading.Thread(target=thread_worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    asyncio.run(tasks())
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert peak <= 2
    assert bulkhead.active == 0
