"""The transition function both stores share: pure, deterministic, and encodable for Redis.

`step` is internal (both breakers go through it), so these tests import it from its module.
The breaker-level semantics are tested through the public API elsewhere (the stateful model,
the window ports, and the local-vs-Redis differential tests in tests/scale).
"""

from __future__ import annotations

import copy

import attrs
import pytest
from aegis_breaker import (
    BreakerSettings,
    CircuitBreaker,
    CircuitState,
    CountWindow,
    Permit,
    StateChanged,
    TimeWindow,
)
from aegis_breaker._machine import (
    FAILURE,
    IGNORE,
    SUCCESS,
    Admit,
    Event,
    Machine,
    MoveTo,
    Observe,
    OpenFor,
    Report,
    Reset,
    Rules,
    Token,
    initial_machine,
    step,
)
from aegis_breaker._redis_codec import decode, encode
from hypothesis import given
from hypothesis import strategies as st

from .support import FakeClock

POLICIES = {
    "consecutive": None,
    "count": CountWindow(size=4, minimum_calls=2, slow_call_duration_s=2.0),
    "time": TimeWindow(window_s=20.0, buckets=4, minimum_calls=2, slow_call_duration_s=2.0),
}


def rules_for(policy: CountWindow | TimeWindow | None) -> Rules:
    return Rules.of(
        BreakerSettings(
            consecutive_failure_limit=2,
            recovery_timeout_s=10.0,
            half_open_max_calls=2,
            success_threshold=2,
            half_open_max_wait_s=25.0,
            policy=policy,
        )
    )


# Each step: an event kind, a number (which permit, how long, which state) and a time step.
_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["admit", "success", "failure", "ignore", "slow", "open", "move", "reset"]),
        st.integers(0, 7),
        st.sampled_from([0.0, 0.0, 1.0, 5.0, 30.0]),
    ),
    max_size=40,
)
_MOVES = (CircuitState.HALF_OPEN, CircuitState.FORCED_OPEN, CircuitState.DISABLED)


def _event(kind: str, number: int, tokens: list[Token]) -> Event:
    if kind == "admit":
        return Admit()
    if kind == "open":
        return OpenFor(float(number))
    if kind == "move":
        return MoveTo(_MOVES[number % 3])
    if kind == "reset":
        return Reset()
    if not tokens:
        return Observe()
    token = tokens[number % len(tokens)]
    outcome = {"success": SUCCESS, "failure": FAILURE, "ignore": IGNORE, "slow": SUCCESS}[kind]
    return Report(token, outcome, kind == "slow")


def _run(policy: CountWindow | TimeWindow | None, steps: list[tuple[str, int, float]]) -> None:
    rules = rules_for(policy)
    machine = initial_machine(rules)
    now = 100.0
    tokens: list[Token] = []
    for kind, number, elapsed in steps:
        now += elapsed
        event = _event(kind, number, tokens)
        before = copy.deepcopy(machine)
        new, decision = step(rules, machine, event, now)
        assert machine == before  # nothing is changed in place
        assert step(rules, machine, event, now) == (new, decision)  # deterministic
        assert decision.now == now
        assert decision.state is new.state
        if decision.changed_from is not None:
            assert new.generation == machine.generation + 1
            assert decision.changed_from is machine.state
        else:
            assert new.state is machine.state
            assert new.generation == machine.generation
        if decision.token is not None:
            tokens.append(decision.token)
            assert decision.token.generation == new.generation
        assert decode(encode(new)) == new  # what the Redis store writes reads back the same
        machine = new


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
@given(steps=_STEPS)
def test_step_is_pure_deterministic_and_encodable(
    policy: CountWindow | TimeWindow | None, steps: list[tuple[str, int, float]]
) -> None:
    _run(policy, steps)


def test_an_event_that_changes_nothing_returns_the_same_machine() -> None:
    # The stores rely on identity to know there is nothing to write.
    rules = rules_for(None)
    machine = initial_machine(rules)
    for event in (Admit(), Observe(), Reset(), Report(Token(0), SUCCESS, slow=False)):
        assert step(rules, machine, event, 5.0)[0] is machine
    late = Report(Token(7), FAILURE, slow=False)  # from another generation: a late result
    assert step(rules, machine, late, 5.0)[0] is machine


def test_a_window_machine_round_trips_through_its_encoding() -> None:
    rules = rules_for(POLICIES["time"])
    machine = initial_machine(rules)
    for at, outcome in ((100.0, SUCCESS), (106.0, FAILURE), (113.0, SUCCESS)):
        machine, _ = step(rules, machine, Report(Token(0), outcome, slow=at > 110), at)
    assert machine.window is not None
    text = encode(machine)
    assert decode(text) == machine
    assert isinstance(decode(text), Machine)


@pytest.mark.parametrize("text", ["", "0|1|2", "9|0|0|0|0.0|0|||", "0|x|0|0|0.0|0|||"])
def test_decoding_garbage_raises_value_error_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="not an encoded breaker state"):
        decode(text)


def test_tokens_are_small_frozen_values() -> None:
    token = Token(3, 2)
    assert (token.generation, token.probe, token.local) == (3, 2, False)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        token.generation = 4  # type: ignore[misc]
    breaker = CircuitBreaker(1, 10.0, clock=FakeClock())
    first, second = breaker.admit(), breaker.admit()
    assert isinstance(first, Permit)
    assert first.generation == second.generation == 0  # CLOSED admissions share one token


def test_local_events_are_timed_on_the_breaker_clock_only() -> None:
    clock = FakeClock()
    heard: list[object] = []
    breaker = CircuitBreaker(1, 10.0, clock=clock, listeners=[heard.append])
    clock.advance(3.0)
    breaker.force_open()
    (changed,) = heard
    assert isinstance(changed, StateChanged)
    assert (changed.at, changed.shared_at, changed.remote) == (clock.now, None, False)
