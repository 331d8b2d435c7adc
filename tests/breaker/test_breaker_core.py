from __future__ import annotations

import asyncio
import logging
import pickle
import re
from collections.abc import Callable

import pytest
from aegis_breaker import (
    BreakerError,
    CallRejected,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    StateChanged,
)

from .support import BoomError, FakeClock, Interrupt, Recorder, boom, interrupt, ok

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN

FUNCS: dict[str, Callable[[], str]] = {"ok": ok, "boom": boom, "interrupt": interrupt}


async def _async(outcome: str) -> str:
    return FUNCS[outcome]()


def drive(breaker: CircuitBreaker, driver: str, outcome: str) -> str:  # noqa: PLR0911  # one return per driver
    """Make one call through *breaker* in the style *driver*; the fake dependency does *outcome*."""
    fn = FUNCS[outcome]
    if driver == "call":
        return breaker.call(fn)
    if driver == "acall":
        return asyncio.run(breaker.acall(_async, outcome))
    if driver == "decorator":
        return breaker(fn)()
    if driver == "async_decorator":
        return asyncio.run(breaker(_async)(outcome))
    if driver == "with":
        with breaker:
            return fn()
    if driver == "async_with":

        async def body() -> str:
            async with breaker:
                return fn()

        return asyncio.run(body())
    assert driver == "permit"
    permit = breaker.admit()
    try:
        result = fn()
    except BaseException as exc:
        permit.failure(exc)
        raise
    permit.success()
    return result


DRIVERS = ["call", "acall", "decorator", "async_decorator", "with", "async_with", "permit"]


def attempt(breaker: CircuitBreaker, driver: str, outcome: str) -> str:
    """Like drive, turning what was raised into a word."""
    try:
        return drive(breaker, driver, outcome)
    except CircuitOpenError:
        return "rejected"
    except BoomError:
        return "boom"
    except Interrupt:
        return "interrupt"


def make(clock: FakeClock, **kwargs: object) -> tuple[CircuitBreaker, Recorder]:
    recorder = Recorder()
    settings: dict[str, object] = {
        "consecutive_failure_limit": 3,
        "recovery_timeout_s": 10.0,
        "name": "dep",
    }
    settings.update(kwargs)
    breaker = CircuitBreaker(clock=clock, listeners=[recorder], **settings)  # type: ignore[arg-type]
    return breaker, recorder


@pytest.mark.parametrize("driver", DRIVERS)
def test_trips_exactly_at_the_limit(driver: str) -> None:
    breaker, recorder = make(FakeClock())
    for _ in range(2):
        assert attempt(breaker, driver, "boom") == "boom"
    assert breaker.state is CLOSED
    assert breaker.consecutive_failures == 2
    assert attempt(breaker, driver, "boom") == "boom"
    assert breaker.state is OPEN
    assert recorder.transitions() == [(CLOSED, OPEN)]
    assert attempt(breaker, driver, "ok") == "rejected"


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_success_resets_the_count(driver: str) -> None:
    breaker, _ = make(FakeClock())
    attempt(breaker, driver, "boom")
    attempt(breaker, driver, "boom")
    assert attempt(breaker, driver, "ok") == "ok"
    assert breaker.consecutive_failures == 0
    attempt(breaker, driver, "boom")
    attempt(breaker, driver, "boom")
    assert breaker.state is CLOSED


@pytest.mark.parametrize("driver", DRIVERS)
def test_ignored_outcomes_are_neutral(driver: str) -> None:
    breaker, recorder = make(FakeClock(), is_failure=lambda exc: not isinstance(exc, BoomError))
    for _ in range(5):
        assert attempt(breaker, driver, "boom") == "boom"  # declined by is_failure
        assert attempt(breaker, driver, "interrupt") == "interrupt"  # not an Exception
    assert breaker.state is CLOSED
    assert breaker.consecutive_failures == 0
    assert recorder.events == []


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_ignored_probe_gives_back_its_slot(driver: str) -> None:
    clock = FakeClock()
    breaker, _ = make(clock)
    breaker.open_for(1.0)
    clock.advance(1.0)
    assert attempt(breaker, driver, "interrupt") == "interrupt"
    assert breaker.state is HALF_OPEN
    assert attempt(breaker, driver, "ok") == "ok"
    assert breaker.state is CLOSED


