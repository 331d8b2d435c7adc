"""RateLimiter against a tiny reference model: the same bucket, in exact virtual-time arithmetic.

The model keeps the time at which the bucket would be empty (GCRA's form of a token bucket)
as a Fraction, instead of a float token count, so a drift in the limiter's arithmetic or a
rule applied in the wrong order shows up as a difference.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
from aegis_breaker import RateLimiter, RateLimitExceededError
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from tests.breaker.support import FakeClock


@dataclasses.dataclass
class Waiter:
    """A reservation waiting in line: when it goes, how much, whether it was given back."""

    go: Fraction
    amount: Fraction
    gone: bool = False


class Model:
    """A token bucket as 'empty at' virtual time: tokens(now) = min(cap, (now - empty_at) * r)."""

    def __init__(self, rate: int, per_s: int, capacity: int) -> None:
        self.r = Fraction(rate, per_s)
        self.capacity = Fraction(capacity)
        self.now = Fraction(0)
        self.empty_at = self.now - self.capacity / self.r  # starts full
        self.last_go = Fraction(-(10**9))
        # Reservations still waiting, in line.
        self.line: list[Waiter] = []

    def _refresh(self) -> None:
        self.empty_at = max(self.empty_at, self.now - self.capacity / self.r)
        self.line = [entry for entry in self.line if entry.go > self.now]

    def tokens(self) -> Fraction:
        self._refresh()
        return (self.now - self.empty_at) * self.r

    def reserve(self, amount: Fraction, max_wait: Fraction | None = None) -> Fraction | None:
        self._refresh()
        go = max(self.now, self.empty_at + amount / self.r, self.last_go)  # never before a waiter
        if max_wait is not None and go - self.now > max_wait:
            return None
        self.empty_at += amount / self.r
        self.last_go = max(self.last_go, go)
        if go > self.now:
            self.line.append(Waiter(go, amount))
        return go - self.now

    def cancel(self, amount: Fraction, go: Fraction) -> Fraction:
        """The last in line comes back whole, with the rest of those given back before it."""
        self._refresh()
        if go <= self.now:
            return Fraction(0)
        entry = next(
            e for e in reversed(self.line) if e.go == go and e.amount == amount and not e.gone
        )
        entry.gone = True
        if entry is not self.line[-1]:
            back = self.give_back(amount, go)
            entry.amount = amount - back
            self.last_go = max(self.last_go, self.line[-1].go)
            return back
        back = Fraction(0)
        while self.line and self.line[-1].gone:
            back += self.line.pop().amount
        back = min(back, self.capacity - self.tokens())
        self.empty_at -= back / self.r
        self.last_go = self.line[-1].go if self.line else min(self.last_go, self.now)
        return back

    def give_back(self, amount: Fraction, after: Fraction) -> Fraction:
        self._refresh()
        after = max(after, self.now)
        promised = max(Fraction(0), self.last_go - after) * self.r
        back = amount - promised
        if back <= 0:
            return Fraction(0)
        if self.last_go > self.now and promised == 0:
            self.last_go = max(self.now, self.last_go - back / self.r)
        back = min(back, self.capacity - self.tokens())
        self.empty_at -= back / self.r
        return back

    def consume(self, amount: Fraction) -> None:
        self._refresh()
        self.empty_at += amount / self.r


def close(actual: float, expected: Fraction) -> bool:
    return actual == pytest.approx(float(expected), rel=1e-9, abs=1e-9)


class LimiterMachine(RuleBasedStateMachine):
    reservations = Bundle("reservations")

    @initialize(
        rate=st.sampled_from([1, 2, 5, 60]),
        per_s=st.sampled_from([1, 2, 60]),
        capacity=st.integers(1, 8),
    )
    def start(self, rate: int, per_s: int, capacity: int) -> None:
        self.clock = FakeClock(0.0)
        self.limit = RateLimiter(rate, per_s, burst=capacity, clock=self.clock)
        self.model = Model(rate, per_s, capacity)

    def _amount(self, data: int) -> int:
        return data % (int(self.model.capacity) + 1)

    @rule(quarters=st.integers(0, 40))
    def advance(self, quarters: int) -> None:
        self.clock.advance(quarters / 4)
        self.model.now += Fraction(quarters, 4)

    @rule(target=reservations, data=st.integers(0, 8))
    def reserve(self, data: int) -> tuple[int, float, Fraction]:
        amount = self._amount(data)
        wait = self.limit.reserve(amount)
        expected = self.model.reserve(Fraction(amount))
        assert expected is not None
        assert close(wait, expected)
        return amount, self.clock.now + wait, self.model.now + expected

    @rule(data=st.integers(0, 8), quarters=st.integers(0, 8))
    def reserve_with_limit(self, data: int, quarters: int) -> None:
        amount = self._amount(data)
        expected = self.model.reserve(Fraction(amount), Fraction(quarters, 4))
        if expected is None:
            with pytest.raises(RateLimitExceededError) as info:
                self.limit.reserve(amount, max_wait_s=quarters / 4)
            assert info.value.retry_after_s > quarters / 4
        else:
            assert close(self.limit.reserve(amount, max_wait_s=quarters / 4), expected)

    @rule(data=st.integers(0, 8))
    def try_acquire(self, data: int) -> None:
        amount = self._amount(data)
        went = self.limit.try_acquire(amount)
        assert went == (self.model.reserve(Fraction(amount), Fraction(0)) is not None)

    @rule(reservation=consumes(reservations))
    def cancel(self, reservation: tuple[int, float, Fraction]) -> None:
        amount, go_at, go = reservation
        back = self.limit.cancel(amount, go_at)
        assert close(back, self.model.cancel(Fraction(amount), go))

    @rule(data=st.integers(0, 16))
    def refund(self, data: int) -> None:
        assert close(self.limit.refund(data), self.model.give_back(Fraction(data), self.model.now))

    @rule(data=st.integers(0, 16))
    def consume(self, data: int) -> None:
        self.limit.consume(data)
        self.model.consume(Fraction(data))

    @invariant()
    def same_bucket(self) -> None:
        status = self.limit.status()
        assert close(status.available, self.model.tokens())
        assert status.available <= self.limit.capacity
        assert close(status.queued_s, max(Fraction(0), self.model.last_go - self.model.now))


LimiterMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestLimiterAgainstModel = LimiterMachine.TestCase
