"""Per-call overhead of aegis's RateLimiter against pyrate-limiter and limits, in one run.

Run: ``.venv/bin/python benchmarks/ratelimiter_overhead.py``. The peers are not project
dependencies; install them into the venv for the benchmark only:
``uv pip install --python .venv/bin/python pyrate-limiter limits``. A peer that is missing is
skipped, and a naive lock + deque sliding window written here is always in the run.

Every limiter allows far more than the run asks for, so no call ever waits: what is timed is
the bookkeeping of one admission. Timed, best of ``REPEATS``:

- ``try_acquire`` (non-blocking) on one thread: aegis `RateLimiter.try_acquire`,
  pyrate-limiter's token bucket (``StateBucket`` + ``TokenBucket``, ``blocking=False``) and
  its default in-memory log bucket, limits' moving and fixed windows (``hit``), the naive one;
- ``acquire`` (blocking, admitted at once): aegis `RateLimiter.acquire` and pyrate-limiter's
  ``try_acquire(blocking=True)``;
- ``try_acquire`` from 4 threads at once;
- when ``redis-server`` is on PATH, the shared limiters on one local server: aegis
  `RedisRateLimiter.try_acquire`, pyrate-limiter's ``RedisStateStore`` token bucket and limits'
  Redis moving window.

Ratios are the peer's time over aegis's (above 1: aegis is faster).
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING

from aegis_breaker import RateLimiter, RedisRateLimiter, connect_redis

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CALLS = 50_000
REDIS_CALLS = 3_000
REPEATS = 5
THREADS = 4
HUGE = 10**9  # admissions per minute: nothing ever waits


class NaiveSlidingWindow:
    """The obvious hand-written limiter: timestamps in a deque under a lock."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self.hits: collections.deque[float] = collections.deque()
        self.lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self.lock:
            now = time.monotonic()
            hits = self.hits
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            return True


def per_call_ns(call: Callable[[], object], calls: int = CALLS) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def threaded_ns(call: Callable[[], object]) -> float:
    per_thread = CALLS // THREADS
    best = float("inf")
    for _ in range(REPEATS):
        barrier = threading.Barrier(THREADS + 1)

        def work(barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            for _ in range(per_thread):
                call()
            barrier.wait()

        threads = [threading.Thread(target=work) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        barrier.wait()
        start = time.perf_counter_ns()
        barrier.wait()
        best = min(best, (time.perf_counter_ns() - start) / (per_thread * THREADS))
        for thread in threads:
            thread.join()
    return best


def peers() -> dict[str, Callable[[], object]]:
    found: dict[str, Callable[[], object]] = {}
    try:
        import pyrate_limiter as pyrate  # noqa: PLC0415  # optional peer
    except ImportError:
        print("pyrate-limiter not installed: skipped")
    else:
        rate = pyrate.Rate(HUGE, pyrate.Duration.MINUTE)
        bucket = pyrate.StateBucket([rate], algorithm=pyrate.TokenBucket())
        token = pyrate.Limiter(bucket)
        found["pyrate-limiter token bucket"] = lambda: token.try_acquire("k", blocking=False)
        log = pyrate.Limiter(pyrate.InMemoryBucket([pyrate.Rate(HUGE, pyrate.Duration.MINUTE)]))
        found["pyrate-limiter in-memory log"] = lambda: log.try_acquire("k", blocking=False)
    try:
        import limits  # noqa: PLC0415  # optional peer
    except ImportError:
        print("limits not installed: skipped")
    else:
        item = limits.RateLimitItemPerMinute(HUGE)
        moving = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage())
        fixed = limits.strategies.FixedWindowRateLimiter(limits.storage.MemoryStorage())
        found["limits moving window"] = lambda: moving.hit(item, "k")
        found["limits fixed window"] = lambda: fixed.hit(item, "k")
    naive = NaiveSlidingWindow(HUGE, 60.0)
    found["naive lock+deque window"] = naive.try_acquire
    return found


def report(title: str, ours_name: str, ours_ns: float, others: dict[str, float]) -> None:
    print(f"\n{title}")
    print(f"  {ours_name:<34} {ours_ns:8.0f} ns/call")
    for name, ns in others.items():
        print(f"  {name:<34} {ns:8.0f} ns/call   ratio {ns / ours_ns:5.2f}x")


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        print("\nredis-server not found: the shared limiters are skipped")
        yield None
        return
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
    drain = subprocess.Popen(["cat"], stdin=process.stdout, stdout=subprocess.DEVNULL)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
        drain.wait(timeout=10)


def shared(url: str) -> None:
    ours = RedisRateLimiter(connect_redis(url), "bench", HUGE)
    ours_ns = per_call_ns(ours.try_acquire, REDIS_CALLS)
    others: dict[str, float] = {}
    with contextlib.suppress(ImportError):
        import pyrate_limiter as pyrate  # noqa: PLC0415  # optional peer
        import redis  # noqa: PLC0415  # optional peer

        store = pyrate.RedisStateStore(redis.Redis.from_url(url), "pyrate-bench")
        rate = pyrate.Rate(HUGE, pyrate.Duration.MINUTE)
        bucket = pyrate.StateBucket([rate], algorithm=pyrate.TokenBucket(), store=store)
        limiter = pyrate.Limiter(bucket)
        others["pyrate-limiter Redis token bucket"] = per_call_ns(
            lambda: limiter.try_acquire("k", blocking=False), REDIS_CALLS
        )
    with contextlib.suppress(ImportError):
        import limits  # noqa: PLC0415  # optional peer

        item = limits.RateLimitItemPerMinute(HUGE)
        moving = limits.strategies.MovingWindowRateLimiter(limits.storage.storage_from_string(url))
        others["limits Redis moving window"] = per_call_ns(
            lambda: moving.hit(item, "k"), REDIS_CALLS
        )
    report(
        "shared through one local redis-server: try_acquire",
        "aegis RedisRateLimiter",
        ours_ns,
        others,
    )


def main() -> None:
    print(f"python {sys.version.split()[0]}, best of {REPEATS}, {CALLS} calls per run")
    ours = RateLimiter(HUGE)
    found = peers()
    report(
        "one thread: try_acquire (non-blocking)",
        "aegis RateLimiter",
        per_call_ns(ours.try_acquire),
        {name: per_call_ns(call) for name, call in found.items()},
    )
    blocking: dict[str, float] = {}
    with contextlib.suppress(ImportError):
        import pyrate_limiter as pyrate  # noqa: PLC0415  # optional peer

        rate = pyrate.Rate(HUGE, pyrate.Duration.MINUTE)
        token = pyrate.Limiter(pyrate.StateBucket([rate], algorithm=pyrate.TokenBucket()))
        blocking["pyrate-limiter token bucket"] = per_call_ns(lambda: token.try_acquire("k"))
    report(
        "one thread: acquire (blocking, admitted at once)",
        "aegis RateLimiter",
        per_call_ns(ours.acquire),
        blocking,
    )
    report(
        f"{THREADS} threads: try_acquire",
        "aegis RateLimiter",
        threaded_ns(ours.try_acquire),
        {name: threaded_ns(call) for name, call in peers().items()},
    )
    with redis_server() as url:
        if url is not None:
            shared(url)


if __name__ == "__main__":
    main()
