"""The breaker against a tiny reference model, driven by Hypothesis."""

from __future__ import annotations

import attrs
from aegis_breaker import CircuitBreaker, CircuitOpenError, CircuitState, Permit
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .support import FakeClock

LIMIT, RECOVERY, MAX_CALLS, THRESHOLD, MAX_WAIT = 3, 10.0, 2, 2, 25.0


@attrs.define
class ModelPermit:
    generation: int
    probe: bool
    admitted_at: float
    reported: bool = False


@attrs.define
class Model:
    """The rules of the issue, written the plain way."""

    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    successes: int = 0
    open_until: float = 0.0
    generation: int = 0
    probes: list[ModelPermit] = attrs.Factory(list)

    def move(self, new: CircuitState, now: float) -> None:
        self.state = new
        self.generation += 1
        self.probes = []
        self.successes = 0
        if new is CircuitState.OPEN:
            self.open_until = now + RECOVERY
        if new is CircuitState.CLOSED:
            self.failures = 0

    def observe(self, now: float) -> None:
        if self.state is CircuitState.OPEN and now >= self.open_until:
            self.move(CircuitState.HALF_OPEN, now)

    def admit(self, now: float) -> ModelPermit | None:
        self.observe(now)
        if self.state is CircuitState.CLOSED:
            return ModelPermit(self.generation, probe=False, admitted_at=now)
        if self.state is CircuitState.OPEN:
            return None
        self.probes = [p for p in self.probes if p.admitted_at + MAX_WAIT > now]
        if len(self.probes) >= MAX_CALLS:
            return None
        permit = ModelPermit(self.generation, probe=True, admitted_at=now)
        self.probes.append(permit)
        return permit

    def report(self, permit: ModelPermit, outcome: str, now: float) -> None:
        if permit.reported:
            return
        permit.reported = True
        if permit.probe:
            if not any(p is permit for p in self.probes):
                return
            self.probes = [p for p in self.probes if p is not permit]
            if outcome == "failure":
                self.failures += 1
                self.move(CircuitState.OPEN, now)
            elif outcome == "success":
                self.successes += 1
                if self.successes >= THRESHOLD:
                    self.move(CircuitState.CLOSED, now)
            return
        if permit.generation != self.generation or outcome == "ignore":
            return
        if outcome == "success":
            self.failures = 0
            return
        self.failures += 1
        if self.failures >= LIMIT:
            self.move(CircuitState.OPEN, now)

    def open_for(self, seconds: float, now: float) -> None:
        if self.state is CircuitState.OPEN:
            self.open_until = max(self.open_until, now + seconds)
        else:
            self.move(CircuitState.OPEN, now)
            self.open_until = now + seconds


class BreakerMachine(RuleBasedStateMachine):
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
        )
        self.model = Model()
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

    @rule(seconds=st.sampled_from([0.0, 0.5, 5.0, 10.0, 25.0, 30.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(seconds=st.sampled_from([0.0, 1.0, 20.0]))
    def open_for(self, seconds: float) -> None:
        self.model.open_for(seconds, self.clock.now)
        self.breaker.open_for(seconds)

    @rule()
    def reset(self) -> None:
        if self.model.state is CircuitState.CLOSED:
            self.model.failures = 0
        else:
            self.model.move(CircuitState.CLOSED, self.clock.now)
        self.breaker.reset()

    @invariant()
    def agrees_with_the_model(self) -> None:
        self.model.observe(self.clock.now)
        assert self.breaker.state is self.model.state
        assert self.breaker.consecutive_failures == self.model.failures
        expected_retry = (
            self.model.open_until - self.clock.now if self.model.state is CircuitState.OPEN else 0.0
        )
        assert self.breaker.retry_after_s == expected_retry


TestBreakerMachine = BreakerMachine.TestCase
