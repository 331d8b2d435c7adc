"""The breaker's state machine as one pure function: ``step(rules, machine, event, now)``.

Every breaker, local or shared through Redis, decides through `step`: a store (see
`aegis_breaker._store`) holds one `Machine` value, hands it to `step` with an event and its
clock's *now*, and keeps the `Machine` that comes back (under a lock in memory, by an
optimistic compare-and-set in Redis). `step` never changes its arguments and reads no clock;
it returns the very same `Machine` object when the event changes nothing, which is how a store
knows it has nothing to write.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final, NamedTuple

import attrs

from aegis_breaker._events import CircuitState
from aegis_breaker._policy import ConsecutiveFailures, CountWindow, TimeWindow, TripPolicy
from aegis_breaker._windows import (
    HALF_EMPTY,
    HalfState,
    WindowState,
    add_successes,
    counts,
    empty_window,
    record,
)

if TYPE_CHECKING:
    from aegis_breaker._settings import BreakerSettings

__all__ = [
    "FAILURE",
    "IGNORE",
    "SUCCESS",
    "Admit",
    "Decision",
    "Event",
    "Machine",
    "MoveTo",
    "Observe",
    "OpenFor",
    "Report",
    "Reset",
    "Rules",
    "Token",
    "fold_successes",
    "initial_machine",
    "minimum_calls",
    "step",
    "window_counts",
]

CLOSED: Final = CircuitState.CLOSED
OPEN: Final = CircuitState.OPEN
HALF_OPEN: Final = CircuitState.HALF_OPEN
FORCED_OPEN: Final = CircuitState.FORCED_OPEN
DISABLED: Final = CircuitState.DISABLED

# Outcomes of one admitted call.
SUCCESS: Final = 0
FAILURE: Final = 1
IGNORE: Final = 2


@attrs.frozen
class Token:
    """What ties a report to its admission: the state period and, for a probe, its number.

    Every state change bumps the generation, so a report whose token is stale changes
    nothing: late results never transition. Calls admitted while CLOSED share one token per
    generation, so admission allocates nothing.
    """

    generation: int
    """The state period (generation) the call was admitted in."""
    probe: int = 0
    """0 for a call admitted while CLOSED or DISABLED; else the half-open probe's number."""
    local: bool = False
    """True when a shared breaker admitted it from its local fallback state."""


class Rules(NamedTuple):
    """The settings `step` reads, resolved once from `BreakerSettings`."""

    policy: TripPolicy
    limit: int
    recovery_timeout_s: float
    half_open_max_calls: int
    success_threshold: int
    probe_max_wait_s: float

    @classmethod
    def of(cls, settings: BreakerSettings) -> Rules:
        """Resolve *settings* (the policy default, the probe wait default)."""
        policy = settings.trip_policy
        return cls(
            policy,
            policy.limit if isinstance(policy, ConsecutiveFailures) else 0,
            float(settings.recovery_timeout_s),
            settings.half_open_max_calls,
            settings.success_threshold,
            settings.probe_max_wait_s,
        )


class Machine(NamedTuple):
    """Everything a breaker remembers, as one value (rejection counts excepted)."""

    state: CircuitState
    generation: int
    """Bumped by every transition; tokens of older generations are late."""
    failures: int
    """Failures in a row (kept while OPEN/HALF_OPEN, cleared on closing)."""
    successes: int
    """Probe successes in this HALF_OPEN period (`ConsecutiveFailures`)."""
    open_until: float
    """When an OPEN breaker turns HALF_OPEN, on the store's clock."""
    probe_seq: int
    """The number of the last probe admitted."""
    probes: tuple[tuple[int, float], ...]
    """(probe number, admitted at) of the probes in flight, oldest first."""
    window: WindowState | None
    """The CLOSED window (kept while OPEN, for snapshots); None for `ConsecutiveFailures`."""
    half: HalfState | None
    """The half-open probes' window (window policies, while HALF_OPEN)."""


class Admit(NamedTuple):
    """Admit one call."""


class Report(NamedTuple):
    """The outcome of the call admitted with *token*; *slow*: it took too long."""

    token: Token
    outcome: int
    slow: bool


class OpenFor(NamedTuple):
    """Stay OPEN for at least *seconds* (unless FORCED_OPEN or DISABLED)."""

    seconds: float


class MoveTo(NamedTuple):
    """An operator's move to *state* (HALF_OPEN, FORCED_OPEN or DISABLED)."""

    state: CircuitState


class Reset(NamedTuple):
    """Close, clearing the counts and the window."""


