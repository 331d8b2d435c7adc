"""Operator controls, typed status, call listeners, generator functions, a huge bulkhead."""

from __future__ import annotations

import asyncio
import math
import pickle
import sys
from collections.abc import AsyncGenerator, Generator

import pytest
from aegis_breaker import (
    AgentPool,
    BreakerStatus,
    Bulkhead,
    CallEvent,
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    CountWindow,
    StateChanged,
)

from .support import BoomError, FakeClock, Recorder, boom, ok, state_of

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
FORCED_OPEN, DISABLED = CircuitState.FORCED_OPEN, CircuitState.DISABLED


def breaker_with(recorder: Recorder, **kwargs: object) -> CircuitBreaker:
    return CircuitBreaker(
        2,
        10.0,
        clock=kwargs.pop("clock", FakeClock()),  # type: ignore[arg-type]
        name="ops",
        listeners=[recorder],
        **kwargs,  # type: ignore[arg-type]
    )


# -- operator controls ---------------------------------------------------------------------


def test_force_open_rejects_everything_until_reset() -> None:
    recorder = Recorder()
    clock = FakeClock()
    breaker = breaker_with(recorder, clock=clock)
    breaker.force_open()
    breaker.force_open()  # already forced: no second event
    clock.advance(1e9)  # never half-opens by itself
    with pytest.raises(CircuitOpenError) as caught:
        breaker.call(ok)
    assert caught.value.state is FORCED_OPEN
    assert math.isinf(caught.value.retry_after_s)
    assert "forced open" in str(caught.value)
    assert state_of(breaker) is FORCED_OPEN
    assert math.isinf(breaker.retry_after_s)
    breaker.open_for(5.0)  # the operator's choice wins over a Retry-After
    assert state_of(breaker) is FORCED_OPEN
    breaker.reset()
    assert breaker.call(ok) == "ok"
    assert recorder.transitions() == [(CLOSED, FORCED_OPEN), (FORCED_OPEN, CLOSED)]
    assert [e.state for e in recorder.events if isinstance(e, CallRejected)] == [FORCED_OPEN]


def test_disable_admits_everything_and_only_measures() -> None:
    recorder = Recorder()
    breaker = breaker_with(recorder)
    breaker.disable()
    for _ in range(10):
        with pytest.raises(BoomError):
            breaker.call(boom)
    assert state_of(breaker) is DISABLED
    assert breaker.consecutive_failures == 10
    breaker.open_for(5.0)  # disabled means never rejects
    assert breaker.call(ok) == "ok"
    breaker.reset()
    assert state_of(breaker) is CLOSED
    assert breaker.consecutive_failures == 0
    assert recorder.transitions() == [(CLOSED, DISABLED), (DISABLED, CLOSED)]


def test_a_disabled_window_breaker_keeps_its_window() -> None:
    breaker = CircuitBreaker(policy=CountWindow(size=4, minimum_calls=2))
    breaker.disable()
    for _ in range(4):
        with pytest.raises(BoomError):
            breaker.call(boom)
    status = breaker.snapshot()
    assert (status.state, status.calls_in_window, status.failure_rate) == (DISABLED, 4, 1.0)


def test_transition_to_half_open_makes_the_next_calls_probes() -> None:
    recorder = Recorder()
    breaker = breaker_with(recorder)
    breaker.transition_to_half_open()
    permit = breaker.admit()
    assert permit.is_probe
    with pytest.raises(CircuitOpenError):
        breaker.admit()  # one probe slot
    permit.success()
    assert state_of(breaker) is CLOSED
    assert recorder.transitions() == [(CLOSED, HALF_OPEN), (HALF_OPEN, CLOSED)]


@pytest.mark.parametrize("state", list(CircuitState))
def test_a_breaker_can_start_in_any_state(state: CircuitState) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2, 10.0, clock=clock, initial_state=state)
    assert state_of(breaker) is state
    admitted = state in {CLOSED, HALF_OPEN, DISABLED}
    if admitted:
        assert breaker.call(ok) == "ok"
    else:
        with pytest.raises(CircuitOpenError):
            breaker.call(ok)
    if state is OPEN:
        assert breaker.retry_after_s == 10.0
        clock.advance(10.0)
        assert state_of(breaker) is HALF_OPEN