def test_open_never_calls_and_raises_a_fresh_error_each_time() -> None:
    clock = FakeClock()
    breaker, recorder = make(clock)
    for _ in range(3):
        attempt(breaker, "call", "boom")
    calls: list[int] = []
    errors: list[CircuitOpenError] = []
    for step in range(3):
        clock.advance(2.0)
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(calls.append, step)
        errors.append(info.value)
    assert calls == []
    assert len({id(e) for e in errors}) == 3
    assert [e.retry_after_s for e in errors] == [8.0, 6.0, 4.0]
    assert all(e.breaker_name == "dep" for e in errors)
    assert isinstance(errors[0], BreakerError)
    assert "'dep'" in str(errors[0])
    assert "4.000" in str(errors[2])
    rejected = [e for e in recorder.events if isinstance(e, CallRejected)]
    assert [r.retry_after_s for r in rejected] == [8.0, 6.0, 4.0]
    assert rejected[0].state is OPEN


def test_rejected_just_before_the_timeout_admitted_at_it() -> None:
    clock = FakeClock()
    breaker, _ = make(clock)
    for _ in range(3):
        attempt(breaker, "call", "boom")
    clock.advance(10.0 - 1e-9)
    assert attempt(breaker, "call", "ok") == "rejected"
    assert breaker.state is OPEN
    assert breaker.retry_after_s == pytest.approx(1e-9)
    clock.advance(1e-9)
    assert breaker.retry_after_s == 0.0
    assert attempt(breaker, "call", "ok") == "ok"
    assert breaker.state is CLOSED


def test_the_half_open_change_is_lazy_and_seen_on_read() -> None:
    clock = FakeClock()
    breaker, recorder = make(clock)
    breaker.open_for(5.0)
    clock.advance(5.0)
    assert recorder.transitions() == [(CLOSED, OPEN)]
    assert breaker.state is HALF_OPEN
    assert recorder.transitions() == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]
    changed = [e for e in recorder.events if isinstance(e, StateChanged)]
    assert changed[-1].at == clock.now
    assert changed[-1].breaker == "dep"


@pytest.mark.parametrize("driver", DRIVERS)
def test_probe_success_closes_and_failure_reopens_with_a_new_timer(driver: str) -> None:
    clock = FakeClock()
    breaker, recorder = make(clock)
    for _ in range(3):
        attempt(breaker, driver, "boom")
    clock.advance(10.0)
    assert attempt(breaker, driver, "boom") == "boom"
    assert breaker.state is OPEN
    assert breaker.retry_after_s == 10.0  # timed from the probe's failure, not the first trip
    clock.advance(10.0)
    assert attempt(breaker, driver, "ok") == "ok"
    assert breaker.state is CLOSED
    assert breaker.consecutive_failures == 0
    assert recorder.transitions() == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


def test_half_open_admits_only_max_calls_probes() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, half_open_max_calls=2, success_threshold=3)
    breaker.open_for(1.0)
    clock.advance(1.0)
    first, second = breaker.admit(), breaker.admit()
    assert first.is_probe
    assert second.is_probe
    with pytest.raises(CircuitOpenError) as info:
        breaker.admit()
    assert info.value.state == "half_open"
    first.success()
    second.success()
    assert breaker.state is HALF_OPEN
    breaker.admit().success()
    assert breaker.state is CLOSED


def test_a_hung_probe_expires_and_its_late_report_is_ignored() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, half_open_max_wait_s=7.0)
    breaker.open_for(1.0)
    clock.advance(1.0)
    hung = breaker.admit()
    clock.advance(6.9)
    with pytest.raises(CircuitOpenError) as info:
        breaker.admit()
    assert info.value.retry_after_s == pytest.approx(0.1)
    clock.advance(0.1)
    fresh = breaker.admit()
    hung.failure()
    assert breaker.state is HALF_OPEN
    fresh.success()
    assert breaker.state is CLOSED


