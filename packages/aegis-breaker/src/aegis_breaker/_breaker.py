"""The circuit breaker: one sans-I/O state machine with thin sync and async drivers."""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, overload

from aegis_breaker._errors import CircuitOpenError
from aegis_breaker._events import (
    BreakerEvent,
    BreakerListener,
    CallRejected,
    CircuitState,
    StateChanged,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Iterable
    from types import TracebackType

__all__ = ["CircuitBreaker", "Permit"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_CLOSED: Final = CircuitState.CLOSED
_OPEN: Final = CircuitState.OPEN
_HALF_OPEN: Final = CircuitState.HALF_OPEN

# Outcomes of one admitted call.
_SUCCESS: Final = 0
_FAILURE: Final = 1
_IGNORE: Final = 2

# A token is the int that ties a report to its admission. A call admitted while CLOSED gets the
# breaker's generation (>= 0); a half-open probe gets -(generation << _PROBE_BITS | probe number)
# (< 0), which is also its key among the probes in flight. Every state change bumps the
# generation, so a report whose token is stale changes nothing: late results never transition.
_PROBE_BITS: Final = 40
_PROBE_MASK: Final = (1 << _PROBE_BITS) - 1

_DEFAULT_HALF_OPEN_MAX_WAIT_S: Final = 60.0


def _emit(listeners: tuple[BreakerListener, ...], events: Iterable[BreakerEvent]) -> None:
    """Deliver *events* to *listeners*; a listener that raises is logged and skipped."""
    for event in events:
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # noqa: PERF203  # each listener is isolated from the others
                logger.exception("breaker listener %r raised on %r; ignored", listener, event)


class Permit:
    """The right to make one call through a breaker, returned by `CircuitBreaker.admit`.

    Report the call's outcome exactly once with `success`, `failure` or `ignore`; later reports
    are ignored. A report from a permit admitted before the breaker last changed state (a late
    result) never causes a transition. A permit is meant for one caller; it is not itself locked.
    """

    __slots__ = ("_breaker", "_reported", "_token")

    def __init__(self, breaker: CircuitBreaker, token: int) -> None:
        """Wrap *token*, as issued by *breaker*; use `CircuitBreaker.admit` instead."""
        self._breaker = breaker
        self._token = token
        self._reported = False

    @property
    def generation(self) -> int:
        """The breaker generation (state period) in which this permit was admitted."""
        token = self._token
        return token if token >= 0 else (-token) >> _PROBE_BITS

    @property
    def is_probe(self) -> bool:
        """Whether this permit is a half-open probe."""
        return self._token < 0

    @property
    def reported(self) -> bool:
        """Whether an outcome has been reported already."""
        return self._reported

    def success(self) -> None:
        """Report that the call succeeded."""
        self._settle(_SUCCESS)

    def failure(self, exc: BaseException | None = None) -> None:
        """Report that the call failed with *exc*.

        With an exception, the breaker's classification applies: a `BaseException` that is not an
        `Exception`, or one that ``is_failure`` declines, is reported as ignored instead.
        """
        self._settle(_FAILURE if exc is None else self._breaker._classify(exc))  # noqa: SLF001  # Permit is the breaker's own helper

    def ignore(self) -> None:
        """Report that the outcome says nothing about the dependency; a probe slot comes back."""
        self._settle(_IGNORE)

    def _settle(self, outcome: int) -> None:
        if self._reported:
            return
        self._reported = True
        self._breaker._report(self._token, outcome)  # noqa: SLF001  # Permit is the breaker's own helper

    def __repr__(self) -> str:
        """Show the generation and whether the permit is a probe or reported."""
        return (
            f"Permit(generation={self.generation}, is_probe={self.is_probe}, "
            f"reported={self._reported})"
        )


class CircuitBreaker:
    """A thread- and asyncio-safe circuit breaker.

    CLOSED: calls pass; ``consecutive_failure_limit`` failures in a row trip it OPEN (exactly once,
    however many callers fail together); a success resets the count. OPEN: calls are rejected
    with a fresh `CircuitOpenError` until ``recovery_timeout_s`` has passed on *clock*, then the
    breaker turns HALF_OPEN lazily, on the next look (no timers, no threads). HALF_OPEN: at most
    ``half_open_max_calls`` probes are in flight; ``success_threshold`` probe successes close it, a
    probe failure reopens it with a fresh timer. A probe that does not report within
    ``half_open_max_wait_s`` frees its slot.

    Every outcome is a success, a failure or ignored. A `BaseException` that is not an `Exception`
    (cancellation, KeyboardInterrupt) and any exception ``is_failure`` declines are ignored: no
    counter changes and a half-open slot is given back.

    The internal lock guards only O(1) updates: it is never held during the user's call, across
    an ``await``, or while listeners run. Use it through `call` / `acall`, as a decorator, as a
    (async) context manager, or through the sans-I/O `admit` API.

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

    Raises:
        ValueError: When a limit or duration is out of range.
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_cm_permits",
        "_failures",
        "_generation",
        "_half_open_max_calls",
        "_half_open_max_wait_s",
        "_is_failure",
        "_limit",
        "_listeners",
        "_lock",
        "_name",
        "_open_until",
        "_probe_number",
        "_probes",
        "_recovery_timeout_s",
        "_state",
        "_success_threshold",
        "_successes",
    )

    def __init__(
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
    ) -> None:
        """Build a CLOSED breaker; see the class docstring for the arguments."""
        who = "circuit breaker" if name is None else f"circuit breaker {name!r}"
        if consecutive_failure_limit < 1:
            raise ValueError(
                f"{who}: consecutive_failure_limit must be >= 1, got {consecutive_failure_limit}"
            )
        if not recovery_timeout_s >= 0:
            raise ValueError(f"{who}: recovery_timeout_s must be >= 0, got {recovery_timeout_s}")
        if half_open_max_calls < 1:
            raise ValueError(f"{who}: half_open_max_calls must be >= 1, got {half_open_max_calls}")
        if success_threshold < 1:
            raise ValueError(f"{who}: success_threshold must be >= 1, got {success_threshold}")
        if half_open_max_wait_s is None:
            half_open_max_wait_s = max(_DEFAULT_HALF_OPEN_MAX_WAIT_S, recovery_timeout_s)
        if not half_open_max_wait_s > 0:
            raise ValueError(f"{who}: half_open_max_wait_s must be > 0, got {half_open_max_wait_s}")
        self._limit = consecutive_failure_limit
        self._recovery_timeout_s = float(recovery_timeout_s)
        self._half_open_max_calls = half_open_max_calls
        self._success_threshold = success_threshold
        self._half_open_max_wait_s = float(half_open_max_wait_s)
        self._is_failure = is_failure
        self._clock = clock
        self._name = name
        self._listeners: tuple[BreakerListener, ...] = tuple(listeners)
        self._lock = threading.Lock()
        self._state = _CLOSED
        self._generation = 0
        self._failures = 0
        self._successes = 0
        self._open_until = 0.0
        self._probe_number = 0
        self._probes: dict[int, float] = {}  # probe token -> admission time
        self._cm_permits: ContextVar[tuple[Permit, ...]] = ContextVar(
            f"aegis_breaker_permits_{id(self)}", default=()
        )

    # -- the core: every driver goes through _acquire and _report ------------------------------

    def _acquire(self) -> int:
        """Admit one call and return its token, or raise CircuitOpenError."""
        # CLOSED admits everyone and changes nothing, so it needs no lock. Reading the
        # generation before the state makes the token safe: every transition bumps the
        # generation, so if one slipped in between the two reads the token is stale and
        # the call's outcome is ignored as a late result (never a wrong transition).
        generation = self._generation
        state = self._state
        if state is _CLOSED:
            return generation
        # acquire/release with try/finally costs half of a `with` block on CPython 3.11.
        lock = self._lock
        lock.acquire()
        try:
            if self._state is _CLOSED:
                return self._generation
            now = self._clock()
            token, rejected_in, retry_after_s, changed = self._admit_locked(now)
            listeners = self._listeners
        finally:
            lock.release()
        if listeners:
            events: list[BreakerEvent] = [] if changed is None else [changed]
            if rejected_in is not None:
                events.append(CallRejected(self._name, rejected_in, retry_after_s, now))
            _emit(listeners, events)
        if rejected_in is not None:
            raise CircuitOpenError(self._name, retry_after_s, rejected_in.value)
        return token

    def _admit_locked(
        self, now: float
    ) -> tuple[int, CircuitState | None, float, StateChanged | None]:
        """Admit or reject while OPEN or HALF_OPEN (lock held).

        Returns (token, state rejected in or None, retry_after_s, state-change event or None).
        """
        if self._state is _OPEN:
            if now < self._open_until:
                return 0, _OPEN, self._open_until - now, None
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
            return 0, _HALF_OPEN, retry_after_s, changed
        self._probe_number += 1
        token = -((self._generation << _PROBE_BITS) | (self._probe_number & _PROBE_MASK))
        probes[token] = now
        return token, None, 0.0, changed

    def _report(self, token: int, outcome: int) -> None:
        """Record the *outcome* of the call admitted with *token*."""
        if token >= 0:
            # A success with no failures counted changes nothing, whatever the generation: skip
            # the lock. A racing failure is then ordered after this success, which is allowed
            # since the two calls overlapped.
            if outcome == _IGNORE or (outcome == _SUCCESS and self._failures == 0):
                return
            lock = self._lock
            lock.acquire()
            try:
                changed = self._report_closed(token, outcome)
            finally:
                lock.release()
        else:
            lock = self._lock
            lock.acquire()
            try:
                changed = self._report_probe(token, outcome)
            finally:
                lock.release()
        if changed is not None:
            _emit(self._listeners, (changed,))

    def _report_closed(self, token: int, outcome: int) -> StateChanged | None:
        """Count a success or failure admitted while CLOSED (lock held)."""
        if token != self._generation:
            return None  # a late result from an earlier state period
        if outcome == _SUCCESS:
            self._failures = 0
            return None
        self._failures += 1
        if self._failures < self._limit:
            return None
        return self._transition(_OPEN, self._clock())

    def _report_probe(self, token: int, outcome: int) -> StateChanged | None:
        """Settle a half-open probe (lock held)."""
        if self._probes.pop(token, None) is None or outcome == _IGNORE:
            return None  # expired, its half-open period is over, or it says nothing
        if outcome == _FAILURE:
            self._failures += 1
            return self._transition(_OPEN, self._clock())
        self._successes += 1
        if self._successes < self._success_threshold:
            return None
        return self._transition(_CLOSED, self._clock())

    def _transition(self, new: CircuitState, now: float) -> StateChanged | None:
        """Move to *new* (lock held); return the event if anyone listens."""
        old = self._state
        self._state = new
        self._generation += 1
        self._probes.clear()
        self._successes = 0
        if new is _OPEN:
            self._open_until = now + self._recovery_timeout_s
        elif new is _CLOSED:
            self._failures = 0
        if self._listeners:
            return StateChanged(self._name, old, new, now)
        return None

    def _classify(self, exc: BaseException) -> int:
        """Map an exception to an outcome: ignored unless an Exception that is_failure accepts."""
        if not isinstance(exc, Exception):
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
            CircuitOpenError: When the breaker is OPEN, or HALF_OPEN with every probe slot taken.
        """
        return Permit(self, self._acquire())

    async def aadmit(self) -> Permit:
        """Like `admit`, for async code.

        This breaker admits at once. One whose state lives elsewhere (`RedisCircuitBreaker`)
        does its round trip in the loop's default executor, and if the awaiting task is
        cancelled meanwhile, the permit it was given is handed back (ignored).

        Raises:
            CircuitOpenError: When the breaker is OPEN, or HALF_OPEN with every probe slot taken.
        """
        return Permit(self, await self._aacquire())

    async def _aacquire(self) -> int:
        """`_acquire` for async drivers; subclasses that do I/O keep it off the loop."""
        return self._acquire()

    async def _areport(self, token: int, outcome: int) -> None:
        """`_report` for async drivers; subclasses that do I/O keep it off the loop."""
        self._report(token, outcome)

    # -- drivers -------------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` through the breaker and return its result.

        Raises:
            CircuitOpenError: When the call is rejected; *fn* is not called.
        """
        token = self._acquire()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._report(token, self._classify(exc))
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
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            await self._areport(token, self._classify(exc))
            raise
        await self._areport(token, _SUCCESS)
        return result

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function so every call goes through the breaker.

        The signature is preserved for type checkers; coroutine functions get an async wrapper.
        """
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.acall(fn, *args, **kwargs)

            return async_wrapper

        acquire = self._acquire
        report = self._report
        classify = self._classify

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            token = acquire()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                report(token, classify(exc))
                raise
            report(token, _SUCCESS)
            return result

        return wrapper

    def __enter__(self) -> Permit:
        """Admit the ``with`` body as one call; an exception escaping it is the outcome.

        Returns the `Permit`, so the body may report early (the exit then reports nothing).

        Raises:
            CircuitOpenError: When rejected; the body does not run.
        """
        permit = Permit(self, self._acquire())
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

    # -- control and inspection ----------------------------------------------------------------

    def open_for(self, seconds: float) -> None:
        """Force the breaker OPEN for at least *seconds* (e.g. a provider's Retry-After).

        An already OPEN breaker stays open until the later of its deadline and now + *seconds*.

        Raises:
            ValueError: When *seconds* is negative or NaN.
        """
        if not seconds >= 0:
            raise ValueError(f"open_for of circuit breaker {self._name!r}: seconds must be >= 0")
        with self._lock:
            now = self._clock()
            until = now + seconds
            changed = None
            if self._state is _OPEN:
                self._open_until = max(self._open_until, until)
            else:
                changed = self._transition(_OPEN, now)
                self._open_until = until
        if changed is not None:
            _emit(self._listeners, (changed,))

    def reset(self) -> None:
        """Close the breaker and clear its failure count; in-flight calls become late results."""
        with self._lock:
            changed = None
            if self._state is _CLOSED:
                self._failures = 0
            else:
                changed = self._transition(_CLOSED, self._clock())
        if changed is not None:
            _emit(self._listeners, (changed,))

    def _observe(self) -> tuple[CircuitState, int, float]:
        """Apply the lazy OPEN -> HALF_OPEN change and return (state, failures, retry_after_s)."""
        with self._lock:
            changed = None
            retry = 0.0
            if self._state is _OPEN:
                now = self._clock()
                if now >= self._open_until:
                    changed = self._transition(_HALF_OPEN, now)
                else:
                    retry = self._open_until - now
            state, failures = self._state, self._failures
        if changed is not None:
            _emit(self._listeners, (changed,))
        return state, failures, retry

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
        """Seconds until an OPEN breaker turns HALF_OPEN; 0.0 in any other state."""
        return self._observe()[2]

    @property
    def name(self) -> str | None:
        """The breaker's name, if it was given one."""
        return self._name

    @property
    def generation(self) -> int:
        """A counter bumped on every state change; permits from older generations are late."""
        return self._generation

    def status(self) -> dict[str, object]:
        """A plain-dict snapshot: name, state (its value), consecutive_failures, retry_after_s."""
        state, failures, retry = self._observe()
        return {
            "name": self._name,
            "state": state.value,
            "consecutive_failures": failures,
            "retry_after_s": retry,
            "consecutive_failure_limit": self._limit,
            "recovery_timeout_s": self._recovery_timeout_s,
        }

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

    def __repr__(self) -> str:
        """Show the name, state and failure count without changing anything."""
        return (
            f"CircuitBreaker(name={self._name!r}, state={self._state.value!r}, "
            f"consecutive_failures={self._failures})"
        )
