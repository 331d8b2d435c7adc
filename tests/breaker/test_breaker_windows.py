"""Window trip policies, after resilience4j's metrics and state-machine tests (semantics only).

resilience4j's FixedSizeSlidingWindowMetricsTest, SlidingTimeWindowMetricsTest and the window
cases of CircuitBreakerStateMachineTest: minimum calls, a rate exactly at its threshold, slow
calls tripping on their own, roll-over of the window on a mock clock, and half-open probes
evaluated as their own window. Rates here are fractions (0.5), where resilience4j uses percent.
"""

from __future__ import annotations

import threading

import pytest
from aegis_breaker import (
    AgentPool,
    BreakerSettings,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    ConsecutiveFailures,
    CountWindow,
    TimeWindow,
    TripPolicy,
)

from .support import BoomError, FakeClock, Recorder, boom, ok, state_of

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(BoomError):
            breaker.call(boom)


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.call(ok) == "ok"


def slow(
    breaker: CircuitBreaker, clock: FakeClock, seconds: float, *, failing: bool = False
) -> None:
    """One call that takes *seconds* on the fake clock."""

    def body() -> str:
        clock.advance(seconds)
        if failing:
            raise BoomError
        return "ok"

    if failing:
        with pytest.raises(BoomError):
            breaker.call(body)
    else:
        breaker.call(body)


def make(policy: TripPolicy, clock: FakeClock | None = None, **kwargs: object) -> CircuitBreaker:
    return CircuitBreaker(
        policy=policy,
        recovery_timeout_s=10.0,
        clock=clock or FakeClock(),
        **kwargs,  # type: ignore[arg-type]
    )


# -- count window (FixedSizeSlidingWindowMetricsTest) ---------------------------------------


def test_count_window_does_not_trip_below_minimum_calls() -> None:
    breaker = make(CountWindow(size=10, minimum_calls=5, failure_rate_threshold=0.5))
    fail(breaker, 4)  # 100% failures, but only 4 calls
    status = breaker.snapshot()
    assert status.state is CLOSED
    assert status.calls_in_window == 4
    assert status.failure_rate is None  # not evaluated below the minimum
    fail(breaker)
    assert state_of(breaker) is OPEN


def test_count_window_minimum_is_capped_at_the_window_size() -> None:
    breaker = make(CountWindow(size=3, minimum_calls=100, failure_rate_threshold=1.0))
    fail(breaker, 3)
    assert state_of(breaker) is OPEN


def test_a_rate_exactly_at_the_threshold_trips() -> None:
    breaker = make(CountWindow(size=10, minimum_calls=10, failure_rate_threshold=0.3))
    succeed(breaker, 7)
    fail(breaker, 2)
    assert state_of(breaker) is CLOSED  # 2 of 9: below the minimum anyway
    fail(breaker)  # 3 of 10 = 30%
    assert state_of(breaker) is OPEN


def test_a_rate_just_below_the_threshold_does_not_trip() -> None:
    breaker = make(CountWindow(size=10, minimum_calls=10, failure_rate_threshold=0.3))
    succeed(breaker, 8)
    fail(breaker, 2)  # 20%
    assert breaker.snapshot().failure_rate == pytest.approx(0.2)
    assert state_of(breaker) is CLOSED


def test_the_oldest_outcome_leaves_a_full_count_window() -> None:
    breaker = make(CountWindow(size=4, minimum_calls=4, failure_rate_threshold=0.75))
    fail(breaker, 2)
    succeed(breaker, 2)  # [F, F, S, S]: 50%
    assert breaker.snapshot().failure_rate == 0.5
    fail(breaker)  # [F, S, S, F]: the first failure rolled out, still 50%
    status = breaker.snapshot()
    assert (status.calls_in_window, status.failed_calls, status.failure_rate) == (4, 2, 0.5)
    assert status.state is CLOSED
    fail(breaker)  # [S, S, F, F] -> 50%
    assert state_of(breaker) is CLOSED
    fail(breaker)  # [S, F, F, F] -> 75%
    assert state_of(breaker) is OPEN


def test_slow_successes_trip_on_their_own() -> None:
    clock = FakeClock()
    breaker = make(
        CountWindow(
            size=4,
            minimum_calls=4,
            failure_rate_threshold=1.0,
            slow_call_duration_s=2.0,
            slow_call_rate_threshold=0.5,
        ),
        clock,
    )
    slow(breaker, clock, 2.0)  # exactly at the duration: not slow
    slow(breaker, clock, 0.1)
    slow(breaker, clock, 2.5)
    status = breaker.snapshot()
    assert (status.slow_calls, status.failed_calls) == (1, 0)
    slow(breaker, clock, 40.0)  # 2 of 4 slow = 50%, no failure at all
    assert state_of(breaker) is OPEN
    status = breaker.snapshot()
    assert status.slow_call_rate == 0.5
    assert status.failure_rate == 0.0


