"""RateLimiter against odd clocks and odd arguments: jumps, huge readings, non-numbers."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable
from fractions import Fraction

import pytest
from aegis_breaker import RateLimiter, RateLimitExceededError
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.breaker.support import FakeClock

# -- a clock that jumps --------------------------------------------------------------------------


def test_a_clock_that_jumps_back_from_a_huge_reading_re_anchors_the_bucket() -> None:
    # Found by an adversarial review: after one reading of 1e18 the bucket kept that time
    # until the clock caught up (never), so it never refilled at normal times; each caller
    # queued behind the last, the waits growing without bound.
    limit = RateLimiter(1, 1, burst=1)
    assert limit.reserve(now=1e18) == 0.0
    waits = [limit.reserve(now=100.0 + i) for i in range(20)]
    assert max(waits) <= 1.0  # one a second, as the bucket allows
    assert limit.reserve(now=200.0) == 0.0  # idle long enough: full again
    assert limit.status().queued_s < 1e6


def test_a_huge_reading_then_a_normal_one_leaves_try_acquire_working() -> None:
    clock = FakeClock(1e300)
    limit = RateLimiter(1, 1, burst=1, clock=clock)
    assert limit.try_acquire()
    clock.now = 100.0
    assert not limit.try_acquire()  # no time passed since the jump: still empty
    clock.now = 101.0
    assert limit.try_acquire()  # a second later: a token, as at any time


def test_a_jump_back_keeps_the_waits_already_promised() -> None:
    limit = RateLimiter(1, 1, burst=1)
    limit.reserve(now=5000.0)
    assert limit.reserve(now=5000.0) == pytest.approx(1.0)  # goes at 5001
    # The clock jumps back by 4900 s: the one waiting still goes a second after the jump,
    # and the newcomer a second after it, not 4900 s later nor at once.
    assert limit.reserve(now=100.0) == pytest.approx(2.0)
    # A go time from before the jump is on the old clock: it matches nothing, gives nothing.
    assert limit.cancel(1, 5001.0, now=100.0) == 0.0


def test_a_reading_a_hair_behind_is_a_stale_read_not_a_jump() -> None:
    # A caller who read the clock before another thread's update is up to a millisecond
    # behind: that counts as the bucket's time, and the line keeps its go times exactly.
    limit = RateLimiter(1, 1, burst=1)
    limit.reserve(now=10.0)
    go_at = 10.0 + limit.reserve(now=10.0)
    assert limit.reserve(now=9.9995) == pytest.approx(2.0)  # from 10.0, as if read then
    assert limit.cancel(1, go_at + 1.0, now=10.0) == pytest.approx(1.0)  # found, exactly


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_a_clock_reading_that_is_not_finite_counts_as_the_one_before(bad: float) -> None:
    # +inf froze the bucket for good (every later reading was behind it); NaN was already
    # taken as the reading before it, and the infinities now are too.
    readings = iter([100.0, bad, bad, 101.0, 101.0, 101.0, 101.0])
    limit = RateLimiter(60, burst=1, clock=lambda: next(readings))
    assert limit.reserve(1) == 0.0
    assert limit.reserve(1) == pytest.approx(1.0)  # at 100.0: one second behind the first
    assert not limit.try_acquire()
    waits = [limit.reserve(1) for _ in range(3)]
    assert waits == pytest.approx([1.0, 2.0, 3.0])
    assert math.isfinite(limit.status().available)


def test_a_debt_no_float_can_wait_out_is_refused() -> None:
    # consume(1e308) made the next wait +inf, and the line's go time with it: the bucket
    # admitted nobody, ever again.
    limit = RateLimiter(1, 60, burst=1, clock=FakeClock(0.0), name="x")
    with pytest.raises(ValueError, match=r"rate limiter 'x': consume 1e\+308 would put"):
        limit.consume(1e308)
    assert limit.status().available == 1.0
    limit.consume(1e6)  # a large debt a float can count is still taken
    assert limit.reserve(0) == pytest.approx(1e6 * 60)


@st.composite
def clock_runs(
    draw: st.DrawFn,
) -> tuple[float, float, list[tuple[float, str, float]]]:
    rate = draw(st.sampled_from([1.0, 3.0, 10.0, 500.0]))
    per_s = draw(st.sampled_from([0.5, 1.0, 60.0]))
    readings = st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(-1e6, 1e6),  # near one another, so the bucket is often mid-refill
    )
    steps = draw(
        st.lists(
            st.tuples(
                readings,
                st.sampled_from(["reserve", "cancel", "refund", "try", "status"]),
                st.floats(0.0, 1.0),  # the amount, as a fraction of the capacity
            ),
            max_size=40,
        )
    )
    return rate, per_s, steps


@settings(max_examples=300, deadline=None)
@given(clock_runs())
def test_any_finite_clock_gives_waits_the_reservations_justify(
    run: tuple[float, float, list[tuple[float, str, float]]],
) -> None:
    """Whatever finite readings the clock gives, in any order, every wait is finite, >= 0 and
    no longer than the tokens reserved so far take to refill; afterwards the bucket is never
    frozen: given that much time, it admits a full burst at once.

    The clock's own resolution is the tolerance: at a reading of 1e20 a float cannot tell
    apart two times closer than 16384 s, so a go time is exact only to that.
    """
    rate, per_s, steps = run
    clock = FakeClock(0.0)
    limit = RateLimiter(rate, per_s, burst=rate, clock=clock)
    per_second = rate / per_s
    reserved = 0.0
    resolution = 0.0
    pending: list[tuple[float, float]] = []  # (go time, amount) of reservations that wait
    for reading, op, fraction in steps:
        clock.now = reading
        resolution = max(resolution, 4 * math.ulp(reading))
        amount = fraction * limit.capacity
        if op == "reserve":
            reserved += amount
            wait = limit.reserve(amount)
            assert 0.0 <= wait <= reserved / per_second * (1 + 1e-9) + resolution + 1e-9
            if wait > 0:
                pending.append((reading + wait, amount))
        elif op == "cancel" and pending:
            go_at, taken = pending.pop(len(pending) // 2)
            assert 0.0 <= limit.cancel(taken, go_at) <= taken
        elif op == "refund":
            assert 0.0 <= limit.refund(amount) <= amount
        elif op == "try" and limit.try_acquire(amount):
            reserved += amount
        status = limit.status()
        assert math.isfinite(status.available)
        assert status.available <= limit.capacity
        assert 0.0 <= status.queued_s <= reserved / per_second * (1 + 1e-9) + resolution + 1e-9
    # Re-anchored on a reading of 0 (a jump either way, confirmed by a second reading; one
    # within a second of the bucket's time is that time), then idle long enough: full again.
    limit.reserve(0.0, now=0.0)
    limit.reserve(0.0, now=0.0)
    later = (reserved + limit.capacity) / per_second + resolution + 1.0
    assert limit.reserve(limit.capacity, now=later) == 0.0


# -- arguments that are not numbers ----------------------------------------------------------------


def _calls_with(limit: RateLimiter, bad: object) -> list[tuple[str, Callable[[], object]]]:
    """Every public call given *bad* for one numeric argument, with the argument's name."""
    wrong: float = bad  # type: ignore[assignment]  # on purpose: what an untyped caller passes
    return [
        ("now", lambda: limit.reserve(1, now=wrong)),
        ("amount", lambda: limit.reserve(wrong)),
        ("the wait limit", lambda: limit.reserve(1, max_wait_s=wrong)),
        ("go_at", lambda: limit.cancel(1, wrong)),
        ("now", lambda: limit.cancel(1, 5.0, now=wrong)),
        ("amount", lambda: limit.cancel(wrong, 5.0)),
        ("now", lambda: limit.refund(1, now=wrong)),
        ("refund", lambda: limit.refund(wrong)),
        ("now", lambda: limit.consume(1, now=wrong)),
        ("consume", lambda: limit.consume(wrong)),
        ("amount", lambda: limit.try_acquire(wrong)),
        ("amount", lambda: limit.acquire(wrong)),
        ("the wait limit", lambda: limit.acquire(1, timeout_s=wrong)),
    ]


