"""Per-call overhead of the Redis-backed breaker against pybreaker's CircuitRedisStorage.

Run: ``.venv/bin/python benchmarks/redis_breaker_overhead.py`` (needs ``redis-server`` on PATH,
redis-py and pybreaker). It starts its own redis-server on a free loopback port, without
persistence, and times, on that one server in one run: a plain call, aegis's local
`CircuitBreaker`, aegis's `RedisCircuitBreaker` and pybreaker with `CircuitRedisStorage`, all
CLOSED around a no-op (successes) and around a failing function with a limit never reached
(failures), and shared `CountWindow` and `TimeWindow` breakers; then 4 threads making
successful calls. Round trips per call are counted by the clients (each sends one command per
round trip). Each round times ``CALLS`` calls of every case in batches of ``BATCH``, the
cases taking turns batch by batch, so all of them see the same stretch of the machine's load;
``ROUNDS`` rounds give the range and median printed, and the ratios are taken per round.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING

import pybreaker
import redis
from aegis_breaker import (
    CircuitBreaker,
    CountWindow,
    RedisCircuitBreaker,
    TimeWindow,
    connect_redis,
)

if TYPE_CHECKING:
    from collections.abc import Callable

CALLS = 2_000
BATCH = 20
ROUNDS = 7
THREADS = 4


class BoomError(Exception):
    pass


def noop() -> None:
    return None


def boom() -> None:
    raise BoomError


def start_redis() -> tuple[subprocess.Popen[str], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: apt-get install -y redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="aegis-bench-redis-")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [*args, "--dir", directory, "--logfile", ""],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "Ready to accept connections" in line:
            break
    subprocess.Popen(["cat"], stdin=process.stdout, stdout=subprocess.DEVNULL)
    return process, port


class CountingRedis(redis.Redis):
    """A client that counts the commands it sends: its round trips (no pipelining here)."""

    sent = 0

    def execute_command(self, *args: object, **options: object) -> object:
        CountingRedis.sent += 1
        return super().execute_command(*args, **options)


def per_call(body: Callable[[], None], calls: int = CALLS) -> float:
    """Seconds per call over *calls* calls, on one thread."""
    start = time.perf_counter()
    for _ in range(calls):
        body()
    return (time.perf_counter() - start) / calls


def threaded_per_call(body: Callable[[], None], calls: int = CALLS) -> float:
    """Wall seconds per call with THREADS threads sharing *calls* calls."""
    each = calls // THREADS
    barrier = threading.Barrier(THREADS + 1)

    def worker() -> None:
        barrier.wait()
        for _ in range(each):
            body()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return (time.perf_counter() - start) / (each * THREADS)


def swallow(
    call: Callable[[Callable[[], None]], object], fn: Callable[[], None]
) -> Callable[[], None]:
    def body() -> None:
        with contextlib.suppress(BoomError, pybreaker.CircuitBreakerError):
            call(fn)

    return body


def main() -> None:
    server, port = start_redis()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        local = CircuitBreaker(10**9, 30.0, name="local")

        # Both clients count what they send; ours are built as connect_redis builds them.
        def our_client() -> CountingRedis:
            return CountingRedis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)

        assert type(connect_redis(url)) is redis.Redis
        ours = RedisCircuitBreaker(our_client(), "bench", 10**9, 30.0)
        count = RedisCircuitBreaker(
            our_client(), "bench-count", policy=CountWindow(size=100, minimum_calls=10)
        )
        timed = RedisCircuitBreaker(
            our_client(), "bench-time", policy=TimeWindow(window_s=60.0, buckets=60)
        )
        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, CountingRedis(host="127.0.0.1", port=port), namespace="bench"
        )
        theirs = pybreaker.CircuitBreaker(fail_max=10**9, reset_timeout=30, state_storage=storage)
        # The failure path on breakers of their own: a success after a failure on one breaker
        # would have to reset its count, which is not the path being timed.
        ours_failing = RedisCircuitBreaker(our_client(), "bench-failing", 10**9, 30.0)
        failing_storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED,
            CountingRedis(host="127.0.0.1", port=port),
            namespace="bench-failing",
        )
        theirs_failing = pybreaker.CircuitBreaker(
            fail_max=10**9, reset_timeout=30, state_storage=failing_storage
        )

        cases: dict[str, Callable[[], None]] = {
            "plain call": noop,
            "aegis CircuitBreaker (local)": lambda: local.call(noop),
            "aegis RedisCircuitBreaker, success": lambda: ours.call(noop),
            "pybreaker + CircuitRedisStorage, success": lambda: theirs.call(noop),
            "aegis RedisCircuitBreaker, failure": swallow(ours_failing.call, boom),
            "pybreaker + CircuitRedisStorage, failure": swallow(theirs_failing.call, boom),
            "aegis shared CountWindow, success": lambda: count.call(noop),
            "aegis shared TimeWindow, success": lambda: timed.call(noop),
        }
        for body in cases.values():
            body()  # warm up: connections, script cache
        times: dict[str, list[float]] = {label: [] for label in cases}
        trips: dict[str, float] = {}
        threaded: dict[str, list[float]] = {"aegis": [], "pybreaker": []}
        labels = list(cases)
        for _ in range(ROUNDS):
            # Batches of BATCH calls, every case in turn (the order mirrored every other
            # batch), so each case's time in a round spans the same stretch of load.
            spent = dict.fromkeys(labels, 0.0)
            sent = dict.fromkeys(labels, 0)
            for batch in range(CALLS // BATCH):
                for label in labels if batch % 2 == 0 else reversed(labels):
                    before = CountingRedis.sent
                    spent[label] += per_call(cases[label], BATCH) * BATCH
                    sent[label] += CountingRedis.sent - before
            for label in labels:
                times[label].append(spent[label] / CALLS * 1e6)
                trips[label] = sent[label] / CALLS
            threaded["aegis"].append(threaded_per_call(lambda: ours.call(noop)) * 1e6)
            threaded["pybreaker"].append(threaded_per_call(lambda: theirs.call(noop)) * 1e6)

        print(f"redis-server on 127.0.0.1:{port}; {CALLS} calls per timing, {ROUNDS} rounds")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        print(f"{'us/call':>53} {'min':>7} {'median':>7} {'max':>7} {'round trips':>12}")
        for label, us in times.items():
            print(
                f"{label:44}{'':9} {min(us):7.2f} {statistics.median(us):7.2f} {max(us):7.2f}"
                f" {max(trips[label], 0.0):12.2f}"
            )
        for who, us in threaded.items():
            print(
                f"{THREADS} threads, success, wall, {who:17}{'':9} {min(us):7.2f} "
                f"{statistics.median(us):7.2f} {max(us):7.2f}"
            )
        print("ratios per round (pybreaker time / aegis time; higher: aegis faster)")
        for path in ("success", "failure"):
            ratios = [
                p / a
                for p, a in zip(
                    times[f"pybreaker + CircuitRedisStorage, {path}"],
                    times[f"aegis RedisCircuitBreaker, {path}"],
                    strict=True,
                )
            ]
            print(
                f"  {path:18} min {min(ratios):.2f} median {statistics.median(ratios):.2f} "
                f"max {max(ratios):.2f}"
            )
        ratios = [p / a for p, a in zip(threaded["pybreaker"], threaded["aegis"], strict=True)]
        print(
            f"  {THREADS} threads, success min {min(ratios):.2f} "
            f"median {statistics.median(ratios):.2f} max {max(ratios):.2f}"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
