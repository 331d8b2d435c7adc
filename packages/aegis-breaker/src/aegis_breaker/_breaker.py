"""The circuit breaker: one sans-I/O state machine with thin sync and async drivers."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, overload

import attrs

from aegis_breaker._errors import BulkheadFullError, CircuitOpenError
from aegis_breaker._events import (
    BreakerEvent,
    BreakerListener,
    CallEvent,
    CallFailed,
    CallListener,
    CallRejected,
    CallSucceeded,
    CircuitState,
    StateChanged,
)
from aegis_breaker._policy import (
    ConsecutiveFailures,
    TimeWindow,
    TripPolicy,
    WindowCounts,
    half_open_window,
    new_window,
)
from aegis_breaker._settings import BreakerSettings
from aegis_breaker._status import BreakerStatus

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        Awaitable,
        Callable,
        Coroutine,
        Generator,
        Iterable,
        Iterator,
    )
    from types import TracebackType

__all__ = ["CircuitBreaker", "Permit"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
E = TypeVar("E")

_CLOSED: Final = CircuitState.CLOSED
_OPEN: Final = CircuitState.OPEN
_HALF_OPEN: Final = CircuitState.HALF_OPEN
_FORCED_OPEN: Final = CircuitState.FORCED_OPEN
_DISABLED: Final = CircuitState.DISABLED

# Outcomes of one admitted call.
_SUCCESS: Final = 0
_FAILURE: Final = 1
_IGNORE: Final = 2


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
    """True when a `RedisCircuitBreaker` admitted it from its local fallback state."""


_SETTING_DEFAULTS: Final = BreakerSettings()


def _emit(listeners: Iterable[Callable[[Any], None]], events: Iterable[object]) -> None:
    """Deliver *events* to *listeners*; a listener that raises is logged and skipped."""
    for event in events:
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # noqa: PERF203  # each listener is isolated from the others
                logger.exception("breaker listener %r raised on %r; ignored", listener, event)


def merge_settings(settings: BreakerSettings | None, who: str, **given: object) -> BreakerSettings:
    """Build settings from keywords, or take *settings* when no keyword left its default.

    Raises:
        TypeError: When *settings* and a non-default keyword are both given.
        ValueError: When a setting is out of range (the message names *who* and the setting).
    """
    if settings is not None:
        clashing = sorted(k for k, v in given.items() if v != getattr(_SETTING_DEFAULTS, k))
        if clashing:
            raise TypeError(f"{who}: pass settings= or {', '.join(clashing)}, not both")
        return settings
    try:
        return BreakerSettings(**given)  # type: ignore[arg-type]  # keywords mirror the fields
    except ValueError as exc:
        raise ValueError(f"{who}: {exc}") from None


class Permit:
    """The right to make one call through a breaker, returned by `CircuitBreaker.admit`.

    Report the call's outcome exactly once with `success`, `failure` or `ignore`; later reports
    are ignored. A report from a permit admitted before the breaker last changed state (a late
    result) never causes a transition. When the breaker times calls (a slow-call policy, or
    call listeners), the call's duration runs from `admit` to the report. A permit is meant
    for one caller; it is not itself locked.
    """

    __slots__ = ("_breaker", "_reported", "_started", "_token")

    def __init__(self, breaker: CircuitBreaker, token: Token, started: float | None = None) -> None:
        """Wrap *token*, as issued by *breaker*; use `CircuitBreaker.admit` instead."""
        self._breaker = breaker
        self._token = token
        self._started = started
        self._reported = False

    @property
    def generation(self) -> int:
        """The breaker generation (state period) in which this permit was admitted."""
        return self._token.generation

    @property
    def is_probe(self) -> bool:
        """Whether this permit is a half-open probe."""
        return self._token.probe != 0

    @property
    def reported(self) -> bool:
        """Whether an outcome has been reported already."""
        return self._reported

    def success(self) -> None:
        """Report that the call succeeded."""
        self._settle(_SUCCESS, None)

    def failure(self, exc: BaseException | None = None) -> None:
        """Report that the call failed with *exc*.

        With an exception, the breaker's classification applies: a `BaseException` that is not an
        `Exception`, or one that ``is_failure`` declines, is reported as ignored instead.
        """
        self._settle(_FAILURE if exc is None else self._breaker._classify(exc), exc)  # noqa: SLF001  # Permit is the breaker's own helper

    def ignore(self) -> None:
        """Report that the outcome says nothing about the dependency; a probe slot comes back."""
        self._settle(_IGNORE, None)

    def _settle(self, outcome: int, error: BaseException | None) -> None:
        if self._reported:
            return
        self._reported = True
        breaker = self._breaker
        started = self._started
        duration = 0.0 if started is None else breaker._clock() - started  # noqa: SLF001  # Permit is the breaker's own helper
        breaker._report(self._token, outcome, duration, error)  # noqa: SLF001  # Permit is the breaker's own helper

    def __repr__(self) -> str:
        """Show the generation and whether the permit is a probe or reported."""
        return (
            f"Permit(generation={self.generation}, is_probe={self.is_probe}, "
            f"reported={self._reported})"
        )


class CircuitBreaker:
    """A thread- and asyncio-safe circuit breaker.

    CLOSED: calls pass; the trip policy decides when it opens (exactly once, however many
    callers fail together). The default, `ConsecutiveFailures`, trips after
    ``consecutive_failure_limit`` failures in a row; `CountWindow` and `TimeWindow` trip on the
    failure rate or the slow-call rate over a sliding window. OPEN: calls are rejected with a
    fresh `CircuitOpenError` until ``recovery_timeout_s`` has passed on *clock*, then the
    breaker turns HALF_OPEN lazily, on the next look (no timers, no threads). HALF_OPEN: at most
    ``half_open_max_calls`` probes are in flight. Under `ConsecutiveFailures`,
    ``success_threshold`` probe successes close it and a probe failure reopens it; under a
    window policy, the first ``half_open_max_calls`` probe outcomes are a window of their own
    whose rates decide. A probe that does not report within ``half_open_max_wait_s`` frees its
    slot.

    Operators can `force_open` (reject everything until told otherwise), `disable` (admit
    everything, keep measuring, never trip), `transition_to_half_open` and `reset`; a breaker
    can also start in any state (*initial_state*).

    Every outcome is a success, a failure or ignored. A `BaseException` that is not an `Exception`
    (cancellation, KeyboardInterrupt), a `BulkheadFullError` (no call was made), and any
    exception ``is_failure`` declines are ignored: no counter changes and a half-open slot is
    given back.

    The internal lock guards only O(1) updates: it is never held during the user's call, across
    an ``await``, or while listeners run. Use it through `call` / `acall`, as a decorator
    (including on generator and async-generator functions), as a (async) context manager, or
    through the sans-I/O `admit` API.

    Args:
        consecutive_failure_limit: Failures in a row, while CLOSED, that trip the breaker (>= 1).
        recovery_timeout_s: Seconds OPEN before the breaker turns HALF_OPEN (>= 0).
        half_open_max_calls: Probes allowed in flight while HALF_OPEN (>= 1).
        success_threshold: Probe successes that close the breaker (>= 1).
        half_open_max_wait_s: Seconds after which an unreported probe frees its slot (> 0);
            None means ``max(60.0, recovery_timeout_s)``.
        is_failure: Decides whether an `Exception` counts as a failure; None counts every one.
        clock: Monotonic seconds; inject a fake in tests.
        name: Names the breaker in errors, events and `status`.
        listeners: Called with each `StateChanged` and `CallRejected` event.
        policy: The trip policy; None is ``ConsecutiveFailures(consecutive_failure_limit)``.
        settings: All of the settings above in one `BreakerSettings`, instead of the keywords.
        initial_state: The state to start in (OPEN starts its recovery timer now).
        call_listeners: Called with each `CallSucceeded`, `CallFailed` and `CallRejected`.

    Raises:
        ValueError: When a limit or duration is out of range.
        TypeError: When *settings* and a non-default setting keyword are both given.
    """

    __slots__ = (
        "__weakref__",
        "_call_listeners",
        "_clock",
        "_closed_token",
        "_cm_permits",
        "_failures",
        "_generation",
        "_half_open_max_calls",
        "_half_open_max_wait_s",
        "_half_window",
        "_is_failure",
        "_limit",
        "_listeners",
        "_lock",
        "_name",
        "_needs_now",
        "_open_until",
        "_plain",
        "_policy",
        "_probe_number",
        "_probes",
        "_quiet_window",
        "_recovery_timeout_s",
        "_rejected",
        "_settings",
        "_slow_limit",
        "_slow_s",
        "_state",
        "_success_threshold",
        "_successes",
        "_tally",
        "_tally_bucket",
        "_timed",
        "_window",
    )

    def __init__(  # the 0.1 keywords stay for compatibility
        self,
        consecutive_failure_limit: int = 5,
        recovery_timeout_s: float = 30.0,
        *,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        half_open_max_wait_s: float | None = None,
        is_failure: Callable[[BaseException], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
        listeners: Iterable[BreakerListener] = (),
        policy: TripPolicy | None = None,
        settings: BreakerSettings | None = None,
        initial_state: CircuitState = CircuitState.CLOSED,
        call_listeners: Iterable[CallListener] = (),
    ) -> None:
        """Build a breaker; see the class docstring for the arguments."""
        who = "circuit breaker" if name is None else f"circuit breaker {name!r}"
        settings = merge_settings(
            settings,
            who,
            consecutive_failure_limit=consecutive_failure_limit,
            recovery_timeout_s=recovery_timeout_s,
            half_open_max_calls=half_open_max_calls,
            success_threshold=success_threshold,
            half_open_max_wait_s=half_open_max_wait_s,
            is_failure=is_failure,
            policy=policy,
        )
        self._settings = settings
        trip = settings.trip_policy
        self._policy: TripPolicy = trip
        self._limit = trip.limit if isinstance(trip, ConsecutiveFailures) else 0
        self._slow_s = trip.slow_call_duration_s
        self._slow_limit = math.inf if self._slow_s is None else self._slow_s
        self._tally: Iterator[int] | None = None
        self._tally_bucket: tuple[int, float] | None = None
        self._recovery_timeout_s = float(settings.recovery_timeout_s)
        self._half_open_max_calls = settings.half_open_max_calls
        self._success_threshold = settings.success_threshold
        self._half_open_max_wait_s = settings.probe_max_wait_s
        self._is_failure = settings.is_failure
        self._clock = clock
        self._name = name
        self._listeners: tuple[BreakerListener, ...] = tuple(listeners)
        self._call_listeners: tuple[CallListener, ...] = tuple(call_listeners)
        self._lock = threading.Lock()
        self._state = _CLOSED
        self._generation = 0
        self._failures = 0
        self._successes = 0
        self._rejected = 0
        self._open_until = 0.0
        self._probe_number = 0
        self._probes: dict[int, float] = {}  # probe number -> admission time
        self._closed_token = Token(0)
        self._window: WindowCounts | None = new_window(trip)
        self._half_window: WindowCounts | None = None
        self._plain = self._quiet_window = self._timed = self._needs_now = False
        self._retune()
        self._cm_permits: ContextVar[tuple[Permit, ...]] = ContextVar(
            f"aegis_breaker_permits_{id(self)}", default=()
        )
        if initial_state is not _CLOSED:
            self._enter(CircuitState(initial_state), clock())

    def _retune(self) -> None:
        """Recompute the fast-path flags from the policy and the call listeners."""
        listening = bool(self._call_listeners)
        # A consecutive-failure breaker nobody times skips the lock on a success that
        # changes nothing; window policies must record every outcome.
        consecutive = isinstance(self._policy, ConsecutiveFailures)
        self._plain = consecutive and not listening
        self._quiet_window = not consecutive and not listening
        self._timed = self._slow_s is not None or listening
        self._needs_now = isinstance(self._policy, TimeWindow) or listening

    # -- the core: every driver goes through _acquire and _report ------------------------------

    def _acquire(self) -> Token:
        """Admit one call and return its token, or raise CircuitOpenError."""
        # CLOSED admits everyone and changes nothing, so it needs no lock. Reading the
        # generation before the state makes the token safe: every transition bumps the
        # generation, so if one slipped in between the two reads the token is stale and
        # the call's outcome is ignored as a late result (never a wrong transition).
        token = self._closed_token
        state = self._state
        if state is _CLOSED or state is _DISABLED:
            return token
        # acquire/release with try/finally costs half of a `with` block on CPython 3.11.
        lock = self._lock
        lock.acquire()
        try:
            state = self._state
            if state is _CLOSED or state is _DISABLED:
                return self._closed_token
            now = self._clock()
            token, rejected_in, retry_after_s, changed = self._admit_locked(now)
            if rejected_in is not None:
                self._rejected += 1
            listeners = self._listeners
            call_listeners = self._call_listeners
        finally:
            lock.release()
        if rejected_in is not None:
            if listeners or call_listeners:
                rejected = CallRejected(self._name, rejected_in, retry_after_s, now)
                events: list[BreakerEvent] = [] if changed is None else [changed]
                _emit(listeners, [*events, rejected])
                _emit(call_listeners, (rejected,))
            raise CircuitOpenError(self._name, retry_after_s, rejected_in)
        if changed is not None:
            _emit(listeners, (changed,))
        return token

    def _admit_locked(
        self, now: float
    ) -> tuple[Token, CircuitState | None, float, StateChanged | None]:
        """Admit or reject while OPEN, FORCED_OPEN or HALF_OPEN (lock held).

        Returns (token, state rejected in or None, retry_after_s, state-change event or None).
        """
        state = self._state
        if state is _FORCED_OPEN:
            return self._closed_token, _FORCED_OPEN, math.inf, None
        if state is _OPEN:
            if now < self._open_until:
                return self._closed_token, _OPEN, self._open_until - now, None
            changed = self._transition(_HALF_OPEN, now)
        else:
            changed = None
        probes = self._probes
        if probes:
            expired = now - self._half_open_max_wait_s
            for stale in [t for t, at in probes.items() if at <= expired]:
                del probes[stale]
        if len(probes) >= self._half_open_max_calls:
            # A slot frees at the latest when the oldest probe expires.
            retry_after_s = min(probes.values()) + self._half_open_max_wait_s - now
            return self._closed_token, _HALF_OPEN, retry_after_s, changed
        self._probe_number += 1
        probes[self._probe_number] = now
        return Token(self._generation, self._probe_number), None, 0.0, changed

    def _report(  # noqa: C901, PLR0912  # the hot path stays one function: a call costs ~50 ns
        self,
        token: Token,
        outcome: int,
        duration_s: float = 0.0,
        error: BaseException | None = None,
        now: float | None = None,
    ) -> None:
        """Record the *outcome* of the call admitted with *token*, which took *duration_s*.

        *now* is the clock reading at the end of the call, when the driver has one.
        """
        if not token.probe:
            if self._plain:
                # A success with no failures counted changes nothing for a consecutive-failure
                # breaker, whatever the generation: skip the lock. A racing failure is then
                # ordered after this success, which is allowed since the two calls overlapped.
                if outcome == _IGNORE or (outcome == _SUCCESS and self._failures == 0):
                    return
            elif self._quiet_window:
                if (
                    outcome == _SUCCESS
                    and duration_s <= self._slow_limit
                    and token.generation == self._generation
                    and not self._failures
                ):
                    # No lock when the success cannot trip the window (see success_tally).
                    # Racing a transition, it may land in the next window, never trip it.
                    tally = self._tally
                    if tally is not None:
                        bucket = self._tally_bucket
                        if bucket is None:
                            next(tally)
                            return
                        if now is None:
                            now = self._clock()
                        if now // bucket[1] == bucket[0]:
                            next(tally)
                            return
                if outcome != _IGNORE:
                    self._record_closed(token, outcome, duration_s, now)
                return
        slow_s = self._slow_s
        slow = slow_s is not None and duration_s > slow_s
        slow_bit = 2 if slow else 0
        if now is None:
            now = self._clock() if self._needs_now else 0.0
        lock = self._lock
        lock.acquire()
        try:
            if not token.probe:
                changed = self._report_closed(token, outcome, slow_bit, now)
            else:
                changed = self._report_probe(token, outcome, slow_bit, now)
            call_listeners = self._call_listeners
        finally:
            lock.release()
        if changed is not None:
            _emit(self._listeners, (changed,))
        if call_listeners and outcome != _IGNORE:
            _emit(call_listeners, (self._call_event(outcome, duration_s, slow, error, now),))

    def _call_event(
        self,
        outcome: int,
        duration_s: float,
        slow: bool,  # noqa: FBT001  # private, positional for speed
        error: BaseException | None,
        now: float,
    ) -> CallEvent:
        if outcome == _SUCCESS:
            return CallSucceeded(self._name, duration_s, slow, now)
        return CallFailed(self._name, duration_s, slow, error, now)

    def _record_closed(
        self, token: Token, outcome: int, duration_s: float, now: float | None
    ) -> None:
        """`_report_closed` for a window breaker nobody listens to calls of: the hot path."""
        slow_s = self._slow_s
        code = outcome | 2 if slow_s is not None and duration_s > slow_s else outcome
        if now is None:
            now = self._clock() if self._needs_now else 0.0
        lock = self._lock
        lock.acquire()
        try:
            if token.generation != self._generation:
                return  # a late result from an earlier state period
            self._failures = self._failures + 1 if outcome else 0
            window = self._window
            if window is None:
                return
            if not window.record(code, now):
                self._tally = window.success_tally()
                self._tally_bucket = window.tally_bucket()
                return
            if self._state is not _CLOSED:
                return
            changed = self._transition(_OPEN, self._clock())
        finally:
            lock.release()
        if changed is not None:
            _emit(self._listeners, (changed,))

    def _report_closed(
        self, token: Token, outcome: int, slow_bit: int, now: float
    ) -> StateChanged | None:
        """Count an outcome admitted while CLOSED or DISABLED (lock held)."""
        if token.generation != self._generation or outcome == _IGNORE:
            return None  # a late result from an earlier state period, or nothing to count
        failed = outcome == _FAILURE
        if failed:
            self._failures += 1
        else:
            self._failures = 0
        window = self._window
        if window is None:
            tripped = failed and self._failures >= self._limit
        else:
            tripped = window.record(failed | slow_bit, now)
        if tripped and self._state is _CLOSED:
            return self._transition(_OPEN, self._clock())
        return None

    def _report_probe(
        self, token: Token, outcome: int, slow_bit: int, now: float
    ) -> StateChanged | None:
        """Settle a half-open probe (lock held)."""
        if (
            token.generation != self._generation  # its half-open period is over
            or self._probes.pop(token.probe, None) is None  # expired
            or outcome == _IGNORE
        ):
            return None  # expired, its half-open period is over, or it says nothing
        failed = outcome == _FAILURE
        window = self._half_window
        if window is None:  # ConsecutiveFailures
            if failed:
                self._failures += 1
                return self._transition(_OPEN, self._clock())
            self._successes += 1
            if self._successes < self._success_threshold:
                return None
            return self._transition(_CLOSED, self._clock())
        if failed:
            self._failures += 1
        else:
            self._failures = 0
        tripped = window.record(failed | slow_bit, now)
        if window.counts(now)[0] < self._half_open_max_calls:
            return None
        return self._transition(_OPEN if tripped else _CLOSED, self._clock())

    def _transition(self, new: CircuitState, now: float) -> StateChanged | None:
        """Move to *new* (lock held); return the event if anyone listens."""
        old = self._state
        self._enter(new, now)
        if self._listeners:
            return StateChanged(self._name, old, new, now)
        return None

    def _enter(self, new: CircuitState, now: float) -> None:
        """Set the state to *new* and start its period (lock held, or during __init__)."""
        self._tally = self._tally_bucket = None
        self._state = new
        self._generation += 1
        self._closed_token = Token(self._generation)
        self._probes.clear()
        self._successes = 0
        if new is _OPEN:
            self._open_until = now + self._recovery_timeout_s
        elif new is _HALF_OPEN:
            self._half_window = half_open_window(self._policy, self._half_open_max_calls)
        elif new is _CLOSED or new is _DISABLED:
            # The window keeps what tripped the breaker while OPEN, for `snapshot`; each
            # closed (or measured-only) period starts from an empty one.
            self._failures = 0
            self._window = new_window(self._policy)

    def _classify(self, exc: BaseException) -> int:
        """Map an exception to an outcome: ignored unless an Exception that is_failure accepts."""
        if not isinstance(exc, Exception) or isinstance(exc, BulkheadFullError):
            return _IGNORE
        is_failure = self._is_failure
        if is_failure is None:
            return _FAILURE
        try:
            return _FAILURE if is_failure(exc) else _IGNORE
        except Exception:
            logger.exception(
                "is_failure of circuit breaker %r raised on %r; counted as a failure",
                self._name,
                exc,
            )
            return _FAILURE

    # -- sans-I/O API --------------------------------------------------------------------------

    def admit(self) -> Permit:
        """Admit one call and return its `Permit`; report the outcome on the permit.

        Raises:
            CircuitOpenError: When the breaker is OPEN or FORCED_OPEN, or HALF_OPEN with every
                probe slot taken.
        """
        token = self._acquire()
        return Permit(self, token, self._clock() if self._timed else None)

    async def aadmit(self) -> Permit:
        """Like `admit`, for async code.

        This breaker admits at once. One whose state lives elsewhere (`RedisCircuitBreaker`)
        does its round trip in the loop's default executor, and if the awaiting task is
        cancelled meanwhile, the permit it was given is handed back (ignored).

        Raises:
            CircuitOpenError: When the breaker rejects the call.
        """
        token = await self._aacquire()
        return Permit(self, token, self._clock() if self._timed else None)

    async def _aacquire(self) -> Token:
        """`_acquire` for async drivers; subclasses that do I/O keep it off the loop."""
        return self._acquire()

    async def _areport(
        self,
        token: Token,
        outcome: int,
        duration_s: float = 0.0,
        error: BaseException | None = None,
        now: float | None = None,
    ) -> None:
        """`_report` for async drivers; subclasses that do I/O keep it off the loop."""
        self._report(token, outcome, duration_s, error, now)

    # -- drivers: `call` and `acall` are the one guarded path every wrapper goes through ------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` through the breaker and return its result.

        Raises:
            CircuitOpenError: When the call is rejected; *fn* is not called.
        """
        token = self._acquire()
        if self._timed:
            clock = self._clock
            started = clock()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                ended = clock()
                self._report(token, self._classify(exc), ended - started, exc, ended)
                raise
            ended = clock()
            self._report(token, _SUCCESS, ended - started, None, ended)
            return result
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._report(token, self._classify(exc), 0.0, exc)
            raise
        self._report(token, _SUCCESS)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` through the breaker and return its result.

        Cancellation is an ignored outcome: it frees a half-open slot and counts nothing.

        Raises:
            CircuitOpenError: When the call is rejected; *fn* is not called.
        """
        token = await self._aacquire()
        clock = self._clock
        timed = self._timed
        started = clock() if timed else 0.0
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            ended = clock() if timed else None
            duration = 0.0 if ended is None else ended - started
            await self._areport(token, self._classify(exc), duration, exc, ended)
            raise
        ended = clock() if timed else None
        await self._areport(token, _SUCCESS, 0.0 if ended is None else ended - started, None, ended)
        return result

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function so every call goes through the breaker.

        The signature is preserved for type checkers. Coroutine functions get an async wrapper.
        Generator and async-generator functions are one call per iteration: admission happens
        when iteration starts (so a rejection is raised by the first ``next``), and an
        exception raised while iterating is the call's outcome; finishing is a success, and a
        generator closed early is ignored. A function that merely *returns* a generator is not
        recognised; decorate the generator function itself.
        """
        if inspect.isasyncgenfunction(fn):
            return self._wrap_async_generator(fn)
        if inspect.isgeneratorfunction(fn):
            return self._wrap_generator(fn)
        if inspect.iscoroutinefunction(fn):
            acall = self.acall

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await acall(fn, *args, **kwargs)

            return async_wrapper

        call = self.call

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return call(fn, *args, **kwargs)

        return wrapper

    def _wrap_generator(
        self, fn: Callable[P, Generator[Any, Any, Any]]
    ) -> Callable[P, Generator[Any, Any, Any]]:
        @functools.wraps(fn)
        def generator_wrapper(*args: P.args, **kwargs: P.kwargs) -> Generator[Any, Any, Any]:
            token = self._acquire()
            clock = self._clock
            started = clock() if self._timed else 0.0
            try:
                result = yield from fn(*args, **kwargs)
            except BaseException as exc:  # GeneratorExit (closed early) is ignored
                duration = clock() - started if self._timed else 0.0
                self._report(token, self._classify(exc), duration, exc)
                raise
            self._report(token, _SUCCESS, clock() - started if self._timed else 0.0)
            return result

        return generator_wrapper

    def _wrap_async_generator(
        self, fn: Callable[P, AsyncGenerator[Any, Any]]
    ) -> Callable[P, AsyncGenerator[Any, Any]]:
        @functools.wraps(fn)
        async def async_generator_wrapper(
            *args: P.args, **kwargs: P.kwargs
        ) -> AsyncGenerator[Any, Any]:
            token = await self._aacquire()
            clock = self._clock
            started = clock() if self._timed else 0.0
            inner = fn(*args, **kwargs)
            try:
                # `async for` would drop asend/athrow; forward them as `yield from` does.
                sent: Any = None
                thrown: BaseException | None = None
                while True:
                    try:
                        if thrown is None:
                            item = await inner.asend(sent)
                        else:
                            item, thrown = await inner.athrow(thrown), None
                    except StopAsyncIteration:
                        break
                    try:
                        sent = yield item
                    except GeneratorExit:
                        await inner.aclose()
                        raise
                    except BaseException as exc:  # noqa: BLE001  # forwarded to the generator
                        thrown, sent = exc, None
            except BaseException as exc:  # GeneratorExit (closed early) is ignored
                duration = clock() - started if self._timed else 0.0
                await self._areport(token, self._classify(exc), duration, exc)
                raise
            await self._areport(token, _SUCCESS, clock() - started if self._timed else 0.0)

        return async_generator_wrapper

    def __enter__(self) -> Permit:
        """Admit the ``with`` body as one call; an exception escaping it is the outcome.

        Returns the `Permit`, so the body may report early (the exit then reports nothing).

        Raises:
            CircuitOpenError: When rejected; the body does not run.
        """
        permit = self.admit()
        self._cm_permits.set((*self._cm_permits.get(), permit))
        return permit

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Report the body's outcome: success, or the exception's classification."""
        stack = self._cm_permits.get()
        self._cm_permits.set(stack[:-1])
        permit = stack[-1]
        if exc is None:
            permit.success()
        else:
            permit.failure(exc)

    async def __aenter__(self) -> Permit:
        """Like ``with breaker:``, for ``async with``; admission goes through `aadmit`."""
        permit = await self.aadmit()
        self._cm_permits.set((*self._cm_permits.get(), permit))
        return permit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Report the body's outcome; cancellation is ignored."""
        self.__exit__(exc_type, exc, tb)

    # -- operator controls ---------------------------------------------------------------------

    def _move(self, new: CircuitState) -> None:
        """Transition to *new* unless already there, and tell the listeners."""
        with self._lock:
            changed = None if self._state is new else self._transition(new, self._clock())
        if changed is not None:
            _emit(self._listeners, (changed,))

    def open_for(self, seconds: float) -> None:
        """Force the breaker OPEN for at least *seconds* (e.g. a provider's Retry-After).

        An already OPEN breaker stays open until the later of its deadline and now + *seconds*.
        A FORCED_OPEN or DISABLED breaker is left as the operator set it.

        Raises:
            ValueError: When *seconds* is negative or NaN.
        """
        if not seconds >= 0:
            raise ValueError(f"open_for of circuit breaker {self._name!r}: seconds must be >= 0")
        with self._lock:
            now = self._clock()
            until = now + seconds
            changed = None
            state = self._state
            if state is _OPEN:
                self._open_until = max(self._open_until, until)
            elif state is not _FORCED_OPEN and state is not _DISABLED:
                changed = self._transition(_OPEN, now)
                self._open_until = until
        if changed is not None:
            _emit(self._listeners, (changed,))

    def force_open(self) -> None:
        """Reject every call (state FORCED_OPEN) until `reset`, `disable` or a half-open move.

        Rejections carry ``retry_after_s == inf``. Emits `StateChanged` unless already forced.
        """
        self._move(_FORCED_OPEN)

    def disable(self) -> None:
        """Admit every call and never trip (state DISABLED); outcomes are still measured.

        Emits `StateChanged` unless already disabled; `reset` turns the breaker back on.
        """
        self._move(_DISABLED)

    def transition_to_half_open(self) -> None:
        """Move to HALF_OPEN now, so the next calls are probes; emits `StateChanged`."""
        self._move(_HALF_OPEN)

    def reset(self) -> None:
        """Close the breaker and clear its counts and window; in-flight calls become late.

        Emits `StateChanged` unless the breaker was already CLOSED.
        """
        with self._lock:
            changed = None
            if self._state is _CLOSED:
                self._failures = 0
                self._tally = self._tally_bucket = None
                self._window = new_window(self._policy)
            else:
                changed = self._transition(_CLOSED, self._clock())
        if changed is not None:
            _emit(self._listeners, (changed,))

    # -- inspection ----------------------------------------------------------------------------

    def _observe(self) -> tuple[CircuitState, int, float]:
        """Apply the lazy OPEN -> HALF_OPEN change and return (state, failures, retry_after_s)."""
        with self._lock:
            changed, retry = self._observe_locked(self._clock())
            state, failures = self._state, self._failures
        if changed is not None:
            _emit(self._listeners, (changed,))
        return state, failures, retry

    def _observe_locked(self, now: float) -> tuple[StateChanged | None, float]:
        changed = None
        retry = 0.0
        if self._state is _OPEN:
            if now >= self._open_until:
                changed = self._transition(_HALF_OPEN, now)
            else:
                retry = self._open_until - now
        elif self._state is _FORCED_OPEN:
            retry = math.inf
        return changed, retry

    def snapshot(self) -> BreakerStatus:
        """A typed, frozen `BreakerStatus`; applies a due OPEN -> HALF_OPEN change first."""
        with self._lock:
            now = self._clock()
            changed, retry = self._observe_locked(now)
            state = self._state
            window = self._half_window if state is _HALF_OPEN else self._window
            calls, failed, slow = (0, 0, 0) if window is None else window.counts(now)
            snapshot_failures, rejected = self._failures, self._rejected
        if changed is not None:
            _emit(self._listeners, (changed,))
        minimum = self._minimum_calls(state)
        rated = window is not None and calls > 0 and calls >= minimum
        return BreakerStatus(
            name=self._name,
            state=state,
            failure_rate=failed / calls if rated else None,
            slow_call_rate=slow / calls if rated else None,
            calls_in_window=calls,
            failed_calls=failed,
            slow_calls=slow,
            consecutive_failures=snapshot_failures,
            rejected_calls=rejected,
            retry_after_s=retry,
        )

    def _minimum_calls(self, state: CircuitState) -> int:
        policy = self._policy
        if isinstance(policy, ConsecutiveFailures):
            return 0
        if state is _HALF_OPEN:
            return self._half_open_max_calls
        if isinstance(policy, TimeWindow):
            return policy.minimum_calls
        return min(policy.minimum_calls, policy.size)

    @property
    def state(self) -> CircuitState:
        """The current state; reading it applies a due OPEN -> HALF_OPEN change."""
        return self._observe()[0]

    @property
    def consecutive_failures(self) -> int:
        """Failures in a row counted so far (kept while OPEN/HALF_OPEN, cleared on closing)."""
        return self._failures

    @property
    def retry_after_s(self) -> float:
        """Seconds until an OPEN breaker turns HALF_OPEN; inf when FORCED_OPEN; else 0.0."""
        return self._observe()[2]

    @property
    def name(self) -> str | None:
        """The breaker's name, if it was given one."""
        return self._name

    @property
    def settings(self) -> BreakerSettings:
        """The breaker's settings, validated when it was built."""
        return self._settings

    @property
    def policy(self) -> TripPolicy:
        """The trip policy in force."""
        return self._policy

    @property
    def generation(self) -> int:
        """A counter bumped on every state change; permits from older generations are late."""
        return self._generation

    def status(self) -> dict[str, object]:
        """A plain-dict snapshot: `snapshot` as a dict, plus the 0.1 keys.

        Keys: name, state (its value), consecutive_failures, retry_after_s,
        consecutive_failure_limit, recovery_timeout_s, failure_rate, slow_call_rate,
        calls_in_window, failed_calls, slow_calls, rejected_calls.
        """
        snapshot = self.snapshot().to_dict()
        snapshot["consecutive_failure_limit"] = self._settings.consecutive_failure_limit
        snapshot["recovery_timeout_s"] = self._recovery_timeout_s
        return snapshot

    def add_listener(self, listener: BreakerListener) -> None:
        """Call *listener* with every later event (outside the lock; exceptions are logged)."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: BreakerListener) -> None:
        """Stop calling *listener*; removing one that is not attached does nothing."""
        with self._lock:
            listeners = list(self._listeners)
            if listener in listeners:
                listeners.remove(listener)
            self._listeners = tuple(listeners)

    def add_call_listener(self, listener: CallListener) -> None:
        """Call *listener* with every later `CallSucceeded`, `CallFailed` and `CallRejected`.

        While any call listener is attached, calls are timed on the breaker's clock.
        """
        with self._lock:
            self._call_listeners = (*self._call_listeners, listener)
            self._retune()

    def remove_call_listener(self, listener: CallListener) -> None:
        """Stop calling *listener*; removing one that is not attached does nothing."""
        with self._lock:
            listeners = list(self._call_listeners)
            if listener in listeners:
                listeners.remove(listener)
            self._call_listeners = tuple(listeners)
            self._retune()

    def __repr__(self) -> str:
        """Show the name, state and failure count without changing anything."""
        return (
            f"CircuitBreaker(name={self._name!r}, state={self._state.value!r}, "
            f"consecutive_failures={self._failures})"
        )