@pytest.mark.parametrize(("bad", "kind"), [("5", "str"), (True, "bool"), (None, "NoneType")])
def test_a_time_or_amount_that_is_not_a_number_is_named_and_changes_nothing(
    bad: object, kind: str
) -> None:
    # Found by an adversarial review: now="5" raised "must be real number, not str" from
    # deep inside, naming neither the argument nor the limiter.
    clock = FakeClock(0.0)
    limit = RateLimiter(1, 1, burst=2, clock=clock, name="x")
    limit.reserve()
    before = limit.status()
    for argument, call in _calls_with(limit, bad):
        if bad is None and argument in {"now", "the wait limit"}:
            continue  # None means "read the clock" / "no limit" there
        with pytest.raises(TypeError, match=rf"rate limiter 'x': {argument} must be a number, "):
            call()
        with pytest.raises(TypeError, match=rf"got {kind} "):
            call()
        assert limit.status() == before
    with pytest.raises(TypeError, match="rate must be a number, got str '5'"):
        RateLimiter("5")  # type: ignore[arg-type]  # on purpose


# -- cancelling what was never reserved ------------------------------------------------------------


def test_cancelling_a_reservation_never_granted_gives_nothing_back() -> None:
    # Found by an adversarial review: a go time matching no reservation gave back the amount
    # anyway (up to the capacity), minting tokens: 10 more went at once from a bucket of 10.
    clock = FakeClock(0.0)
    limit = RateLimiter(10, 10, clock=clock)
    assert sum(limit.try_acquire() for _ in range(20)) == 10
    assert limit.cancel(10, 0.5) == 0.0
    assert limit.cancel(1, 1e9) == 0.0
    assert limit.status().available == 0.0
    assert not limit.try_acquire()
    # A real one is still found and given back; given back twice, it is gone the second time.
    go_at = limit.reserve(2)
    assert limit.cancel(2, go_at) == pytest.approx(2.0)
    assert limit.cancel(2, go_at) == 0.0
    assert limit.status().available == pytest.approx(0.0)