def test_reset_of_a_closed_window_breaker_empties_the_window() -> None:
    breaker = CircuitBreaker(policy=CountWindow(size=10, minimum_calls=10))
    with pytest.raises(BoomError):
        breaker.call(boom)
    assert breaker.snapshot().calls_in_window == 1
    breaker.reset()
    assert breaker.snapshot().calls_in_window == 0


# -- typed status and errors ---------------------------------------------------------------


def test_snapshot_is_typed_and_frozen() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        policy=CountWindow(size=4, minimum_calls=2, failure_rate_threshold=0.5),
        recovery_timeout_s=30.0,
        clock=clock,
        name="typed",
    )
    breaker.call(ok)
    with pytest.raises(BoomError):
        breaker.call(boom)  # 1 of 2 = 50%: trips
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    clock.advance(12.0)
    status = breaker.snapshot()
    assert status == BreakerStatus(
        name="typed",
        state=OPEN,
        failure_rate=0.5,
        slow_call_rate=0.0,
        calls_in_window=2,
        failed_calls=1,
        slow_calls=0,
        consecutive_failures=1,
        rejected_calls=1,
        retry_after_s=18.0,
    )
    with pytest.raises(AttributeError):
        status.state = CLOSED  # type: ignore[misc]
    data = status.to_dict()
    assert data["state"] == "open"
    assert data["retry_after_s"] == 18.0
    legacy = breaker.status()
    assert {"consecutive_failure_limit", "recovery_timeout_s", "failure_rate"} <= set(legacy)


def test_consecutive_policy_status_has_no_rates() -> None:
    breaker = CircuitBreaker(3, 1.0)
    with pytest.raises(BoomError):
        breaker.call(boom)
    status = breaker.snapshot()
    assert (status.failure_rate, status.calls_in_window, status.consecutive_failures) == (
        None,
        0,
        1,
    )


def test_circuit_open_error_state_is_a_circuit_state_and_still_a_string() -> None:
    error = CircuitOpenError("x", 2.0, "half_open")
    assert error.state is HALF_OPEN
    assert error.state == "half_open"
    copy = pickle.loads(pickle.dumps(error))  # our own object
    assert copy.state is HALF_OPEN
    assert str(copy) == str(error)


# -- call listeners ------------------------------------------------------------------------


def test_call_listeners_hear_successes_failures_and_rejections_with_durations() -> None:
    clock = FakeClock()
    heard: list[CallEvent] = []
    breaker = CircuitBreaker(1, 10.0, clock=clock, name="c", call_listeners=[heard.append])

    def takes_two_seconds() -> str:
        clock.advance(2.0)
        return "ok"

    def fails_after_one() -> str:
        clock.advance(1.0)
        raise BoomError

    breaker.call(takes_two_seconds)
    with pytest.raises(BoomError) as failure:
        breaker.call(fails_after_one)
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    assert heard == [
        CallSucceeded("c", 2.0, False, 102.0),
        CallFailed("c", 1.0, False, failure.value, 103.0),
        CallRejected("c", OPEN, 10.0, 103.0),
    ]
    assert isinstance(heard[1], CallFailed)
    assert heard[1].error is failure.value


def test_call_listeners_can_come_and_go() -> None:
    heard: list[CallEvent] = []
    breaker = CircuitBreaker()
    breaker.add_call_listener(heard.append)
    breaker.call(ok)
    asyncio.run(breaker.acall(asyncio.sleep, 0))
    breaker.remove_call_listener(heard.append)
    breaker.remove_call_listener(heard.append)  # not attached: nothing happens
    breaker.call(ok)
    assert [type(e) for e in heard] == [CallSucceeded, CallSucceeded]


def test_a_raising_call_listener_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    def bad(event: CallEvent) -> None:
        raise RuntimeError(event)

    breaker = CircuitBreaker(call_listeners=[bad])
    assert breaker.call(ok) == "ok"
    assert "listener" in caplog.text


# -- generator and async-generator functions (issue 13, item 14) ---------------------------


