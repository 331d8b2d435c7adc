"""The breaker against a tiny reference model, driven by Hypothesis.

One model, three policies: consecutive failures, a count window and a time window (with slow
calls timed on the fake clock), plus the operator's forced states.
"""

from __future__ import annotations

import math

import attrs
from aegis_breaker import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    ConsecutiveFailures,
    CountWindow,
    Permit,
    TimeWindow,
    TripPolicy,
)
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .support import BoomError, FakeClock, Interrupt

LIMIT, RECOVERY, MAX_CALLS, THRESHOLD, MAX_WAIT = 3, 10.0, 2, 2, 25.0
SLOW_S = 2.0
COUNT = CountWindow(
    size=4,
    minimum_calls=2,
    failure_rate_threshold=0.5,
    slow_call_duration_s=SLOW_S,
    slow_call_rate_threshold=0.75,
)
# One-second buckets and half-second clock steps keep the model's arithmetic exact.
TIME = TimeWindow(
    window_s=5.0,
    buckets=5,
    minimum_calls=2,
    failure_rate_threshold=0.5,
    slow_call_duration_s=SLOW_S,
    slow_call_rate_threshold=0.75,
)

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
FORCED_OPEN, DISABLED = CircuitState.FORCED_OPEN, CircuitState.DISABLED


@attrs.define
class ModelPermit:
    generation: int
    probe: bool
    admitted_at: float
    reported: bool = False


@attrs.define
class Model:
    """The rules of the issues, written the plain way: windows are plain lists."""

    policy: TripPolicy
    state: CircuitState = CLOSED
    failures: int = 0
    successes: int = 0
    open_until: float = 0.0
    generation: int = 0
    probes: list[ModelPermit] = attrs.Factory(list)
    window: list[tuple[float, bool, bool]] = attrs.Factory(list)  # (time, failed, slow)
    half: list[tuple[bool, bool]] = attrs.Factory(list)
    rejected: int = 0

    def move(self, new: CircuitState, now: float) -> None:
        self.state = new
        self.generation += 1
        self.probes = []
        self.successes = 0
        if new is OPEN:
            self.open_until = now + RECOVERY
        if new is HALF_OPEN:
            self.half = []
        if new in {CLOSED, DISABLED}:
            self.failures = 0
            self.window = []

    def in_window(self, now: float) -> list[tuple[float, bool, bool]]:
        if isinstance(self.policy, CountWindow):
            return self.window[-self.policy.size :]
        if isinstance(self.policy, TimeWindow):
            width = self.policy.window_s / self.policy.buckets
            oldest = math.floor(now / width) - self.policy.buckets
            return [w for w in self.window if math.floor(w[0] / width) > oldest]
        return []

    def rates(self, now: float) -> tuple[int, int, int]:
        if self.state is HALF_OPEN:
            calls = [(0.0, f, s) for f, s in self.half]
        else:
            calls = self.in_window(now)
        return len(calls), sum(f for _, f, _ in calls), sum(s for _, _, s in calls)

    def minimum(self) -> int:
        if self.state is HALF_OPEN:
            return MAX_CALLS
        assert not isinstance(self.policy, ConsecutiveFailures)
        if isinstance(self.policy, CountWindow):
            return min(self.policy.minimum_calls, self.policy.size)
        return self.policy.minimum_calls

    def exceeded(self, now: float) -> bool:
        assert not isinstance(self.policy, ConsecutiveFailures)
        calls, failed, slow = self.rates(now)
        if calls < self.minimum():
            return False
        return (
            failed / calls >= self.policy.failure_rate_threshold
            or slow / calls >= self.policy.slow_call_rate_threshold
        )

    def observe(self, now: float) -> None:
        if self.state is OPEN and now >= self.open_until:
            self.move(HALF_OPEN, now)

    def admit(self, now: float) -> ModelPermit | None:
        self.observe(now)
        if self.state in {CLOSED, DISABLED}:
            return ModelPermit(self.generation, probe=False, admitted_at=now)
        if self.state in {OPEN, FORCED_OPEN}:
            self.rejected += 1
            return None
        self.probes = [p for p in self.probes if p.admitted_at + MAX_WAIT > now]
        if len(self.probes) >= MAX_CALLS:
            self.rejected += 1
            return None
        permit = ModelPermit(self.generation, probe=True, admitted_at=now)
        self.probes.append(permit)
        return permit

    def report(self, permit: ModelPermit, outcome: str, now: float) -> None:  # noqa: PLR0911  # one return per rule, as the issue states them
        if permit.reported:
            return
        permit.reported = True
        slow = now - permit.admitted_at > SLOW_S and self.policy.slow_call_duration_s is not None
        failed = outcome == "failure"
        if permit.probe:
            if not any(p is permit for p in self.probes):
                return
            self.probes = [p for p in self.probes if p is not permit]
            if outcome == "ignore":
                return
            if isinstance(self.policy, ConsecutiveFailures):
                # As in 0.1: a probe success keeps the count until the breaker closes.
                if failed:
                    self.failures += 1
                    self.move(OPEN, now)
                    return
                self.successes += 1
                if self.successes >= THRESHOLD:
                    self.move(CLOSED, now)
                return
            self.failures = self.failures + 1 if failed else 0
            self.half.append((failed, slow))
            if len(self.half) >= MAX_CALLS:
                self.move(OPEN if self.exceeded(now) else CLOSED, now)
            return
        if permit.generation != self.generation or outcome == "ignore":
            return
        self.failures = self.failures + 1 if failed else 0
        if isinstance(self.policy, ConsecutiveFailures):
            tripped = failed and self.failures >= LIMIT
        else:
            self.window.append((now, failed, slow))
            tripped = self.exceeded(now)
        if tripped and self.state is CLOSED:
            self.move(OPEN, now)

    def open_for(self, seconds: float, now: float) -> None:
        if self.state is OPEN:
            self.open_until = max(self.open_until, now + seconds)
        elif self.state not in {FORCED_OPEN, DISABLED}:
            self.move(OPEN, now)
            self.open_until = now + seconds

    def operator(self, new: CircuitState, now: float) -> None:
        if self.state is not new:
            self.move(new, now)
        elif new is CLOSED:  # reset of a closed breaker clears its counts
            self.failures = 0
            self.window = []


