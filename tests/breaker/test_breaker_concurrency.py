from __future__ import annotations

import contextlib
import threading

import pytest
from aegis_breaker import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    CountWindow,
    TimeWindow,
    TripPolicy,
)

from .support import FakeClock, Recorder

TIMEOUT = 10.0


def run_threads(count: int, target: object) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def test_twenty_threads_in_half_open_exactly_one_probe_runs() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    breaker.open_for(5.0)
    clock.advance(5.0)
    barrier = threading.Barrier(20)
    # Everyone waits once: the probe in its body, the 19 rejected after failing, and main.
    all_tried = threading.Barrier(20 + 1)
    ran: list[int] = []
    rejected: list[CircuitOpenError] = []
    lock = threading.Lock()

    def probe_body() -> None:
        with lock:
            ran.append(1)
        all_tried.wait(TIMEOUT)

    def worker() -> None:
        barrier.wait(TIMEOUT)
        try:
            breaker.call(probe_body)
        except CircuitOpenError as exc:
            with lock:
                rejected.append(exc)
            all_tried.wait(TIMEOUT)

    main_waits = threading.Thread(target=lambda: all_tried.wait(TIMEOUT))
    main_waits.start()
    run_threads(20, worker)
    main_waits.join(TIMEOUT)
    assert len(ran) == 1
    assert len(rejected) == 19
    assert {e.state for e in rejected} == {"half_open"}
    assert breaker.state is CircuitState.CLOSED


def test_many_threads_failing_together_trip_once() -> None:
    recorder = Recorder()
    breaker = CircuitBreaker(5, 30.0, clock=FakeClock(), listeners=[recorder])
    permits = [breaker.admit() for _ in range(16)]
    barrier = threading.Barrier(16)
    queue = list(permits)
    lock = threading.Lock()

    def worker() -> None:
        with lock:
            permit = queue.pop()
        barrier.wait(TIMEOUT)
        permit.failure()

    run_threads(16, worker)
    assert recorder.transitions() == [(CircuitState.CLOSED, CircuitState.OPEN)]
    assert breaker.consecutive_failures == 5


def test_many_threads_calling_and_failing_trip_once() -> None:
    recorder = Recorder()
    breaker = CircuitBreaker(3, 30.0, clock=FakeClock(), listeners=[recorder])
    barrier = threading.Barrier(12)

    def fail() -> None:
        barrier.wait(TIMEOUT)  # all twelve are inside the breaker at once
        raise ValueError("down")

    def worker() -> None:
        with contextlib.suppress(ValueError):
            breaker.call(fail)

    run_threads(12, worker)
    assert recorder.transitions() == [(CircuitState.CLOSED, CircuitState.OPEN)]


def test_no_lock_is_held_during_calls() -> None:
    breaker = CircuitBreaker()
    barrier = threading.Barrier(2)
    results: list[int] = []

    def meet() -> int:
        return barrier.wait(TIMEOUT)  # deadlocks (and times out) if calls were serialised

    def worker() -> None:
        results.append(breaker.call(meet))

    run_threads(2, worker)
    assert sorted(results) == [0, 1]
    assert not barrier.broken


def test_concurrent_half_open_probes_respect_the_limit() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 1.0, half_open_max_calls=3, success_threshold=3, clock=clock)
    breaker.open_for(1.0)
    clock.advance(1.0)
    barrier = threading.Barrier(10)
    admitted: list[object] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait(TIMEOUT)
        try:
            permit = breaker.admit()
        except CircuitOpenError:
            return
        with lock:
            admitted.append(permit)

    run_threads(10, worker)
    assert len(admitted) == 3


@pytest.mark.parametrize(
    "policy",
    [
        CountWindow(size=10, minimum_calls=5, failure_rate_threshold=0.5),
        TimeWindow(window_s=60.0, minimum_calls=5, failure_rate_threshold=0.5),
    ],
    ids=["count", "time"],
)
def test_a_window_breaker_trips_once_when_threads_fail_together(policy: TripPolicy) -> None:
    recorder = Recorder()
    breaker = CircuitBreaker(policy=policy, clock=FakeClock(), listeners=[recorder])
    for _ in range(5):  # warm: successes now go through the lock-free tally
        breaker.call(lambda: None)
    permits = [breaker.admit() for _ in range(16)]
    barrier = threading.Barrier(16)
    queue = list(permits)
    lock = threading.Lock()

    def worker() -> None:
        with lock:
            permit = queue.pop()
        barrier.wait(TIMEOUT)
        permit.failure()

    run_threads(16, worker)
    assert recorder.transitions() == [(CircuitState.CLOSED, CircuitState.OPEN)]
    status = breaker.snapshot()
    assert status.failed_calls == 5  # 5 of 10: the sixth and later failures were late