def test_a_slow_failure_counts_as_failed_and_as_slow() -> None:
    clock = FakeClock()
    breaker = make(
        CountWindow(size=10, minimum_calls=1, failure_rate_threshold=1.0, slow_call_duration_s=1.0),
        clock,
    )
    succeed(breaker)
    slow(breaker, clock, 3.0, failing=True)
    status = breaker.snapshot()
    assert (status.calls_in_window, status.failed_calls, status.slow_calls) == (2, 1, 1)
    assert status.slow_call_rate == 0.5


def test_ignored_outcomes_never_enter_the_window() -> None:
    breaker = make(
        CountWindow(size=4, minimum_calls=2, failure_rate_threshold=0.5),
        is_failure=lambda exc: not isinstance(exc, ValueError),
    )

    def bad_request() -> str:
        raise ValueError("400")

    for _ in range(5):
        with pytest.raises(ValueError, match="400"):
            breaker.call(bad_request)
    assert breaker.snapshot().calls_in_window == 0
    assert state_of(breaker) is CLOSED


def test_consecutive_failures_are_tracked_under_a_window_policy_too() -> None:
    breaker = make(CountWindow(size=100, minimum_calls=100))
    fail(breaker, 3)
    assert breaker.consecutive_failures == 3
    succeed(breaker)
    assert breaker.consecutive_failures == 0


# -- time window (SlidingTimeWindowMetricsTest) ---------------------------------------------


def test_time_window_rolls_over_on_the_clock() -> None:
    clock = FakeClock(0.0)
    breaker = make(TimeWindow(window_s=5.0, buckets=5, minimum_calls=100), clock)
    fail(breaker)  # bucket 0
    succeed(breaker)
    clock.advance(1.0)
    succeed(breaker, 2)  # bucket 1
    assert breaker.snapshot().calls_in_window == 4
    clock.advance(3.9)  # t = 4.9: bucket 4, everything still inside
    assert breaker.snapshot().calls_in_window == 4
    clock.advance(0.1)  # t = 5.0: bucket 5, bucket 0 has left
    status = breaker.snapshot()
    assert (status.calls_in_window, status.failed_calls) == (2, 0)
    clock.advance(1.0)  # t = 6.0: bucket 1 has left too
    assert breaker.snapshot().calls_in_window == 0


def test_a_clock_jump_past_the_window_empties_it() -> None:
    clock = FakeClock(0.0)
    breaker = make(TimeWindow(window_s=60.0, buckets=60, minimum_calls=100), clock)
    for second in range(30):
        clock.now = float(second)
        fail(breaker)
    assert breaker.snapshot().failed_calls == 30
    clock.advance(1_000_000.0)
    assert breaker.snapshot().calls_in_window == 0


def test_time_window_minimum_calls_and_threshold() -> None:
    clock = FakeClock(0.0)
    breaker = make(
        TimeWindow(window_s=10.0, buckets=10, minimum_calls=10, failure_rate_threshold=0.3),
        clock,
    )
    for i in range(9):
        clock.advance(0.5)
        if i < 3:
            fail(breaker)
        else:
            succeed(breaker)
    assert state_of(breaker) is CLOSED  # 3 of 9: below the minimum
    succeed(breaker)  # 3 of 10 = 30%
    assert state_of(breaker) is OPEN


def test_old_failures_leave_the_time_window_before_they_can_trip_it() -> None:
    clock = FakeClock(0.0)
    breaker = make(
        TimeWindow(window_s=2.0, buckets=2, minimum_calls=2, failure_rate_threshold=1.0), clock
    )
    fail(breaker)
    clock.advance(2.0)  # that failure is gone
    fail(breaker)
    assert state_of(breaker) is CLOSED
    fail(breaker)
    assert state_of(breaker) is OPEN


def test_time_window_slow_calls_trip_on_their_own() -> None:
    clock = FakeClock(0.0)
    breaker = make(
        TimeWindow(
            window_s=60.0,
            minimum_calls=3,
            slow_call_duration_s=10.0,
            slow_call_rate_threshold=0.6,
        ),
        clock,
    )
    slow(breaker, clock, 40.0)
    slow(breaker, clock, 1.0)
    assert state_of(breaker) is CLOSED
    slow(breaker, clock, 12.0)  # 2 of 3 slow
    assert state_of(breaker) is OPEN