def test_default_half_open_max_wait() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, recovery_timeout_s=1.0)
    breaker.open_for(1.0)
    clock.advance(1.0)
    breaker.admit()
    clock.advance(59.9)
    assert attempt(breaker, "call", "ok") == "rejected"
    clock.advance(0.1)
    assert attempt(breaker, "call", "ok") == "ok"


def test_late_results_cause_no_transition() -> None:
    clock = FakeClock()
    breaker, recorder = make(clock)
    late = [breaker.admit() for _ in range(5)]
    for permit in late[:3]:
        permit.failure()
    assert breaker.state is OPEN
    late[3].failure()
    assert recorder.transitions() == [(CLOSED, OPEN)]
    clock.advance(10.0)
    assert breaker.state is HALF_OPEN
    admitted_before = breaker.admit()  # fills the probe slot
    late[4].success()  # admitted while CLOSED, reported while HALF_OPEN
    assert breaker.state is HALF_OPEN
    admitted_before.success()
    assert breaker.state is CLOSED
    # A permit from the first closed period cannot count in the new one either.
    stale = CircuitBreaker(1, clock=clock)
    old = stale.admit()
    stale.open_for(0.0)
    stale.reset()
    old.failure()
    assert stale.state is CLOSED


def test_permit_reports_once() -> None:
    breaker, _ = make(FakeClock(), consecutive_failure_limit=2)
    permit = breaker.admit()
    assert permit.generation == 0
    assert "reported=False" in repr(permit)
    permit.failure()
    permit.failure()
    permit.success()
    assert permit.reported is True
    assert breaker.consecutive_failures == 1
    assert "reported=True" in repr(permit)


def test_context_manager_rejects_while_open_and_skips_the_body() -> None:
    breaker, _ = make(FakeClock())
    breaker.open_for(5.0)
    ran: list[bool] = []
    with pytest.raises(CircuitOpenError), breaker:
        ran.append(True)

    async def body() -> None:
        async with breaker:
            ran.append(True)

    with pytest.raises(CircuitOpenError):
        asyncio.run(body())
    assert ran == []


def test_context_manager_nests_and_reports_early() -> None:
    breaker, _ = make(FakeClock(), consecutive_failure_limit=2)
    with breaker as outer:
        with pytest.raises(BoomError), breaker:
            raise BoomError
        assert breaker.consecutive_failures == 1
        outer.success()
    assert outer.reported
    assert breaker.consecutive_failures == 0


def test_a_cancelled_probe_gives_back_its_slot() -> None:
    clock = FakeClock()
    breaker, _ = make(clock)
    breaker.open_for(1.0)
    clock.advance(1.0)

    async def main() -> str:
        started = asyncio.Event()
        never = asyncio.Event()

        async def hang() -> str:
            started.set()
            await never.wait()
            return "never"

        task = asyncio.create_task(breaker.acall(hang))
        await started.wait()
        with pytest.raises(CircuitOpenError):
            breaker.admit()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.state is HALF_OPEN
        return await breaker.acall(_async, "ok")

    assert asyncio.run(main()) == "ok"
    assert breaker.state is CLOSED


def test_open_for_forces_open_and_only_extends() -> None:
    clock = FakeClock()
    breaker, recorder = make(clock)
    breaker.open_for(30.0)
    assert breaker.state is OPEN
    assert breaker.retry_after_s == 30.0
    breaker.open_for(5.0)
    assert breaker.retry_after_s == 30.0
    breaker.open_for(45.0)
    assert breaker.retry_after_s == 45.0
    assert recorder.transitions() == [(CLOSED, OPEN)]
    clock.advance(45.0)
    assert breaker.state is HALF_OPEN
    breaker.open_for(2.0)
    assert breaker.state is OPEN
    assert breaker.retry_after_s == 2.0
    with pytest.raises(ValueError, match="seconds"):
        breaker.open_for(-1.0)