# -- readings taken before the lock, and a clock that swings back ------------------------------


def test_threads_passing_stale_readings_never_exceed_the_window_bound() -> None:
    # Found by an adversarial review: a reading more than a millisecond behind the bucket's
    # (a thread descheduled between its reading and the lock) re-anchored the bucket on it,
    # and the next up-to-date reading refilled the same time again: 6875 admitted in a
    # second against a bound of 1010. Here every thread passes an up-to-date reading, then
    # one taken half a second earlier (as a thread stalled that long would), so whatever
    # the interleaving, stale readings reach the bucket after fresher ones.
    rate, burst, threads, steps = 1000.0, 10.0, 8, 200
    limit = RateLimiter(rate, 1.0, burst=burst)
    limit.reserve(0.0, now=0.5)  # the bucket's time starts at 0.5, full
    barrier = threading.Barrier(threads)
    admitted = [0] * threads

    def work(me: int) -> None:
        barrier.wait()
        for k in range(steps):
            fresh = 0.5 + k * 0.001
            for reading in (fresh, fresh - 0.5):
                try:
                    limit.reserve(1, now=reading, max_wait_s=0)
                except RateLimitExceededError:
                    continue
                admitted[me] += 1

    workers = [threading.Thread(target=work, args=(me,)) for me in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    span = (steps - 1) * 0.001  # the bucket's time runs from 0.5 to the last fresh reading
    assert sum(admitted) <= burst + rate * span + 1


@pytest.mark.parametrize("behind", [0.5, 5.0])
def test_a_clock_that_swings_back_every_other_reading_mints_nothing(behind: float) -> None:
    # Found by an adversarial review: every backward swing re-anchored the bucket and the
    # next forward reading refilled it: 201 admitted in a second at 10 a second, burst 1.
    clock = FakeClock(10.0)
    limit = RateLimiter(10, 1, burst=1, clock=clock)
    admitted = 0
    for i in range(1000):
        for reading in (10.0 + i * 0.001, 10.0 + i * 0.001 - behind):
            clock.now = reading
            admitted += limit.try_acquire()
    assert admitted <= 1 + 10 + 1


def test_a_jump_back_is_confirmed_by_the_next_reading_and_refills_from_the_first() -> None:
    clock = FakeClock(1000.0)
    limit = RateLimiter(1, 1, burst=1, clock=clock)
    assert limit.reserve() == 0.0
    # The first reading far behind is the bucket's time (it may be a stale one)...
    clock.now = 100.0
    assert limit.reserve() == pytest.approx(1.0)
    assert limit.status().queued_s == pytest.approx(1.0)  # confirmed: re-anchored on 100
    # ...then refilled from the first of the two readings, as any other time.
    clock.now = 102.0
    assert limit.status().available == pytest.approx(1.0)


# -- numbers past what a float holds -----------------------------------------------------------


@pytest.mark.parametrize(
    "huge", [10**400, -(10**400), Fraction(10**400, 3)], ids=["int", "-int", "Fraction"]
)
def test_a_number_too_large_for_a_float_is_a_value_error_naming_it(huge: object) -> None:
    # Found by an adversarial review: a bare OverflowError naming neither the limiter nor
    # the argument.
    limit = RateLimiter(10, 1, burst=5, clock=FakeClock(0.0), name="x")
    wrong: float = huge  # type: ignore[assignment]  # on purpose
    calls: list[tuple[str, Callable[[], object]]] = [
        ("rate", lambda: RateLimiter(wrong, name="x")),
        ("amount", lambda: limit.reserve(wrong)),
        ("now", lambda: limit.reserve(1, now=wrong)),
        ("amount", lambda: limit.try_acquire(wrong)),
        ("go_at", lambda: limit.cancel(1, wrong)),
        ("consume", lambda: limit.consume(wrong)),
        ("refund", lambda: limit.refund(wrong)),
        ("the wait limit", lambda: limit.acquire(1, timeout_s=wrong)),
    ]
    before = limit.status()
    for what, call in calls:
        with pytest.raises(ValueError, match=f"rate limiter 'x': {what} must be a finite"):
            call()
        assert limit.status() == before


def test_a_debt_that_ends_past_the_largest_float_is_refused() -> None:
    # Found by an adversarial review: a reading of the largest float plus a deep debt gave
    # a go time of +inf, which stayed in the line for good (queued_s inf after the clock
    # came back to normal).
    clock = FakeClock(sys.float_info.max)
    limit = RateLimiter(10, 1, burst=5, clock=clock, name="x")
    with pytest.raises(ValueError, match=r"rate limiter 'x': consume 1e\+296 would put"):
        limit.consume(1e296)
    assert limit.reserve(5) == 0.0
    assert limit.reserve(1) == pytest.approx(0.1)
    clock.now = 100.0
    limit.status()
    clock.now = 101.0  # a confirmed jump back: re-anchored
    assert math.isfinite(limit.status().queued_s)


# -- a cancel matches only the reservation it was granted -----------------------------------------


def test_cancelling_one_reservation_twice_never_gives_back_another_waiter_s() -> None:
    # Found by an adversarial review: a go time within a millisecond of another waiting
    # reservation of that amount took it, while that waiter still went: cancelling the
    # first of 10 waiters ten times gave back [0, 1, 1, 1, 1, 1, 1, 1, 1, 2].
    clock = FakeClock(0.0)
    limit = RateLimiter(10_000, 1, burst=1, clock=clock)  # go times 0.1 ms apart
    limit.reserve()
    gos = [limit.reserve() for _ in range(10)]
    assert [limit.cancel(1, gos[0]) for _ in range(10)] == [0.0] * 10  # others behind it
    assert [limit.cancel(1, gos[-1]) for _ in range(3)] == [1.0, 0.0, 0.0]
    assert limit.status().queued_s == pytest.approx(gos[-2])  # the rest still wait
    assert not limit.try_acquire()


def test_repeated_cancels_never_exceed_the_window_bound() -> None:
    # Each step reserves two waiters and cancels the first twice (a cleanup in both an
    # `except` and a `finally`); the second still goes. 9997 went in a second at 5000 a
    # second, burst 1, against a bound of 5001.
    rate, burst, step = 5000.0, 1.0, 0.0002
    clock = FakeClock(0.0)
    limit = RateLimiter(rate, 1.0, burst=burst, clock=clock)
    admitted = 0.0
    while clock.now < 1.0 - 2 * step:
        while limit.try_acquire():
            admitted += 1
        first, second = (clock.now + limit.reserve() for _ in range(2))
        limit.cancel(1, first)
        limit.cancel(1, first)
        admitted += second < 1.0
        clock.now += step
    assert admitted <= burst + rate


def test_a_go_time_read_on_the_caller_s_clock_still_finds_its_reservation() -> None:
    # aegis-gov reads the clock before `reserve` and adds the wait: a go time a few
    # milliseconds early (a thread switch between the two) still finds the reservation,
    # when reservations of that amount are further apart than twice that.
    clock = FakeClock(0.0)
    limit = RateLimiter(60, burst=1, clock=clock)  # one a second
    limit.reserve()
    go_at = limit.reserve()
    limit.reserve()
    assert limit.cancel(1, go_at - 0.005) == 0.0  # found; one behind it keeps its slot
    assert limit.cancel(1, go_at - 0.005) == 0.0
    assert limit.cancel(1, go_at + 1.0 + 0.004) == pytest.approx(2.0)  # the last: all back