# -- the state machine with a window (CircuitBreakerStateMachineTest) -----------------------


def half_open_breaker(permitted: int = 4) -> tuple[CircuitBreaker, FakeClock, Recorder]:
    clock = FakeClock()
    recorder = Recorder()
    breaker = make(
        CountWindow(size=5, minimum_calls=5, failure_rate_threshold=0.5),
        clock,
        half_open_max_calls=permitted,
        listeners=[recorder],
    )
    fail(breaker, 5)
    assert state_of(breaker) is OPEN
    clock.advance(10.0)
    assert state_of(breaker) is HALF_OPEN
    return breaker, clock, recorder


def test_half_open_probes_are_their_own_window_and_reopen_at_the_threshold() -> None:
    breaker, _, recorder = half_open_breaker()
    succeed(breaker, 2)
    fail(breaker)
    assert state_of(breaker) is HALF_OPEN  # 3 of 4 permitted calls: no decision yet
    assert breaker.snapshot().calls_in_window == 3
    fail(breaker)  # 2 of 4 = 50%
    assert state_of(breaker) is OPEN
    assert recorder.transitions()[-1] == (HALF_OPEN, OPEN)


def test_half_open_probes_below_the_threshold_close_it() -> None:
    breaker, _, recorder = half_open_breaker()
    fail(breaker)  # one failure does not reopen a window breaker on its own
    succeed(breaker, 2)
    assert state_of(breaker) is HALF_OPEN
    succeed(breaker)  # 1 of 4 = 25%
    assert state_of(breaker) is CLOSED
    assert recorder.transitions()[-1] == (HALF_OPEN, CLOSED)
    status = breaker.snapshot()
    assert status.calls_in_window == 0  # a fresh closed window


def test_half_open_rejects_beyond_its_permitted_calls_in_flight() -> None:
    breaker, _, _ = half_open_breaker(permitted=2)
    first, second = breaker.admit(), breaker.admit()
    with pytest.raises(CircuitOpenError) as caught:
        breaker.admit()
    assert caught.value.state is HALF_OPEN
    first.success()
    second.failure()  # 1 of 2 = 50%
    assert state_of(breaker) is OPEN


def test_a_thirty_percent_failure_rate_trips_a_pool_endpoint() -> None:
    pool = AgentPool(
        max_concurrent=4,
        policy=CountWindow(size=20, minimum_calls=10, failure_rate_threshold=0.3),
    )
    for i in range(10):
        if i % 10 < 3:
            with pytest.raises(BoomError):
                pool.run_on("flaky", boom)
        else:
            pool.run_on("flaky", ok)
    assert pool.breaker("flaky").state is OPEN
    assert pool.breaker("default").state is CLOSED
    status = pool.status()
    assert status["state"] == "open"
    flaky = status["breakers"]["flaky"]  # type: ignore[index]
    assert flaky["failure_rate"] == pytest.approx(0.3)


