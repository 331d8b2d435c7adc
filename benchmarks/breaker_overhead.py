"""Per-call overhead of aegis-breaker against pybreaker and circuitbreaker, in one run.

Run: ``.venv/bin/python benchmarks/breaker_overhead.py`` (pybreaker and circuitbreaker come from
the ``peers`` dependency group). Every breaker is CLOSED and wraps a no-op, timed from one
thread and from two, under each trip policy (consecutive failures, the default; a count
window; a time window with slow-call timing); then 2 threads x 50 calls of a 10 ms sleep show
whether calls run in parallel (pybreaker holds its lock during the call, so it takes about
twice as long).
Every aegis case is timed once per round between its peers, mirrored (peers, aegis, aegis,
peers, half the calls each), for ``ROUNDS`` rounds; the range and the median of the
nanoseconds per call are reported, and each ratio is taken from one such mirrored group, so
both sides of it ran back to back under the same load.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from typing import TYPE_CHECKING

import circuitbreaker
import pybreaker
from aegis_breaker import AgentPool, CircuitBreaker, CountWindow, TimeWindow

if TYPE_CHECKING:
    from collections.abc import Callable

CALLS = 200_000
ROUNDS = 7
SLOW_CALLS = 50
SLOW_SLEEP_S = 0.01


def noop() -> None:
    return None


def time_threads(body: Callable[[int], None], threads: int, calls: int) -> float:
    """Seconds for *threads* threads to run body(calls // threads) each, started together."""
    per_thread = calls // threads
    barrier = threading.Barrier(threads + 1)

    def worker() -> None:
        barrier.wait()
        body(per_thread)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def loop_plain(fn: Callable[[], object]) -> Callable[[int], None]:
    def body(n: int) -> None:
        for _ in range(n):
            fn()

    return body


def loop_call(call: Callable[[Callable[[], None]], object], fn: Callable[[], None]):
    def body(n: int) -> None:
        for _ in range(n):
            call(fn)

    return body


def make_cases() -> dict[str, Callable[[int], None]]:
    ours = CircuitBreaker(5, 30.0, name="bench")
    count = CircuitBreaker(policy=CountWindow(size=100, minimum_calls=10), name="count")
    timed = CircuitBreaker(
        policy=TimeWindow(window_s=60.0, buckets=60, slow_call_duration_s=30.0), name="time"
    )
    pool = AgentPool(max_concurrent=4)
    pyb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    ours_decorated = CircuitBreaker(5, 30.0)(noop)
    cb_decorated = circuitbreaker.circuit(failure_threshold=5, recovery_timeout=30)(noop)
    return {
        "plain call (baseline)": loop_plain(noop),
        "aegis CircuitBreaker.call": loop_call(ours.call, noop),
        "aegis call, CountWindow": loop_call(count.call, noop),
        "aegis call, TimeWindow + slow": loop_call(timed.call, noop),
        "aegis @CircuitBreaker decorator": loop_plain(ours_decorated),
        "aegis AgentPool.run": loop_call(pool.run, noop),
        "pybreaker.call": loop_call(pyb.call, noop),
        "circuitbreaker @circuit": loop_plain(cb_decorated),
    }


def slow_cases() -> dict[str, Callable[[int], None]]:
    ours = CircuitBreaker(5, 30.0)
    pool = AgentPool(max_concurrent=4)
    pyb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    cb_decorated = circuitbreaker.circuit(failure_threshold=5, recovery_timeout=30)(
        lambda: time.sleep(SLOW_SLEEP_S)
    )

    def sleep() -> None:
        time.sleep(SLOW_SLEEP_S)

    return {
        "plain call (baseline)": lambda n: [sleep() for _ in range(n)] and None,
        "aegis CircuitBreaker.call": lambda n: [ours.call(sleep) for _ in range(n)] and None,
        "aegis AgentPool.run": lambda n: [pool.run(sleep) for _ in range(n)] and None,
        "pybreaker.call": lambda n: [pyb.call(sleep) for _ in range(n)] and None,
        "circuitbreaker @circuit": lambda n: [cb_decorated() for _ in range(n)] and None,
    }


def main() -> None:
    print(
        f"Python {sys.version.split()[0]}, {CALLS} no-op calls per timing, {ROUNDS} rounds: "
        "each round times every aegis case between its peers (interleaved)"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    ours = (
        "aegis CircuitBreaker.call",
        "aegis call, CountWindow",
        "aegis call, TimeWindow + slow",
        "aegis @CircuitBreaker decorator",
        "aegis AgentPool.run",
    )
    peers = ("pybreaker.call", "circuitbreaker @circuit")
    for threads in (1, 2):
        cases = make_cases()
        times: dict[str, list[float]] = {label: [] for label in cases}
        ratios: dict[tuple[str, str], list[float]] = {}
        half = CALLS // 2
        for _ in range(ROUNDS):
            for label in ("plain call (baseline)", *ours):
                if label not in ours:
                    times[label].append(time_threads(cases[label], threads, CALLS) / CALLS * 1e9)
                    continue
                # Each aegis case between its peers, mirrored (peers, aegis, aegis, peers):
                # the two sides of a ratio run back to back, under the same load.
                first = {peer: time_threads(cases[peer], threads, half) for peer in peers}
                ours_s = time_threads(cases[label], threads, half)
                ours_s += time_threads(cases[label], threads, half)
                times[label].append(ours_s / CALLS * 1e9)
                for peer in reversed(peers):
                    peer_s = first[peer] + time_threads(cases[peer], threads, half)
                    times[peer].append(peer_s / CALLS * 1e9)
                    ratios.setdefault((label, peer), []).append(peer_s / ours_s)
        print(f"\n-- CLOSED, no-op, {threads} thread(s): ns/call min / median / max --")
        for label, ns in times.items():
            print(f"{label:34}{min(ns):8.0f}{median(ns):8.0f}{max(ns):8.0f}")
        print("ratios (peer time / aegis time, back to back; higher: aegis faster): min/median/max")
        for (label, peer), values in ratios.items():
            print(
                f"  {label:32} {min(values):5.2f} {median(values):5.2f} {max(values):5.2f}"
                f"  x {peer.split('.')[0].split(' ')[0]}"
            )

    print(f"\n-- 2 threads x {SLOW_CALLS} calls of a {SLOW_SLEEP_S * 1000:.0f} ms sleep --")
    ideal = SLOW_CALLS * SLOW_SLEEP_S
    for label, body in slow_cases().items():
        seconds = time_threads(body, 2, 2 * SLOW_CALLS)
        print(f"{label:34}{seconds:8.3f} s   {seconds / ideal:5.2f}x the parallel ideal")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