def test_reset_closes_and_clears() -> None:
    breaker, recorder = make(FakeClock())
    attempt(breaker, "call", "boom")
    breaker.reset()
    assert breaker.consecutive_failures == 0
    breaker.open_for(9.0)
    breaker.reset()
    assert breaker.state is CLOSED
    assert recorder.transitions() == [(CLOSED, OPEN), (OPEN, CLOSED)]


def test_listener_exceptions_are_logged_and_isolated(caplog: pytest.LogCaptureFixture) -> None:
    breaker, recorder = make(FakeClock())

    def broken(event: object) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken)
    breaker.add_listener(recorder)  # a second copy runs after the broken one
    with caplog.at_level(logging.ERROR, logger="aegis_breaker"):
        breaker.open_for(1.0)
        assert attempt(breaker, "call", "ok") == "rejected"
    assert breaker.state is OPEN
    assert len(recorder.events) == 4  # two events, each seen by both copies of the recorder
    assert "listener bug" in caplog.text
    breaker.remove_listener(broken)
    breaker.remove_listener(broken)  # removing twice is harmless
    breaker.reset()
    assert len(recorder.events) == 6


def test_is_failure_that_raises_counts_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    def bad(exc: BaseException) -> bool:
        raise TypeError("classifier bug")

    breaker, _ = make(FakeClock(), is_failure=bad)
    with caplog.at_level(logging.ERROR, logger="aegis_breaker"):
        attempt(breaker, "call", "boom")
    assert breaker.consecutive_failures == 1
    assert "classifier bug" in caplog.text


def test_status_is_a_plain_dict() -> None:
    clock = FakeClock()
    breaker, _ = make(clock)
    breaker.open_for(4.0)
    status = breaker.status()
    assert status["name"] == "dep"
    assert status["state"] == "open"
    assert status["consecutive_failures"] == 0
    assert status["retry_after_s"] == 4.0
    assert "dep" in repr(breaker)
    assert breaker.name == "dep"
    assert breaker.generation == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"consecutive_failure_limit": 0}, "consecutive_failure_limit"),
        ({"recovery_timeout_s": -1.0}, "recovery_timeout_s"),
        ({"recovery_timeout_s": float("nan")}, "recovery_timeout_s"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"half_open_max_wait_s": 0.0}, "half_open_max_wait_s"),
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_errors_pickle_and_name_their_breaker() -> None:
    error = CircuitOpenError("llm", 2.5)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.breaker_name, copy.retry_after_s, str(copy)) == ("llm", 2.5, str(error))
    assert "circuit breaker is open" in str(CircuitOpenError(None, 1.0))
    assert str(CircuitState.HALF_OPEN) == "half_open"


def test_decorator_preserves_metadata() -> None:
    breaker = CircuitBreaker()

    @breaker
    def add(a: int, b: int = 2) -> int:
        """Add."""
        return a + b

    @breaker
    async def aadd(a: int) -> int:
        return a + 1

    assert add(1) == 3
    assert add.__name__ == "add"
    assert add.__doc__ == "Add."
    assert asyncio.iscoroutinefunction(aadd)
    assert asyncio.run(aadd(1)) == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"consecutive_failure_limit": "5"}, "consecutive_failure_limit must be an int, got '5'"),
        ({"consecutive_failure_limit": True}, "consecutive_failure_limit must be an int, got True"),
        ({"half_open_max_calls": 1.5}, "half_open_max_calls must be an int, got 1.5"),
        ({"recovery_timeout_s": "30"}, "recovery_timeout_s must be a number of seconds"),
        ({"half_open_max_wait_s": "1"}, "half_open_max_wait_s must be a number of seconds"),
    ],
)
def test_a_setting_of_the_wrong_type_is_a_type_error_naming_it(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        CircuitBreaker(**settings)  # type: ignore[arg-type]