def test_settings_value_is_shared_and_validated() -> None:
    settings = BreakerSettings(
        recovery_timeout_s=5, policy=CountWindow(size=5, minimum_calls=2), half_open_max_calls=2
    )
    assert settings.recovery_timeout_s == 5.0
    breaker = CircuitBreaker(settings=settings, name="s")
    assert breaker.settings is settings
    assert breaker.policy == CountWindow(size=5, minimum_calls=2)
    pool = AgentPool(settings=settings)
    assert pool.breaker("k").settings is settings
    assert BreakerSettings().trip_policy == ConsecutiveFailures(5)
    with pytest.raises(TypeError, match="recovery_timeout_s"):
        CircuitBreaker(recovery_timeout_s=1.0, settings=settings)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: CountWindow(size=0), "size must be >= 1"),
        (lambda: CountWindow(failure_rate_threshold=0.0), "failure_rate_threshold"),
        (lambda: CountWindow(failure_rate_threshold=1.5), "failure_rate_threshold"),
        (lambda: CountWindow(minimum_calls=0), "minimum_calls"),
        (lambda: CountWindow(slow_call_duration_s=0.0), "slow_call_duration_s"),
        (lambda: CountWindow(slow_call_rate_threshold=float("nan")), "slow_call_rate"),
        (lambda: TimeWindow(window_s=0.0), "window_s"),
        (lambda: TimeWindow(window_s=float("inf")), "window_s"),
        (lambda: TimeWindow(buckets=0), "buckets"),
        (lambda: ConsecutiveFailures(0), "limit"),
        (lambda: BreakerSettings(half_open_max_wait_s=0.0), "half_open_max_wait_s"),
        (lambda: CircuitBreaker(name="n", success_threshold=0), "'n': success_threshold"),
    ],
)
def test_invalid_policies_cannot_exist(build: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()  # type: ignore[operator]


def test_a_policy_must_be_a_policy() -> None:
    with pytest.raises(TypeError, match="policy"):
        BreakerSettings(policy="50%")  # type: ignore[arg-type]


# -- the lock-free success path: successes noted on a tally, folded in before any read ------


def test_many_noted_successes_overwrite_the_whole_count_window() -> None:
    breaker = make(CountWindow(size=4, minimum_calls=2, failure_rate_threshold=0.6))
    fail(breaker)
    succeed(breaker)  # warm: 1 of 2 failed, below 60%; successes no longer need the lock
    succeed(breaker, 2)
    assert breaker.snapshot().failed_calls == 1  # [F, S, S, S]
    succeed(breaker, 10)
    status = breaker.snapshot()
    assert (status.calls_in_window, status.failed_calls, status.failure_rate) == (4, 0, 0.0)
    fail(breaker, 2)  # [S, S, F, F]: 50%
    assert state_of(breaker) is CLOSED
    fail(breaker)  # [S, F, F, F]: 75%
    assert state_of(breaker) is OPEN


def test_noted_successes_leave_the_time_window_with_their_bucket() -> None:
    clock = FakeClock(0.0)
    breaker = make(
        TimeWindow(window_s=3.0, buckets=3, minimum_calls=2, failure_rate_threshold=0.3), clock
    )
    succeed(breaker, 2)  # warm
    succeed(breaker, 5)  # noted without the lock, in bucket 0
    assert breaker.snapshot().calls_in_window == 7
    clock.advance(1.0)
    fail(breaker)  # bucket 1: 1 of 8
    succeed(breaker)  # 1 of 9, and the consecutive count is back to 0
    assert state_of(breaker) is CLOSED
    clock.advance(2.0)  # bucket 3: bucket 0 (7 successes) has left, bucket 1 stays
    status = breaker.snapshot()
    assert (status.calls_in_window, status.failed_calls) == (2, 1)
    # A new bucket since the last verdict: this success is judged, and 1 failure in 3 calls
    # reaches 30%, so a success trips the breaker, as in resilience4j.
    succeed(breaker)
    assert state_of(breaker) is OPEN


def test_a_success_in_a_new_bucket_is_judged_even_without_a_look_in_between() -> None:
    clock = FakeClock(0.0)
    breaker = make(
        TimeWindow(window_s=2.0, buckets=2, minimum_calls=2, failure_rate_threshold=0.3), clock
    )
    succeed(breaker, 4)  # bucket 0, warm
    clock.advance(1.0)
    fail(breaker)
    succeed(breaker)  # bucket 1: 1 failure in 6 calls
    clock.advance(1.0)  # bucket 2: bucket 0 leaves, nobody looks
    succeed(breaker)  # [F, S, S]: 33%
    assert state_of(breaker) is OPEN


def test_a_success_after_a_failure_resets_the_consecutive_count_under_a_window() -> None:
    breaker = make(CountWindow(size=10, minimum_calls=1, failure_rate_threshold=1.0))
    succeed(breaker, 3)
    fail(breaker)
    assert breaker.consecutive_failures == 1
    succeed(breaker)
    assert breaker.consecutive_failures == 0


@pytest.mark.parametrize(
    "policy",
    [
        CountWindow(size=1000, minimum_calls=10, failure_rate_threshold=1.0),
        TimeWindow(window_s=1e6, buckets=10, minimum_calls=10, failure_rate_threshold=1.0),
    ],
    ids=["count", "time"],
)
def test_threads_lose_no_outcome(policy: TripPolicy) -> None:
    threads, calls = 4, 200
    breaker = CircuitBreaker(policy=policy)
    barrier = threading.Barrier(threads)

    def worker(index: int) -> None:
        barrier.wait()
        for i in range(calls):
            if (i + index) % 10 == 0:
                with pytest.raises(BoomError):
                    breaker.call(boom)
            else:
                breaker.call(ok)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    status = breaker.snapshot()
    assert status.state is CLOSED
    assert status.calls_in_window == threads * calls
    assert status.failed_calls == threads * calls // 10