class Observe(NamedTuple):
    """Look: applies a due OPEN -> HALF_OPEN change."""


Event = Admit | Report | OpenFor | MoveTo | Reset | Observe
"""What a store asks `step` to decide."""


class Decision(NamedTuple):
    """What `step` decided, besides the new `Machine`."""

    token: Token | None
    """The admitted call's token (`Admit` only)."""
    rejected: CircuitState | None
    """The state that rejected an `Admit`, else None."""
    retry_after_s: float
    """For a rejection or an `Observe`: seconds until a call may pass (inf: FORCED_OPEN)."""
    changed_from: CircuitState | None
    """The state before, when the event made a transition."""
    state: CircuitState
    """The state after."""
    now: float
    """The store's clock reading the decision was made at."""
    shared: bool = False
    """Set by a shared store: *now* is its clock (the Redis server's), not the breaker's."""


def initial_machine(rules: Rules, state: CircuitState = CLOSED, now: float = 0.0) -> Machine:
    """A fresh breaker's `Machine`: CLOSED, or entered into *state* at *now*."""
    machine = Machine(CLOSED, 0, 0, 0, 0.0, 0, (), empty_window(rules.policy), None)
    if state is not CLOSED:
        machine = _enter(rules, machine, state, now)
    return machine


def _enter(
    rules: Rules, m: Machine, new: CircuitState, now: float, until: float | None = None
) -> Machine:
    """*m* moved to *new* at *now*: a new generation with its period's counts."""
    failures, window, half = m.failures, m.window, None
    open_until = m.open_until
    if new is OPEN:
        open_until = now + rules.recovery_timeout_s if until is None else until
    elif new is HALF_OPEN:
        half = None if isinstance(rules.policy, ConsecutiveFailures) else HALF_EMPTY
    elif new is CLOSED or new is DISABLED:
        # The window keeps what tripped the breaker while OPEN, for snapshots; each closed
        # (or measured-only) period starts from an empty one.
        failures = 0
        window = empty_window(rules.policy)
    return Machine(new, m.generation + 1, failures, 0, open_until, m.probe_seq, (), window, half)


def _retry(m: Machine, now: float) -> float:
    if m.state is OPEN:
        return max(m.open_until - now, 0.0)
    if m.state is FORCED_OPEN:
        return math.inf
    return 0.0


def step(rules: Rules, m: Machine, event: Event, now: float) -> tuple[Machine, Decision]:  # noqa: C901, PLR0912  # one dispatch over the events
    """Decide *event* on *m* at *now*: the next `Machine` (*m* itself if nothing changed)."""
    state = m.state
    kind = type(event)
    if kind is Admit:
        if state is CLOSED or state is DISABLED:
            return m, Decision(Token(m.generation), None, 0.0, None, state, now)
        if state is FORCED_OPEN:
            return m, Decision(None, FORCED_OPEN, math.inf, None, state, now)
        before = None
        if state is OPEN:
            if now < m.open_until:
                return m, Decision(None, OPEN, m.open_until - now, None, state, now)
            before, m = OPEN, _enter(rules, m, HALF_OPEN, now)
        return _admit_probe(rules, m, now, before)
    if kind is Report:
        assert isinstance(event, Report)  # noqa: S101  # for the type checker
        return _report(rules, m, event, now)
    before = None
    if kind is Observe:
        if state is OPEN and now >= m.open_until:
            before, m = OPEN, _enter(rules, m, HALF_OPEN, now)
    elif kind is OpenFor:
        assert isinstance(event, OpenFor)  # noqa: S101
        until = now + event.seconds
        if state is OPEN:
            if until > m.open_until:
                m = m._replace(open_until=until)
        elif state is not FORCED_OPEN and state is not DISABLED:
            before, m = state, _enter(rules, m, OPEN, now, until)
    elif kind is MoveTo:
        assert isinstance(event, MoveTo)  # noqa: S101
        if state is not event.state:
            before, m = state, _enter(rules, m, event.state, now)
    elif kind is Reset:
        if state is CLOSED:
            fresh = empty_window(rules.policy)
            if m.failures or m.window != fresh:
                m = m._replace(failures=0, window=fresh)
        else:
            before, m = state, _enter(rules, m, CLOSED, now)
    return m, Decision(None, None, _retry(m, now), before, m.state, now)


