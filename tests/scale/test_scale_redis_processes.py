"""Processes sharing one Redis-backed breaker: one trip, exact probes, crash-safe probes."""

from __future__ import annotations

import multiprocessing
import signal
import time
import uuid

import pytest
from aegis_breaker import CircuitOpenError, CircuitState, RedisCircuitBreaker, connect_redis

from tests.scale import _workers
from tests.scale.conftest import RedisServer

pytestmark = pytest.mark.timeout(60)

# fork starts the children in milliseconds; the targets live in a module so spawn works too.
ctx = multiprocessing.get_context("fork")
PROCESSES = 4


def _name() -> str:
    return f"test-{uuid.uuid4().hex}"


def test_four_processes_hammering_one_breaker_trip_it_exactly_once(
    redis_server: RedisServer,
) -> None:
    name, limit, calls = _name(), 150, 100
    barrier = ctx.Barrier(PROCESSES)
    out: multiprocessing.Queue[tuple[int, int, int]] = ctx.Queue()
    procs = [
        ctx.Process(
            target=_workers.hammer, args=(redis_server.url, name, limit, calls, barrier, out)
        )
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=50) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    admitted = sum(r[0] for r in results)
    rejected = sum(r[1] for r in results)
    trips = sum(r[2] for r in results)
    assert admitted + rejected == PROCESSES * calls
    assert trips == 1  # exactly one process made the CLOSED -> OPEN transition
    # Calls admitted before the trip and still in flight may finish after it: at most one per
    # other process. Their late failures must not count.
    assert limit <= admitted <= limit + PROCESSES - 1
    breaker = RedisCircuitBreaker(connect_redis(redis_server.url), name, limit, 60.0)
    assert breaker.state is CircuitState.OPEN
    assert breaker.consecutive_failures == limit


def test_processes_filling_one_shared_time_window_lose_no_outcome(
    redis_server: RedisServer,
) -> None:
    # Every outcome is a compare-and-set on one hash; racing writers decide again on the
    # state that won, so the window ends up with every call of every process.
    name, calls = _name(), 60
    barrier = ctx.Barrier(PROCESSES)
    out: multiprocessing.Queue[int] = ctx.Queue()
    procs = [
        ctx.Process(target=_workers.fill_window, args=(redis_server.url, name, calls, barrier, out))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    assert sum(out.get(timeout=50) for _ in procs) == PROCESSES * calls
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    breaker = RedisCircuitBreaker(
        connect_redis(redis_server.url), name, policy=_workers.COUNTING_WINDOW
    )
    status = breaker.snapshot()
    assert status.state is CircuitState.CLOSED
    assert status.calls_in_window == PROCESSES * calls
    assert status.failed_calls == PROCESSES * (calls // 3)


@pytest.mark.parametrize("max_calls", [1, 3])
def test_half_open_admits_exactly_max_calls_probes_across_processes(
    redis_server: RedisServer, max_calls: int
) -> None:
    name = _name()
    opener = RedisCircuitBreaker(
        connect_redis(redis_server.url), name, 1, 0.0, half_open_max_calls=max_calls
    )
    opener.open_for(0.0)  # OPEN, due to turn HALF_OPEN on the next look
    barrier = ctx.Barrier(PROCESSES)
    out: multiprocessing.Queue[int] = ctx.Queue()
    procs = [
        ctx.Process(
            target=_workers.probe, args=(redis_server.url, name, max_calls, 25, barrier, out)
        )
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    admitted = [out.get(timeout=50) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    assert sum(admitted) == max_calls
    assert opener.state is CircuitState.CLOSED  # the first probe success closed it


def test_a_process_crashing_with_the_probe_does_not_wedge_the_breaker(
    redis_server: RedisServer,
) -> None:
    name, max_wait_s = _name(), 0.3
    breaker = RedisCircuitBreaker(
        connect_redis(redis_server.url), name, 1, 0.0, half_open_max_wait_s=max_wait_s
    )
    breaker.open_for(0.0)
    out: multiprocessing.Queue[bool] = ctx.Queue()
    child = ctx.Process(
        target=_workers.crash_during_probe, args=(redis_server.url, name, max_wait_s, out)
    )
    child.start()
    assert out.get(timeout=30) is True  # the child holds the only probe slot ...
    child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL  # ... and died without reporting
    with pytest.raises(CircuitOpenError) as rejected:
        breaker.admit()
    assert rejected.value.state == "half_open"
    assert 0.0 < rejected.value.retry_after_s <= max_wait_s
    # Waiting out the probe's expiry on the Redis server's clock is the behaviour under test.
    time.sleep(rejected.value.retry_after_s + 0.01)
    permit = breaker.admit()
    assert permit.is_probe
    permit.success()
    assert breaker.state is CircuitState.CLOSED