def test_a_failure_while_iterating_a_generator_is_counted() -> None:
    recorder = Recorder()
    breaker = breaker_with(recorder)

    @breaker
    def stream(fail_at: int) -> Generator[int, None, str]:
        for i in range(3):
            if i == fail_at:
                raise BoomError(i)
            yield i
        return "done"

    made = stream(1)  # nothing is admitted yet
    assert breaker.consecutive_failures == 0
    assert next(made) == 0
    with pytest.raises(BoomError):
        next(made)
    assert breaker.consecutive_failures == 1
    assert list(stream(99)) == [0, 1, 2]  # finishing is a success
    assert breaker.consecutive_failures == 0
    with pytest.raises(BoomError):
        list(stream(0))
    with pytest.raises(BoomError):
        list(stream(2))
    assert state_of(breaker) is OPEN
    rejected = stream(99)
    with pytest.raises(CircuitOpenError):
        next(rejected)  # admission happens when iteration starts


def test_a_generator_closed_early_is_ignored_and_send_is_forwarded() -> None:
    breaker = CircuitBreaker(1, 10.0)

    @breaker
    def echo() -> Generator[str, str, None]:
        received = yield "ready"
        while True:
            received = yield received.upper()

    talk = echo()
    assert next(talk) == "ready"
    assert talk.send("hi") == "HI"
    talk.close()  # GeneratorExit is not a failure
    assert state_of(breaker) is CLOSED
    assert breaker.consecutive_failures == 0


def test_an_async_generator_failure_is_counted_and_asend_forwarded() -> None:
    breaker = CircuitBreaker(2, 10.0)

    @breaker
    async def stream(fail_at: int) -> AsyncGenerator[int, int | None]:
        total = 0
        for i in range(3):
            if i == fail_at:
                raise BoomError(i)
            sent = yield i + total
            total += sent or 0

    async def main() -> None:
        assert [i async for i in stream(99)] == [0, 1, 2]
        gen = stream(99)
        assert await gen.asend(None) == 0
        assert await gen.asend(10) == 11  # the sent value reached the generator
        await gen.aclose()  # closed early: ignored
        assert breaker.consecutive_failures == 0
        with pytest.raises(BoomError):
            _ = [i async for i in stream(1)]
        assert breaker.consecutive_failures == 1
        with pytest.raises(BoomError):
            _ = [i async for i in stream(0)]
        assert state_of(breaker) is OPEN
        with pytest.raises(CircuitOpenError):
            await stream(99).__anext__()

    asyncio.run(main())


def test_athrow_is_forwarded_to_the_async_generator() -> None:
    breaker = CircuitBreaker(5, 10.0)

    @breaker
    async def resilient() -> AsyncGenerator[str, None]:
        try:
            yield "first"
        except KeyError:
            yield "recovered"

    async def main() -> None:
        gen = resilient()
        assert await gen.__anext__() == "first"
        assert await gen.athrow(KeyError("x")) == "recovered"
        with pytest.raises(StopAsyncIteration):
            await gen.__anext__()

    asyncio.run(main())
    assert breaker.consecutive_failures == 0


# -- the bulkhead and pool -----------------------------------------------------------------


def test_a_huge_bulkhead_needs_no_memory_for_its_limit() -> None:
    bulkhead = Bulkhead(sys.maxsize)
    for _ in range(100):  # past the tokens made up front
        bulkhead.acquire()
    assert bulkhead.active == 100
    for _ in range(100):
        bulkhead.release()
    assert bulkhead.active == 0
    with pytest.raises(RuntimeError, match="without a matching"):
        bulkhead.release()
    pool = AgentPool(max_concurrent=9223372036854775807)
    assert pool.run(ok) == "ok"
    assert pool.max_concurrent == sys.maxsize


def test_a_small_bulkhead_still_stops_at_its_limit() -> None:
    bulkhead = Bulkhead(70, max_wait_s=0)
    for _ in range(70):
        assert bulkhead.try_acquire()
    assert not bulkhead.try_acquire()
    bulkhead.release()
    assert bulkhead.try_acquire()


def test_a_full_bulkhead_is_ignored_by_the_breaker() -> None:
    recorder = Recorder()
    pool = AgentPool(max_concurrent=1, max_wait_s=0, consecutive_failure_limit=1)
    pool.add_listener(recorder)

    def nested() -> str:
        return pool.run(ok)  # the one permit is held by the outer call

    from aegis_breaker import BulkheadFullError  # noqa: PLC0415  # used here only

    with pytest.raises(BulkheadFullError):
        pool.run_on("outer", nested)
    assert pool.state is CLOSED
    assert not [e for e in recorder.events if isinstance(e, StateChanged)]
