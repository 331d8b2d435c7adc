"""Where a breaker's state lives: the `BreakerStore` protocol and the in-memory store.

A store holds one `Machine` and applies `step` to it atomically. The in-memory store does so
under a lock that guards only O(1) work, and offers lock-free hints for what cannot change
the state, which the breaker's drivers read inline: `closed_token` (admitting while CLOSED:
one token per generation) and `quiet` (a quick success that leaves a consecutive-failure
count at zero, or that a window cannot trip on: noted on an ``itertools.count`` tally and
folded into the window before the window is next used). The Redis store
(`aegis_breaker._redis_store`) keeps the same `Machine`, encoded, in Redis.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Final, Protocol

from aegis_breaker._events import CircuitState
from aegis_breaker._machine import (
    IGNORE,
    Admit,
    Decision,
    Event,
    Machine,
    Observe,
    Report,
    Rules,
    Token,
    fold_successes,
    initial_machine,
    step,
)
from aegis_breaker._policy import ConsecutiveFailures, TimeWindow
from aegis_breaker._windows import quiet_bucket

__all__ = ["BreakerStore", "MemoryStore"]

_CLOSED: Final = CircuitState.CLOSED
_DISABLED: Final = CircuitState.DISABLED
_ADMIT: Final = Admit()
_DISCARD: Final = itertools.count()  # notes what needs no counting (consecutive failures)
_OBSERVE: Final = Observe()


class BreakerStore(Protocol):
    """Holds a breaker's `Machine` and applies `step` to it atomically.

    ``admit`` returns a bare `Token` when it took a fast path that decided nothing worth
    reporting (CLOSED), else the `Decision`. ``report`` returns None when nothing changed.
    The attributes `closed_token` and `quiet` are lock-free hints a breaker reads first: a
    store that cannot offer them (Redis) leaves them None.
    ``does_io``: calls may block on the network (async drivers then use an executor).
    """

    does_io: bool
    closed_token: Token | None
    """A token any caller may take without asking (CLOSED or DISABLED), or None."""
    quiet: Iterator[int] | None
    """While not None, a quick success of a call admitted with `closed_token` changes nothing
    that needs `report`: the caller notes it with ``next(quiet)`` instead (see `quiet_bucket`)."""
    quiet_bucket: int | None
    """With `quiet`: None, or the bucket number (time // `bucket_width`) the success must end in."""
    bucket_width: float
    """A time window's bucket width in seconds (0.0 for other policies)."""

    def admit(self) -> Token | Decision:
        """Admit one call, or reject it."""
        ...

    def report(self, token: Token, outcome: int, slow: bool, now: float | None) -> Decision | None:  # noqa: FBT001  # private, positional for speed
        """Settle the call admitted with *token*; *now*: the breaker's clock at its end."""
        ...

    def apply(self, event: Event) -> Decision:
        """Apply an operator's or a reader's *event*."""
        ...

    def look(self) -> tuple[Machine, Decision]:
        """Apply a due OPEN -> HALF_OPEN change and return the `Machine` with the decision."""
        ...

    @property
    def machine(self) -> Machine:
        """The last `Machine` this store saw, without I/O (may be stale for a shared store)."""
        ...


class MemoryStore:
    """The `Machine` of one process's breaker, behind a lock that guards O(1) work only."""

    __slots__ = (
        "_clock",
        "_consecutive",
        "_local",
        "_lock",
        "_m",
        "_rules",
        "_seen",
        "_tally",
        "bucket_width",
        "closed_token",
        "quiet",
        "quiet_bucket",
    )

    does_io = False

    def __init__(
        self,
        rules: Rules,
        clock: Callable[[], float],
        initial_state: CircuitState = _CLOSED,
        *,
        local: bool = False,
    ) -> None:
        """Start in *initial_state* on *clock*; *local* marks its tokens as a fallback's."""
        self._rules = rules
        self._clock = clock
        self._local = local
        self._lock = threading.Lock()
        policy = rules.policy
        self._consecutive = isinstance(policy, ConsecutiveFailures)
        self.bucket_width = (
            policy.window_s / policy.buckets if isinstance(policy, TimeWindow) else 0.0
        )
        # Successes noted without the lock (see `quiet`), folded in before the next step.
        self._tally = itertools.count()
        self._seen = 0
        self.quiet: Iterator[int] | None = None
        self.quiet_bucket: int | None = None
        self.closed_token: Token | None = None
        self._m = initial_machine(rules)
        now = clock() if initial_state is not _CLOSED else 0.0
        self._set(initial_machine(rules, initial_state, now))

    @property
    def machine(self) -> Machine:
        """The current `Machine` (successes on the tally not folded in yet)."""
        return self._m

    def _set(self, m: Machine) -> None:
        """Keep *m* (lock held): the fast paths read what it allows."""
        old = self._m
        self._m = m
        state = m.state
        if state is _CLOSED or state is _DISABLED:
            token = self.closed_token
            if token is None or token.generation != m.generation:
                token = Token(m.generation, 0, self._local)
            self.closed_token = token
            if m.failures:
                # A success would reset the count: it needs the lock.
                self.quiet = None
            elif self._consecutive:
                self.quiet = _DISCARD  # nothing to count: a success changes nothing
            else:
                bucket = quiet_bucket(self._rules.policy, m.window)
                # Lock-free readers see `quiet` with the bucket it goes with: clear, set, offer.
                self.quiet = None
                self.quiet_bucket = None if bucket is None or bucket < 0 else bucket
                self.quiet = None if bucket is None else self._tally
        else:
            self.closed_token = None
            self.quiet = None
        if m.generation != old.generation:
            # Successes racing the transition may be noted after it: folded into the new
            # period's window they can only lower its rates.
            self._seen = next(self._tally) + 1

    def _folded(self) -> Machine:
        """The `Machine` with the tallied successes written into its window (lock held)."""
        noted = next(self._tally)
        pending = noted - self._seen
        self._seen = noted + 1  # this read counts too
        m = self._m
        if pending:
            m = fold_successes(m, pending)
        return m

    def admit(self) -> Token | Decision:
        """CLOSED and DISABLED admit without the lock; see `BreakerStore.admit`."""
        # `closed_token` is replaced (or set to None) by every transition, so a token read
        # here just before one is stale, and its outcome is ignored as a late result.
        token = self.closed_token
        if token is not None:
            return token
        lock = self._lock
        lock.acquire()
        try:
            m, decision = step(self._rules, self._m, _ADMIT, self._clock())
            if m is not self._m:
                self._set(m)
        finally:
            lock.release()
        token = decision.token
        if token is not None and self._local:
            decision = decision._replace(token=Token(token.generation, token.probe, True))  # noqa: FBT003
        return decision

    def report(
        self,
        token: Token,
        outcome: int,
        slow: bool,  # noqa: FBT001  # private, positional for speed
        now: float | None,
    ) -> Decision | None:
        """Settle one call under the lock (the caller has tried `quiet` first)."""
        if not token.probe and outcome == IGNORE:
            return None
        lock = self._lock
        lock.acquire()
        try:
            m = self._folded()
            at = self._clock() if now is None else now
            new, decision = step(self._rules, m, Report(token, outcome, slow), at)
            if new is not self._m:
                self._set(new)
        finally:
            lock.release()
        return decision if decision.changed_from is not None else None

    def apply(self, event: Event) -> Decision:
        """Apply *event* under the lock."""
        with self._lock:
            m = self._folded()
            new, decision = step(self._rules, m, event, self._clock())
            if new is not self._m:
                self._set(new)
        return decision

    def look(self) -> tuple[Machine, Decision]:
        """Observe under the lock; the `Machine` returned has the tally folded in."""
        with self._lock:
            m = self._folded()
            new, decision = step(self._rules, m, _OBSERVE, self._clock())
            if new is not self._m:
                self._set(new)
        return new, decision
