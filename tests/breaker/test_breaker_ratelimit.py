"""RateLimiter's sans-I/O core: settings, the bucket bound, FIFO, refunds; no real time passes."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable

import pytest
from aegis_breaker import BreakerError, RateLimiter, RateLimiterStatus, RateLimitExceededError
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.breaker.support import FakeClock

EPS = 1e-6


def limiter(
    rate: float = 10.0, per_s: float = 10.0, **kwargs: object
) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock(0.0)
    return RateLimiter(rate, per_s, clock=clock, **kwargs), clock  # type: ignore[arg-type]


# -- settings and errors -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan])
@pytest.mark.parametrize("what", ["rate", "per_s", "burst"])
def test_settings_must_be_positive_and_finite(what: str, bad: float) -> None:
    kwargs: dict[str, float] = {"rate": 5.0, "per_s": 1.0, what: bad}
    with pytest.raises(ValueError, match=rf"rate limiter 'x': {what} must be a positive finite"):
        RateLimiter(kwargs["rate"], kwargs["per_s"], burst=kwargs.get("burst"), name="x")


def test_defaults_are_per_minute_with_one_period_of_burst() -> None:
    limit = RateLimiter(500)
    assert (limit.rate, limit.per_s, limit.capacity, limit.name) == (500.0, 60.0, 500.0, None)
    assert "rate=500" in repr(limit)


def test_a_full_bucket_lets_one_burst_go_at_once_then_paces() -> None:
    limit, _ = limiter(rate=5, per_s=1)
    assert [limit.reserve() for _ in range(5)] == [0.0] * 5
    assert limit.reserve() == pytest.approx(0.2)
    assert limit.reserve() == pytest.approx(0.4)


def test_burst_one_paces_evenly_from_the_start() -> None:
    limit, _ = limiter(rate=5, per_s=1, burst=1)
    assert limit.reserve() == 0.0
    assert limit.reserve() == pytest.approx(0.2)


def test_refill_is_capped_at_capacity() -> None:
    limit, clock = limiter(rate=10, per_s=1, burst=3)
    for _ in range(3):
        limit.reserve()
    clock.advance(100.0)
    assert limit.status().available == 3.0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_amount_must_be_finite_and_non_negative(bad: float) -> None:
    limit, _ = limiter()
    with pytest.raises(ValueError, match="amount must be a finite number >= 0"):
        limit.reserve(bad)
    with pytest.raises(ValueError, match="refund must be"):
        limit.refund(bad)
    with pytest.raises(ValueError, match="consume must be"):
        limit.consume(bad)


def test_an_amount_above_capacity_is_refused_up_front() -> None:
    limit, _ = limiter(rate=10, burst=4, name="tpm")
    for call in (limit.reserve, limit.try_acquire, limit.acquire):
        with pytest.raises(
            ValueError, match=r"rate limiter 'tpm': amount 5 exceeds the capacity 4"
        ):
            call(5.0)
    assert limit.status().available == 4.0


def test_max_wait_refuses_without_consuming() -> None:
    limit, _ = limiter(rate=1, per_s=1, burst=1, name="api")
    limit.reserve()
    before = limit.status()
    with pytest.raises(RateLimitExceededError) as info:
        limit.reserve(max_wait_s=0.5)
    assert info.value.retry_after_s == pytest.approx(1.0)
    assert info.value.limiter_name == "api"
    assert isinstance(info.value, BreakerError)
    assert "'api'" in str(info.value)
    assert limit.status() == before
    assert limit.reserve(max_wait_s=1.0) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [-0.5, math.nan])
def test_a_wait_limit_must_be_non_negative(bad: float) -> None:
    limit, _ = limiter()
    with pytest.raises(ValueError, match="wait limit must be >= 0"):
        limit.reserve(max_wait_s=bad)
    with pytest.raises(ValueError, match="wait limit must be >= 0"):
        limit.acquire(timeout_s=bad)
    assert limit.status().available == limit.capacity


def test_the_error_pickles() -> None:
    error = RateLimitExceededError("n", 1.5, 2.0)
    again = pickle.loads(pickle.dumps(error))
    assert (again.limiter_name, again.retry_after_s, again.amount) == ("n", 1.5, 2.0)
    assert str(again) == str(error)
    assert "rate limiter:" in str(RateLimitExceededError(None, 1.0, 1.0))


def test_try_acquire_never_jumps_the_queue() -> None:
    limit, clock = limiter(rate=1, per_s=1, burst=2)
    assert limit.try_acquire(2.0)
    assert not limit.try_acquire()
    limit.reserve(2.0)  # waits 2 s
    clock.advance(1.5)  # 1.5 tokens came back, but they are promised to the waiter
    assert not limit.try_acquire(1.0)
    clock.advance(1.5)
    assert limit.try_acquire(0.5)


def test_a_clock_read_before_another_update_counts_as_that_update() -> None:
    limit, _ = limiter(rate=1, per_s=1, burst=1)
    limit.reserve(now=10.0)
    assert limit.reserve(now=9.0) == pytest.approx(1.0)  # as if at 10.0


def test_status_snapshot() -> None:
    limit, clock = limiter(rate=6, per_s=60, name="s")
    limit.reserve(6)
    limit.reserve(2)
    clock.advance(5.0)
    status = limit.status()
    assert isinstance(status, RateLimiterStatus)
    assert status == RateLimiterStatus("s", 6.0, 60.0, 6.0, -1.5, 0, 15.0)
    assert status.to_dict() == {
        "name": "s",
        "rate": 6.0,
        "per_s": 60.0,
        "capacity": 6.0,
        "available": -1.5,
        "waiting": 0,
        "queued_s": 15.0,
        "shared": False,
    }


# -- reconciling estimates -----------------------------------------------------------------------


def test_refund_cannot_push_the_bucket_above_capacity() -> None:
    limit, _ = limiter(rate=100, burst=100)
    limit.reserve(30)
    assert limit.refund(50) == 30.0
    assert limit.status().available == 100.0


def test_consume_drives_the_bucket_into_debt_and_later_callers_wait() -> None:
    limit, _ = limiter(rate=10, per_s=1, burst=10)
    limit.reserve(8)
    limit.consume(20)  # the call used 28 where 8 were estimated; above capacity is fine here
    assert limit.status().available == -18.0
    assert limit.reserve(1) == pytest.approx(1.9)


def test_refund_keeps_capacity_promised_to_waiters() -> None:
    limit, _ = limiter(rate=1, per_s=1, burst=10)
    limit.reserve(10)  # admitted now
    assert limit.reserve(4) == pytest.approx(4.0)  # waits until t=4
    # The first call used nothing. Its 10 tokens come back except the 4 promised to the
    # waiter, who sleeps until t=4 regardless: handing those out again would let newcomers
    # take them in the same window as the waiter.
    assert limit.refund(10) == pytest.approx(6.0)
    assert limit.reserve(6) == pytest.approx(4.0)


def test_cancel_the_last_in_line_gives_everything_back() -> None:
    limit, clock = limiter(rate=1, per_s=1, burst=5)
    limit.reserve(5)
    wait = limit.reserve(3)
    assert limit.cancel(3, go_at=clock.now + wait) == 3.0
    assert limit.status().queued_s == 0.0
    assert limit.reserve(1) == pytest.approx(1.0)  # not delayed by the cancelled one


def test_cancel_with_later_reservations_keeps_their_slots() -> None:
    limit, clock = limiter(rate=1, per_s=1, burst=5)
    limit.reserve(5)
    first = limit.reserve(3)  # goes at t=3
    second = limit.reserve(1)  # goes at t=4, behind the first
    assert first == pytest.approx(3.0)
    assert second == pytest.approx(4.0)
    # 1 token of the cancelled 3 lies under the second reservation's slot: 2 come back.
    assert limit.cancel(3, go_at=clock.now + first) == pytest.approx(2.0)
    assert limit.reserve(2) == pytest.approx(4.0)  # at the end of the queue, not before


@pytest.mark.parametrize("order", ["front first", "back first", "middle out"])
def test_a_whole_line_given_up_leaves_the_bucket_as_before_it_formed(order: str) -> None:
    # A run timed out with ten callers waiting in line gives them up front first. Each had
    # later waiters scheduled behind it, so nothing came back, and the next caller waited
    # for ten turns nobody would take (9.5 s instead of 0.5 s; 16 s for a facade's next
    # one-task run at 60 requests a minute).
    limit, clock = limiter(rate=1, per_s=1, burst=1)
    limit.reserve()  # goes now: the bucket is empty
    waits = [limit.reserve() for _ in range(10)]
    assert waits == pytest.approx([float(n) for n in range(1, 11)])
    clock.advance(0.5)
    gos = waits  # their go times: the clock read 0 when they reserved
    turn = {
        "front first": gos,
        "back first": gos[::-1],
        "middle out": [
            gos[5],
            gos[4],
            gos[6],
            gos[3],
            gos[7],
            gos[2],
            gos[8],
            gos[1],
            gos[9],
            gos[0],
        ],
    }[order]
    for go_at in turn:
        limit.cancel(1.0, go_at)
    assert limit.status().queued_s == 0.0
    assert limit.status().available == pytest.approx(0.5)
    assert limit.reserve() == pytest.approx(0.5)


def test_a_line_partly_given_up_keeps_every_waiters_time_and_order() -> None:
    # The same ten; three in the middle are given up. The waiters left keep their times;
    # a newcomer goes after the last of them, never before anyone waiting (first come,
    # first served). Once everyone behind them is given up too, their turns come back.
    limit, _clock = limiter(rate=1, per_s=1, burst=1)
    limit.reserve()
    gos = [limit.reserve() for _ in range(10)]
    for go_at in gos[3:6]:
        assert limit.cancel(1.0, go_at) == 0.0  # later waiters are scheduled behind them
    assert limit.status().queued_s == pytest.approx(10.0)
    newcomer = limit.reserve(0.1)
    assert newcomer == pytest.approx(10.1)
    for go_at in [*gos[6:], *gos[:3]]:
        limit.cancel(1.0, go_at)
    assert limit.status().queued_s == pytest.approx(10.1)  # the newcomer keeps its time
    limit.cancel(0.1, newcomer)  # the last in line: every turn given up comes back
    assert limit.status().queued_s == 0.0
    assert limit.status().available == pytest.approx(0.0)  # as after the first call


def test_a_later_small_request_never_goes_before_an_earlier_one_after_a_cancel() -> None:
    # B (1 token) cancelled in the middle gave back what C was not scheduled behind, and D,
    # asking 0.1 after it, went at 1.1 s, before C (asked earlier, going at 1.5 s).
    limit, clock = limiter(rate=1, per_s=1, burst=1)
    limit.reserve(1.0)  # A, now
    b = limit.reserve(1.0)  # B at 1.0
    c = limit.reserve(0.5)  # C at 1.5
    clock.advance(0.9)
    limit.cancel(1.0, b)
    d = clock.now + limit.reserve(0.1)
    assert d >= c
    assert not limit.try_acquire(0.0)  # nobody goes now either, ahead of C and D


def test_a_rate_too_small_to_refill_is_refused_and_a_nan_reading_poisons_nothing() -> None:
    # Found by an adversarial review: 5e-324 a minute passed the positive-finite check,
    # then every reserve divided by a rate a second of 0; and one NaN clock reading made
    # the bucket NaN, so every later call went at once.
    with pytest.raises(ValueError, match="tokens a second"):
        RateLimiter(5e-324, burst=1)
    readings = iter([100.0, math.nan, 101.0, 101.0, 101.0, 101.0])
    limit = RateLimiter(60, burst=1, clock=lambda: next(readings))
    assert limit.reserve(1) == 0.0
    limit.reserve(1)  # read NaN, taken as the reading before it
    waits = [limit.reserve(1) for _ in range(3)]
    assert waits == pytest.approx([1.0, 2.0, 3.0])  # still one a second, behind the NaN one
    assert math.isfinite(limit.status().available)


_BAD_TIMES = [math.nan, math.inf, -math.inf]


def _bad_calls(
    limit: RateLimiter, bad: float, go_at: float
) -> list[tuple[str, Callable[[], object]]]:
    """Every public call given *bad* as a clock time, with the argument it names."""
    return [
        ("now", lambda: limit.reserve(1, now=bad)),
        ("now", lambda: limit.reserve(1, now=bad, max_wait_s=0.0)),
        ("go_at", lambda: limit.cancel(1, bad)),
        ("go_at", lambda: limit.cancel(1, go_at=bad, now=0.0)),
        ("now", lambda: limit.cancel(1, go_at, now=bad)),
        ("now", lambda: limit.refund(1, now=bad)),
        ("now", lambda: limit.consume(1, now=bad)),
    ]


@pytest.mark.parametrize("bad", _BAD_TIMES)
def test_a_time_that_is_not_finite_is_refused_and_changes_nothing(bad: float) -> None:
    # Found by an adversarial review: cancel(1, go_at=nan) made the bucket NaN for good
    # (every wait came back NaN, try_acquire always said yes: no limit at all), and
    # reserve(1, now=nan) admitted a request without taking capacity.
    limit, clock = limiter(rate=1, per_s=1, burst=1, name="x")
    limit.reserve()
    go_at = clock.now + limit.reserve()  # one waiting in line, to be given back
    before = limit.status()
    for argument, call in _bad_calls(limit, bad, go_at):
        with pytest.raises(ValueError, match=rf"rate limiter 'x': {argument} must be a finite"):
            call()
        assert limit.status() == before
    with pytest.raises(ValueError, match="rate limiter 'x': amount must be a finite"):
        limit.cancel(bad, go_at)
    assert limit.status() == before
    assert not limit.try_acquire()
    assert limit.cancel(1, go_at) == pytest.approx(1.0)  # the reservation is still there
    assert limit.reserve() == pytest.approx(1.0)


def test_a_waiter_interrupted_after_a_nan_clock_reading_gives_its_turn_back() -> None:
    # The driver's go time came from the reading (NaN + wait): giving it back made the bucket
    # NaN, and with go times checked it would raise a ValueError over the interruption.
    readings = iter([0.0, math.nan, math.nan, 0.0, 0.0])
    limit = RateLimiter(1, 1, burst=1, clock=lambda: next(readings), name="x")
    limit.reserve()

    def interrupted(_seconds: float) -> None:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        limit.acquire(sleep=interrupted)
    status = limit.status()
    assert (status.available, status.queued_s) == (0.0, 0.0)  # as before the acquire


@st.composite
def calls_with_rejected_ones(
    draw: st.DrawFn,
) -> tuple[float, float, list[tuple[float, str, float, int | None]]]:
    rate, per_s = draw(rates), draw(periods)
    steps = draw(
        st.lists(
            st.tuples(
                st.floats(0.0, per_s),  # time to advance before the call
                st.sampled_from(["reserve", "cancel", "refund", "consume", "try", "status"]),
                st.floats(0.0, 1.0),  # the amount, as a fraction of the capacity
                st.one_of(st.none(), st.integers(0, 6)),  # a refused call made first
            ),
            max_size=40,
        )
    )
    return rate, per_s, steps


@settings(max_examples=200, deadline=None)
@given(calls_with_rejected_ones(), st.sampled_from(_BAD_TIMES))
def test_refused_calls_leave_the_state_as_without_them(
    work: tuple[float, float, list[tuple[float, str, float, int | None]]], bad: float
) -> None:
    rate, per_s, steps = work
    clocks = FakeClock(0.0), FakeClock(0.0)
    plain, poked = (RateLimiter(rate, per_s, burst=rate, clock=c) for c in clocks)
    pending: list[tuple[float, float]] = []  # (go time, amount) of reservations that wait
    for advance, op, fraction, refused in steps:
        for clock in clocks:
            clock.advance(advance)
        now = clocks[0].now
        pending = [p for p in pending if p[0] > now]
        if refused is not None:
            calls = _bad_calls(poked, bad, pending[-1][0] if pending else now + 1.0)
            with pytest.raises(ValueError, match="must be a finite"):
                calls[refused % len(calls)][1]()
        amount = fraction * plain.capacity
        if op == "reserve":
            waits = [limit.reserve(amount) for limit in (plain, poked)]
            assert waits[0] == waits[1]
            if waits[0] > 0:
                pending.append((now + waits[0], amount))
        elif op == "cancel" and pending:
            go_at, taken = pending.pop(len(pending) // 2)
            assert plain.cancel(taken, go_at) == poked.cancel(taken, go_at)
        elif op == "refund":
            assert plain.refund(amount) == poked.refund(amount)
        elif op == "consume":
            plain.consume(amount)
            poked.consume(amount)
        elif op == "try":
            assert plain.try_acquire(amount) == poked.try_acquire(amount)
        assert plain.status() == poked.status()
        assert math.isfinite(poked.status().available)


def test_cancel_after_the_go_time_gives_nothing_back() -> None:
    limit, clock = limiter(rate=1, per_s=1, burst=1)
    limit.reserve()
    wait = limit.reserve()
    clock.advance(wait)
    assert limit.cancel(1, go_at=wait) == 0.0


# -- properties ------------------------------------------------------------------------------------

rates = st.sampled_from([1.0, 3.0, 10.0, 500.0])
periods = st.sampled_from([0.5, 1.0, 60.0])


@st.composite
def workloads(draw: st.DrawFn) -> tuple[float, float, float, list[tuple[float, float, bool]]]:
    rate, per_s = draw(rates), draw(periods)
    burst = draw(st.one_of(st.just(rate), st.floats(0.5, 2 * rate)))
    steps = draw(
        st.lists(
            st.tuples(
                st.floats(0.0, 2.0 * per_s),  # time to advance before the request
                st.floats(0.0, 1.0),  # the amount, as a fraction of the capacity
                st.booleans(),  # whether a pending reservation is cancelled first
            ),
            max_size=60,
        )
    )
    return rate, per_s, burst, steps


@settings(max_examples=300, deadline=None)
@given(workloads())
def test_no_window_of_per_s_admits_more_than_capacity_plus_rate(
    work: tuple[float, float, float, list[tuple[float, float, bool]]],
) -> None:
    """The bucket bound: admitted in any closed window of length T <= capacity + rate*T/per_s.

    Proof, for reservations (cancellations only put back capacity nobody was scheduled on):
    order the reservations whose go times fall in [t, t+T]; go times are monotone in order,
    so they are consecutive, from j0 (reserved at n0 with y0 <= capacity tokens before it)
    to j*. The bucket stays below capacity (no capping) while anyone waits, and when j* goes
    the bucket, net of all of them, is >= 0: sum <= y0 + r*(go* - n0). If j0 waited,
    y0 + r*(go0 - n0) = a0 <= capacity, so sum <= a0 + r*(go* - go0) <= capacity + r*T; if
    not, go0 = n0 >= t and sum <= y0 + r*T. With T = per_s: capacity + rate.
    """
    rate, per_s, burst, steps = work
    clock = FakeClock(0.0)
    limit = RateLimiter(rate, per_s, burst=burst, clock=clock)
    capacity = limit.capacity
    admitted: list[list[float]] = []  # [go time, amount]
    for advance, fraction, cancel_one in steps:
        clock.advance(advance)
        if cancel_one:
            pending = [r for r in admitted if r[0] > clock.now]
            if pending:
                victim = pending[len(pending) // 2]
                limit.cancel(victim[1], go_at=victim[0])
                admitted.remove(victim)
        amount = fraction * capacity
        wait = limit.reserve(amount)
        assert wait >= 0.0
        admitted.append([clock.now + wait, amount])
        assert limit.status().available <= capacity + EPS
    scale = capacity + rate
    for start, _ in admitted:
        inside = sum(a for go, a in admitted if start <= go <= start + per_s)
        assert inside <= scale + EPS * scale


@settings(max_examples=200, deadline=None)
@given(workloads())
def test_go_times_are_first_come_first_served(
    work: tuple[float, float, float, list[tuple[float, float, bool]]],
) -> None:
    rate, per_s, burst, steps = work
    clock = FakeClock(0.0)
    limit = RateLimiter(rate, per_s, burst=burst, clock=clock)
    last_go = -math.inf
    for advance, fraction, _ in steps:
        clock.advance(advance)
        wait = limit.reserve(fraction * limit.capacity)
        assert wait >= 0.0
        go = clock.now + wait
        assert go >= last_go - EPS * max(1.0, abs(go))
        last_go = max(last_go, go)


@settings(max_examples=200, deadline=None)
@given(
    rates,
    periods,
    st.lists(
        st.tuples(
            st.sampled_from(["reserve", "refund", "consume", "try"]),
            st.floats(0.0, 1.0),
            st.floats(0.0, 5.0),
        ),
        max_size=50,
    ),
)
def test_refunds_never_exceed_capacity(
    rate: float, per_s: float, ops: list[tuple[str, float, float]]
) -> None:
    clock = FakeClock(0.0)
    limit = RateLimiter(rate, per_s, clock=clock)
    for op, fraction, advance in ops:
        clock.advance(advance)
        amount = fraction * limit.capacity
        before, queued = limit.status().available, limit.status().queued_s
        if op == "reserve":
            assert limit.reserve(amount) >= 0.0
        elif op == "refund":
            back = limit.refund(2 * amount)
            assert 0.0 <= back <= 2 * amount
            assert limit.status().available == pytest.approx(before + back)
        elif op == "consume":
            limit.consume(amount)
        else:
            went = limit.try_acquire(amount)
            # A shortfall below 1e-9 of the capacity is float rounding, and counts as none;
            # nobody goes before a caller waiting in line (first come, first served).
            assert went == (before - amount >= -1e-9 * limit.capacity and queued == 0.0)
        assert limit.status().available <= limit.capacity