class BreakerMachine(RuleBasedStateMachine):
    policy: TripPolicy = ConsecutiveFailures(LIMIT)

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(0.0)
        self.breaker = CircuitBreaker(
            LIMIT,
            RECOVERY,
            half_open_max_calls=MAX_CALLS,
            success_threshold=THRESHOLD,
            half_open_max_wait_s=MAX_WAIT,
            clock=self.clock,
            policy=self.policy,
        )
        self.model = Model(self.policy)
        self.outstanding: list[tuple[Permit, ModelPermit]] = []

    @rule()
    def admit(self) -> None:
        expected = self.model.admit(self.clock.now)
        try:
            permit = self.breaker.admit()
        except CircuitOpenError as exc:
            rejection: CircuitOpenError | None = exc
        else:
            rejection = None
        if rejection is not None:
            assert expected is None
            assert rejection.retry_after_s > 0
            assert rejection.state is self.model.state
            return
        assert expected is not None
        assert permit.is_probe == expected.probe
        self.outstanding.append((permit, expected))

    @precondition(lambda self: self.outstanding)
    @rule(
        index=st.integers(min_value=0),
        outcome=st.sampled_from(["success", "failure", "ignore"]),
        forget=st.booleans(),
    )
    def report(self, index: int, outcome: str, forget: bool) -> None:
        permit, expected = self.outstanding[index % len(self.outstanding)]
        if forget:  # keep it to report again (a no-op) later
            self.outstanding.remove((permit, expected))
        self.model.report(expected, outcome, self.clock.now)
        {"success": permit.success, "failure": permit.failure, "ignore": permit.ignore}[outcome]()

    @rule(
        outcome=st.sampled_from(["success", "failure", "ignore"]),
        takes=st.sampled_from([0.0, 0.5, 2.5]),
    )
    def call(self, outcome: str, takes: float) -> None:
        """A whole call through `call` (the drivers' path), taking *takes* seconds."""
        expected = self.model.admit(self.clock.now)

        def body() -> str:
            self.clock.advance(takes)
            if outcome == "failure":
                raise BoomError
            if outcome == "ignore":
                raise Interrupt
            return "ok"

        rejection: CircuitOpenError | None = None
        try:
            self.breaker.call(body)
        except CircuitOpenError as exc:
            rejection = exc
        except (BoomError, Interrupt):
            pass
        if rejection is not None:
            assert expected is None
            assert rejection.state is self.model.state
            return
        assert expected is not None
        self.model.report(expected, outcome, self.clock.now)

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 30.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(seconds=st.sampled_from([0.0, 1.0, 20.0]))
    def open_for(self, seconds: float) -> None:
        self.model.open_for(seconds, self.clock.now)
        self.breaker.open_for(seconds)

    @rule()
    def reset(self) -> None:
        self.model.operator(CLOSED, self.clock.now)
        self.breaker.reset()

    @rule()
    def force_open(self) -> None:
        self.model.operator(FORCED_OPEN, self.clock.now)
        self.breaker.force_open()

    @rule()
    def disable(self) -> None:
        self.model.operator(DISABLED, self.clock.now)
        self.breaker.disable()

    @rule()
    def transition_to_half_open(self) -> None:
        self.model.operator(HALF_OPEN, self.clock.now)
        self.breaker.transition_to_half_open()

    @invariant()
    def agrees_with_the_model(self) -> None:
        now = self.clock.now
        self.model.observe(now)
        assert self.breaker.state is self.model.state
        assert self.breaker.consecutive_failures == self.model.failures
        if self.model.state is OPEN:
            expected_retry = self.model.open_until - now
        elif self.model.state is FORCED_OPEN:
            expected_retry = math.inf
        else:
            expected_retry = 0.0
        assert self.breaker.retry_after_s == expected_retry
        status = self.breaker.snapshot()
        assert status.rejected_calls == self.model.rejected
        if not isinstance(self.policy, ConsecutiveFailures):
            calls, failed, slow = self.model.rates(now)
            assert (status.calls_in_window, status.failed_calls, status.slow_calls) == (
                calls,
                failed,
                slow,
            )
            if calls and calls >= self.model.minimum():
                assert status.failure_rate == failed / calls
                assert status.slow_call_rate == slow / calls
            else:
                assert status.failure_rate is None


class CountWindowMachine(BreakerMachine):
    policy = COUNT


class TimeWindowMachine(BreakerMachine):
    policy = TIME


TestBreakerMachine = BreakerMachine.TestCase
TestCountWindowMachine = CountWindowMachine.TestCase
TestTimeWindowMachine = TimeWindowMachine.TestCase
