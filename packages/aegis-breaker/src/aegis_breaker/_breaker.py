"""The circuit breaker: thin sync and async drivers around one state machine in a store.

Why one module over 400 lines: the drivers (call, acall, the decorator's wrappers, the
context managers) are the hot path and share private fields with the core; splitting them
would add a call per guarded call.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
)
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, overload

from aegis_breaker._errors import BulkheadFullError, CircuitOpenError
from aegis_breaker._events import (
    BreakerListener,
    CallEvent,
    CallFailed,
    CallListener,
    CallRejected,
    CallSucceeded,
    CircuitState,
    StateChanged,
)
from aegis_breaker._machine import (
    FAILURE,
    IGNORE,
    SUCCESS,
    Decision,
    Event,
    Machine,
    MoveTo,
    OpenFor,
    Reset,
    Rules,
    Token,
    minimum_calls,
    window_counts,
)
from aegis_breaker._policy import ConsecutiveFailures, TripPolicy
from aegis_breaker._settings import BreakerSettings
from aegis_breaker._status import BreakerStatus
from aegis_breaker._store import BreakerStore, MemoryStore

if TYPE_CHECKING:
    import asyncio

__all__ = ["CircuitBreaker", "Permit", "Token"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
E = TypeVar("E")

_HALF_OPEN: Final = CircuitState.HALF_OPEN
_FORCED_OPEN: Final = CircuitState.FORCED_OPEN
_DISABLED: Final = CircuitState.DISABLED
_RESET: Final = Reset()

_SUCCESS: Final = SUCCESS
_FAILURE: Final = FAILURE
_IGNORE: Final = IGNORE

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
        "_admit",
        "_call_listeners",
        "_clock",
        "_cm_permits",
        "_io",
        "_is_failure",
        "_listeners",
        "_lock",
        "_name",
        "_policy",
        "_rejected",
        "_rules",
        "_settings",
        "_slow_limit",
        "_slow_s",
        "_store",
        "_store_report",
        "_timed",
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
        self._rules = rules = Rules.of(settings)
        self._policy: TripPolicy = rules.policy
        self._slow_s = rules.policy.slow_call_duration_s
        self._slow_limit = math.inf if self._slow_s is None else self._slow_s
        self._is_failure = settings.is_failure
        self._clock = clock
        self._name = name
        self._listeners: tuple[BreakerListener, ...] = tuple(listeners)
        self._call_listeners: tuple[CallListener, ...] = tuple(call_listeners)
        self._lock = threading.Lock()
        self._rejected = 0
        self._timed = False
        self._retune()
        self._cm_permits: ContextVar[tuple[Permit, ...]] = ContextVar(
            f"aegis_breaker_permits_{id(self)}", default=()
        )
        store = self._new_store(rules, clock, CircuitState(initial_state))
        self._store: BreakerStore = store
        self._admit = store.admit
        self._store_report = store.report
        self._io = store.does_io

    def _new_store(
        self, rules: Rules, clock: Callable[[], float], initial_state: CircuitState
    ) -> BreakerStore:
        """The store this breaker keeps its state in: in memory (`RedisCircuitBreaker`: Redis)."""
        return MemoryStore(rules, clock, initial_state)

    def _retune(self) -> None:
        """Time calls when a slow-call policy or a call listener needs their durations."""
        self._timed = self._slow_s is not None or bool(self._call_listeners)

    # -- the core: every driver goes through _acquire and _report ------------------------------

    def _acquire(self) -> Token:
        """Admit one call and return its token, or raise CircuitOpenError."""
        token = self._admit()
        if token.__class__ is Token:
            return token
        return self._admitted(token)  # type: ignore[arg-type]

    def _admitted(self, decision: Decision) -> Token:
        """Tell the listeners what *decision* did; return its token or raise the rejection."""
        listeners = self._listeners
        changed = self._changed(decision) if listeners else None
        rejected_in = decision.rejected
        if rejected_in is None:
            if changed is not None:
                _emit(listeners, (changed,))
            assert decision.token is not None  # noqa: S101  # admitted
            return decision.token
        with self._lock:
            self._rejected += 1
        retry = decision.retry_after_s
        call_listeners = self._call_listeners
        if listeners or call_listeners:
            at, shared_at = self._times(decision)
            rejected = CallRejected(self._name, rejected_in, retry, at, shared_at)
            _emit(listeners, (rejected,) if changed is None else (changed, rejected))
            _emit(call_listeners, (rejected,))
        raise CircuitOpenError(self._name, retry, rejected_in)

    def _times(self, decision: Decision) -> tuple[float, float | None]:
        """(at, shared_at) of an event: the breaker's clock, and a shared store's clock."""
        if decision.shared:
            return self._clock(), decision.now
        return decision.now, None

    def _tell(self, decision: Decision) -> None:
        """Tell the listeners about the transition *decision* made, if any."""
        changed = self._changed(decision)
        if changed is not None:
            _emit(self._listeners, (changed,))

    def _changed(self, decision: Decision) -> StateChanged | None:
        """The `StateChanged` of *decision*, if it made a transition."""
        old = decision.changed_from
        if old is None:
            return None
        at, shared_at = self._times(decision)
        return StateChanged(self._name, old, decision.state, at, shared_at=shared_at)

    def _report(
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
        slow = duration_s > self._slow_limit
        call_listeners = self._call_listeners
        if outcome == _SUCCESS and not slow and not call_listeners:
            store = self._store
            quiet = store.quiet
            if quiet is not None and token is store.closed_token:
                # Nothing a lock is needed for (see `BreakerStore.quiet`). Racing a transition,
                # a success may be noted in the next period's window: it never trips one.
                bucket = store.quiet_bucket
                if bucket is None:
                    next(quiet)
                    return
                if now is None:
                    now = self._clock()
                if now // store.bucket_width == bucket:
                    next(quiet)
                    return
        decision = self._store_report(token, outcome, slow, now)
        if decision is not None and self._listeners:
            self._tell(decision)
        if call_listeners and outcome != _IGNORE:
            at = self._clock() if now is None else now
            event: CallEvent = (
                CallSucceeded(self._name, duration_s, slow, at)
                if outcome == _SUCCESS
                else CallFailed(self._name, duration_s, slow, error, at)
            )
            _emit(call_listeners, (event,))

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
        """`_acquire` for async drivers: a store that does I/O is used off the event loop."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        if not self._io:
            return self._acquire()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self._acquire)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(self._give_back)
            raise

    def _give_back(self, future: asyncio.Future[Token]) -> None:
        """Hand back the permit of an admission whose awaiting task was cancelled."""
        if not future.cancelled() and future.exception() is None:
            self._report(future.result(), _IGNORE)

    async def _areport(
        self,
        token: Token,
        outcome: int,
        duration_s: float = 0.0,
        error: BaseException | None = None,
        now: float | None = None,
    ) -> None:
        """`_report` for async drivers: a store that does I/O is used off the event loop."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        if not self._io:
            self._report(token, outcome, duration_s, error, now)
            return
        loop = asyncio.get_running_loop()
        report = functools.partial(self._report, token, outcome, duration_s, error, now)
        await asyncio.shield(loop.run_in_executor(None, report))

    # -- drivers: `call` and `acall` are the one guarded path every wrapper goes through ------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` through the breaker and return its result.

        Raises:
            CircuitOpenError: When the call is rejected; *fn* is not called.
        """
        store = self._store
        token = store.closed_token  # the CLOSED fast path of `_acquire`, inlined
        if token is None:
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
            duration = ended - started
            # The quiet path of `_report`, inlined (time windows time every call).
            quiet = store.quiet
            if (
                quiet is not None
                and duration <= self._slow_limit
                and token is store.closed_token
                and not self._call_listeners
            ):
                bucket = store.quiet_bucket
                if bucket is None or ended // store.bucket_width == bucket:
                    next(quiet)
                    return result
            self._report(token, _SUCCESS, duration, None, ended)
            return result
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._report(token, self._classify(exc), 0.0, exc)
            raise
        # Untimed: no call listeners, no slow calls. The quiet path of `_report`, inlined.
        quiet = store.quiet
        if quiet is not None and token is store.closed_token and store.quiet_bucket is None:
            next(quiet)
        else:
            self._report(token, _SUCCESS)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` through the breaker and return its result.

        Cancellation is an ignored outcome: it frees a half-open slot and counts nothing.

        Raises:
            CircuitOpenError: When the call is rejected; *fn* is not called.
        """
        if self._io:
            return await self._acall_io(fn, *args, **kwargs)
        # A store in memory: the paths of `call`, with no awaits of our own around *fn*.
        store = self._store
        token = store.closed_token  # the CLOSED fast path of `_acquire`, inlined
        if token is None:
            token = self._acquire()
        if self._timed:
            clock = self._clock
            started = clock()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                ended = clock()
                self._report(token, self._classify(exc), ended - started, exc, ended)
                raise
            ended = clock()
            self._report(token, _SUCCESS, ended - started, None, ended)
            return result
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._report(token, self._classify(exc), 0.0, exc)
            raise
        quiet = store.quiet  # the quiet path of `_report`, inlined, as in `call`
        if quiet is not None and token is store.closed_token and store.quiet_bucket is None:
            next(quiet)
        else:
            self._report(token, _SUCCESS)
        return result

    async def _acall_io(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """`acall` for a store that does I/O: admission and reports run off the event loop."""
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
        import inspect  # noqa: PLC0415  # inspect loads with the first decorated function

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
        store = self._store
        acquire, report, classify = self._acquire, self._report, self._classify

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            if self._timed:
                return call(fn, *args, **kwargs)
            # The untimed path of `call`, inlined (one call frame fewer per decorated call);
            # the decisions stay in `_acquire` and `_report`.
            token = store.closed_token
            if token is None:
                token = acquire()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                report(token, classify(exc), 0.0, exc)
                raise
            quiet = store.quiet
            if quiet is not None and token is store.closed_token and store.quiet_bucket is None:
                next(quiet)
            else:
                report(token, _SUCCESS)
            return result

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
        """Report the body's outcome (off the loop for a store that does I/O)."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        if not self._io:
            self.__exit__(exc_type, exc, tb)
            return
        stack = self._cm_permits.get()
        self._cm_permits.set(stack[:-1])
        permit = stack[-1]
        report = permit.success if exc is None else functools.partial(permit.failure, exc)
        loop = asyncio.get_running_loop()
        await asyncio.shield(loop.run_in_executor(None, report))

    # -- operator controls ---------------------------------------------------------------------

    def _apply(self, event: Event) -> Decision:
        """Apply *event* to the store and tell the listeners about a transition."""
        decision = self._store.apply(event)
        if self._listeners:
            self._tell(decision)
        return decision

    def open_for(self, seconds: float) -> None:
        """Force the breaker OPEN for at least *seconds* (e.g. a provider's Retry-After).

        An already OPEN breaker stays open until the later of its deadline and now + *seconds*.
        A FORCED_OPEN or DISABLED breaker is left as the operator set it.

        Raises:
            ValueError: When *seconds* is negative or NaN.
        """
        if not seconds >= 0:
            raise ValueError(f"open_for of circuit breaker {self._name!r}: seconds must be >= 0")
        self._apply(OpenFor(float(seconds)))

    def force_open(self) -> None:
        """Reject every call (state FORCED_OPEN) until `reset`, `disable` or a half-open move.

        Rejections carry ``retry_after_s == inf``. Emits `StateChanged` unless already forced.
        """
        self._apply(MoveTo(_FORCED_OPEN))

    def disable(self) -> None:
        """Admit every call and never trip (state DISABLED); outcomes are still measured.

        Emits `StateChanged` unless already disabled; `reset` turns the breaker back on.
        """
        self._apply(MoveTo(_DISABLED))

    def transition_to_half_open(self) -> None:
        """Move to HALF_OPEN now, so the next calls are probes; emits `StateChanged`."""
        self._apply(MoveTo(_HALF_OPEN))

    def reset(self) -> None:
        """Close the breaker and clear its counts and window; in-flight calls become late.

        Emits `StateChanged` unless the breaker was already CLOSED.
        """
        self._apply(_RESET)

    # -- inspection ----------------------------------------------------------------------------

    def _look(self) -> tuple[Machine, Decision]:
        """The state after any due OPEN -> HALF_OPEN change (told to the listeners)."""
        machine, decision = self._store.look()
        if self._listeners:
            self._tell(decision)
        return machine, decision

    def snapshot(self) -> BreakerStatus:
        """A typed, frozen `BreakerStatus`; applies a due OPEN -> HALF_OPEN change first."""
        machine, decision = self._look()
        rules = self._rules
        state = machine.state
        calls, failed, slow = window_counts(rules, machine, decision.now)
        has_window = not isinstance(rules.policy, ConsecutiveFailures)
        rated = has_window and calls > 0 and calls >= minimum_calls(rules, state)
        return BreakerStatus(
            name=self._name,
            state=state,
            failure_rate=failed / calls if rated else None,
            slow_call_rate=slow / calls if rated else None,
            calls_in_window=calls,
            failed_calls=failed,
            slow_calls=slow,
            consecutive_failures=machine.failures,
            rejected_calls=self._rejected,
            retry_after_s=decision.retry_after_s,
        )

    @property
    def state(self) -> CircuitState:
        """The current state; reading it applies a due OPEN -> HALF_OPEN change."""
        return self._look()[0].state

    @property
    def consecutive_failures(self) -> int:
        """Failures in a row counted so far (kept while OPEN/HALF_OPEN, cleared on closing)."""
        if self._io:
            return self._look()[0].failures
        return self._store.machine.failures

    @property
    def retry_after_s(self) -> float:
        """Seconds until an OPEN breaker turns HALF_OPEN; inf when FORCED_OPEN; else 0.0."""
        return self._look()[1].retry_after_s

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
        if self._io:
            return self._look()[0].generation
        return self._store.machine.generation

    def status(self) -> dict[str, object]:
        """A plain-dict snapshot: `snapshot` as a dict, plus the 0.1 keys.

        Keys: name, state (its value), consecutive_failures, retry_after_s,
        consecutive_failure_limit, recovery_timeout_s, failure_rate, slow_call_rate,
        calls_in_window, failed_calls, slow_calls, rejected_calls.
        """
        snapshot = self.snapshot().to_dict()
        snapshot["consecutive_failure_limit"] = self._settings.consecutive_failure_limit
        snapshot["recovery_timeout_s"] = self._rules.recovery_timeout_s
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
        machine = self._store.machine
        return (
            f"CircuitBreaker(name={self._name!r}, state={machine.state.value!r}, "
            f"consecutive_failures={machine.failures})"
        )