def _admit_probe(
    rules: Rules, m: Machine, now: float, before: CircuitState | None
) -> tuple[Machine, Decision]:
    """Admit a HALF_OPEN probe if a slot is free; unreported probes expire first."""
    probes = m.probes
    expired = now - rules.probe_max_wait_s
    if any(at <= expired for _, at in probes):
        probes = tuple(p for p in probes if p[1] > expired)
        m = m._replace(probes=probes)
    if len(probes) >= rules.half_open_max_calls:
        # A slot frees at the latest when the oldest probe expires.
        retry = min(at for _, at in probes) + rules.probe_max_wait_s - now
        return m, Decision(None, HALF_OPEN, retry, before, HALF_OPEN, now)
    seq = m.probe_seq + 1
    m = m._replace(probe_seq=seq, probes=(*probes, (seq, now)))
    return m, Decision(Token(m.generation, seq), None, 0.0, before, HALF_OPEN, now)


def _report(  # noqa: C901, PLR0911, PLR0912  # one decision table, read top to bottom
    rules: Rules, m: Machine, event: Report, now: float
) -> tuple[Machine, Decision]:
    token, outcome, slow = event
    state = m.state
    if token.generation != m.generation:
        return m, Decision(None, None, 0.0, None, state, now)  # late: its period is over
    failed = outcome == FAILURE
    code = int(failed) | (2 if slow else 0)
    policy = rules.policy
    if not token.probe:
        if outcome == IGNORE:
            return m, Decision(None, None, 0.0, None, state, now)
        failures = m.failures + 1 if failed else 0
        window = m.window
        if window is None:
            tripped = failed and failures >= rules.limit
            if failures == m.failures:
                return m, Decision(None, None, 0.0, None, state, now)
        else:
            assert isinstance(policy, CountWindow | TimeWindow)  # noqa: S101
            window, tripped = record(policy, window, code, now)
        # Built directly: NamedTuple._replace costs a microsecond, and this is every report.
        m = Machine(
            state,
            m.generation,
            failures,
            m.successes,
            m.open_until,
            m.probe_seq,
            m.probes,
            window,
            m.half,
        )
        if tripped and state is CLOSED:
            return _enter(rules, m, OPEN, now), Decision(None, None, 0.0, state, OPEN, now)
        return m, Decision(None, None, 0.0, None, state, now)
    probes = m.probes
    remaining = tuple(p for p in probes if p[0] != token.probe)
    if len(remaining) == len(probes):
        return m, Decision(None, None, 0.0, None, state, now)  # expired
    m = m._replace(probes=remaining)
    if outcome == IGNORE:
        return m, Decision(None, None, 0.0, None, state, now)  # its slot comes back
    half = m.half
    if half is None:  # ConsecutiveFailures
        if failed:
            m = m._replace(failures=m.failures + 1)
            return _enter(rules, m, OPEN, now), Decision(None, None, 0.0, state, OPEN, now)
        successes = m.successes + 1
        if successes < rules.success_threshold:
            return m._replace(successes=successes), Decision(None, None, 0.0, None, state, now)
        return _enter(rules, m, CLOSED, now), Decision(None, None, 0.0, state, CLOSED, now)
    calls = half.calls + 1
    half = HalfState(calls, half.failed + (code & 1), half.slow + (code >> 1))
    m = m._replace(failures=m.failures + 1 if failed else 0, half=half)
    if calls < rules.half_open_max_calls:
        return m, Decision(None, None, 0.0, None, state, now)
    assert isinstance(policy, CountWindow | TimeWindow)  # noqa: S101
    tripped = (
        half.failed / calls >= policy.failure_rate_threshold
        or half.slow / calls >= policy.slow_call_rate_threshold
    )
    new = OPEN if tripped else CLOSED
    return _enter(rules, m, new, now), Decision(None, None, 0.0, state, new, now)


def fold_successes(m: Machine, successes: int) -> Machine:
    """*m* with *successes* quick CLOSED successes more in its window (a store's tally)."""
    if not successes or m.window is None:
        return m
    return m._replace(failures=0, window=add_successes(m.window, successes))


def minimum_calls(rules: Rules, state: CircuitState) -> int:
    """Calls the window must hold before its rates mean anything (0: no window)."""
    policy = rules.policy
    if isinstance(policy, ConsecutiveFailures):
        return 0
    if state is HALF_OPEN:
        return rules.half_open_max_calls
    if isinstance(policy, TimeWindow):
        return policy.minimum_calls
    return min(policy.minimum_calls, policy.size)


def window_counts(rules: Rules, m: Machine, now: float) -> tuple[int, int, int]:
    """(calls, failed, slow) of the window a snapshot shows: the probes' while HALF_OPEN."""
    if m.state is HALF_OPEN:
        half = m.half
        return (0, 0, 0) if half is None else (half.calls, half.failed, half.slow)
    return counts(rules.policy, m.window, now)
