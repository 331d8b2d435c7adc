"""Per-call overhead of the Redis-backed breaker against pybreaker's CircuitRedisStorage.

Run: ``.venv/bin/python benchmarks/redis_breaker_overhead.py`` (needs ``redis-server`` on PATH,
redis-py and pybreaker). It starts its own redis-server on a free loopback port, without
persistence, and times, on that one server in one run: a plain call, aegis's local
`CircuitBreaker`, aegis's `RedisCircuitBreaker` and pybreaker with `CircuitRedisStorage`, all
CLOSED around a no-op (successes) and around a failing function with a limit never reached
(failures); then 4 threads making successful calls. Round trips per call are counted by the
clients (each sends one command per round trip). Best of ``REPEATS`` runs.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING

import pybreaker
import redis
from aegis_breaker import CircuitBreaker, RedisCircuitBreaker, connect_redis

if TYPE_CHECKING:
    from collections.abc import Callable

CALLS = 5_000
REPEATS = 3
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
    """Best seconds per call over REPEATS runs of *calls* calls, on one thread."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            body()
        times.append((time.perf_counter() - start) / calls)
    return min(times)


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
        # Both clients count what they send; ours is built as connect_redis builds it.
        ours_client = CountingRedis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        assert type(connect_redis(url)) is redis.Redis
        ours = RedisCircuitBreaker(ours_client, "bench", 10**9, 30.0)
        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, CountingRedis(host="127.0.0.1", port=port), namespace="bench"
        )
        theirs = pybreaker.CircuitBreaker(fail_max=10**9, reset_timeout=30, state_storage=storage)

        rows: list[tuple[str, float, float | None]] = []

        def measure(label: str, body: Callable[[], None]) -> float:
            body()  # warm up: connections, script cache
            before = CountingRedis.sent
            seconds = per_call(body)
            issued = (CountingRedis.sent - before) / (CALLS * REPEATS)
            rows.append((label, seconds, issued))
            return seconds

        plain = measure("plain call", noop)
        measure("aegis CircuitBreaker (local)", lambda: local.call(noop))
        ours_ok = measure("aegis RedisCircuitBreaker, success", lambda: ours.call(noop))
        theirs_ok = measure("pybreaker + CircuitRedisStorage, success", lambda: theirs.call(noop))
        ours_fail = measure("aegis RedisCircuitBreaker, failure", swallow(ours.call, boom))
        theirs_fail = measure(
            "pybreaker + CircuitRedisStorage, failure", swallow(theirs.call, boom)
        )
        ours_mt = threaded_per_call(lambda: ours.call(noop))
        theirs_mt = threaded_per_call(lambda: theirs.call(noop))

        print(f"redis-server on 127.0.0.1:{port}; {CALLS} calls x best of {REPEATS}")
        print(f"{'':44} {'us/call':>9} {'round trips/call':>17}")
        for label, seconds, issued in rows:
            cmds = "" if issued is None else f"{max(issued, 0.0):.2f}"
            print(f"{label:44} {seconds * 1e6:9.2f} {cmds:>17}")
        print(f"{THREADS} threads, success, wall us/call: aegis {ours_mt * 1e6:.2f}, "
              f"pybreaker {theirs_mt * 1e6:.2f}")  # fmt: skip
        print("ratios (pybreaker time / aegis time, higher = aegis faster):")
        print(f"  success path     {theirs_ok / ours_ok:.2f}x")
        print(f"  failure path     {theirs_fail / ours_fail:.2f}x")
        print(f"  {THREADS} threads, success {theirs_mt / ours_mt:.2f}x")
        print(f"aegis Redis overhead over a plain call: {(ours_ok - plain) * 1e6:.2f} us (success)")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
