"""AgentPool: one bulkhead shared by a keyed set of circuit breakers."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Final, ParamSpec, TypeVar

from aegis_breaker._breaker import CircuitBreaker, merge_settings
from aegis_breaker._bulkhead import Bulkhead
from aegis_breaker._events import BreakerListener, CircuitState
from aegis_breaker._policy import TripPolicy
from aegis_breaker._settings import BreakerSettings
from aegis_breaker._status import PoolStatus

__all__ = ["AgentPool", "BreakerFactory"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_KEY: Final = "default"

_SEVERITY: Final = {
    CircuitState.DISABLED: 0,
    CircuitState.CLOSED: 0,
    CircuitState.HALF_OPEN: 1,
    CircuitState.OPEN: 2,
    CircuitState.FORCED_OPEN: 2,
}


BreakerFactory = Callable[[str, Sequence[BreakerListener]], CircuitBreaker]
"""Makes the breaker for a key, attaching the given listeners (see :class:`AgentPool`)."""


class AgentPool:
    """Bounds concurrent agent calls and breaks the circuit on failing endpoints.

    A `Bulkhead` of ``max_concurrent`` permits is shared by one `CircuitBreaker` per key (say, per
    provider endpoint), each created on first use with the pool's settings and ``name=key``. A
    call first asks its breaker (so an open circuit rejects at once, without waiting for a
    permit), then takes a permit; a full bulkhead raises `BulkheadFullError` and is not counted
    as a breaker failure. The ``"default"`` breaker always exists.

    Args:
        max_concurrent: Calls allowed in flight across all keys.
        consecutive_failure_limit: Passed to each breaker.
        recovery_timeout_s: Passed to each breaker.
        max_wait_s: Seconds to wait for a permit; None waits for ever, 0 never waits.
        is_failure: Passed to each breaker.
        clock: Passed to each breaker.
        half_open_max_calls: Passed to each breaker.
        success_threshold: Passed to each breaker.
        half_open_max_wait_s: Passed to each breaker.
        listeners: Attached to every breaker, present and future.
        breaker_factory: Makes each key's breaker instead (see below).
        policy: Passed to each breaker (the trip policy).
        settings: Every breaker setting in one `BreakerSettings`, instead of the keywords.

    Raises:
        ValueError: When a setting is out of range.
        TypeError: When *settings* and a non-default setting keyword are both given.
    """

    __slots__ = (
        "_breakers",
        "_bulkhead",
        "_default",
        "_listeners",
        "_lock",
        "_make_breaker",
        "_settings",
    )

    def __init__(
        self,
        max_concurrent: int = 4,
        consecutive_failure_limit: int = 5,
        recovery_timeout_s: float = 30.0,
        *,
        max_wait_s: float | None = None,
        is_failure: Callable[[BaseException], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        half_open_max_wait_s: float | None = None,
        listeners: Iterable[BreakerListener] = (),
        breaker_factory: BreakerFactory | None = None,
        policy: TripPolicy | None = None,
        settings: BreakerSettings | None = None,
    ) -> None:
        """Build a pool whose ``"default"`` breaker is CLOSED and whose bulkhead is empty.

        ``breaker_factory(key, listeners)``, when given, makes each key's breaker instead
        of a local :class:`CircuitBreaker` with the settings above (for example a breaker
        whose state is shared between processes); it must attach ``listeners``.
        """
        self._settings = merge_settings(
            settings,
            "agent pool",
            consecutive_failure_limit=consecutive_failure_limit,
            recovery_timeout_s=recovery_timeout_s,
            half_open_max_calls=half_open_max_calls,
            success_threshold=success_threshold,
            half_open_max_wait_s=half_open_max_wait_s,
            is_failure=is_failure,
            policy=policy,
        )
        self._bulkhead = Bulkhead(max_concurrent, max_wait_s=max_wait_s)
        self._lock = threading.Lock()
        self._listeners: list[BreakerListener] = list(listeners)
        self._breakers: dict[str, CircuitBreaker] = {}
        shared = self._settings

        def make(key: str) -> CircuitBreaker:
            return CircuitBreaker(settings=shared, clock=clock, name=key, listeners=self._listeners)

        if breaker_factory is not None:
            listeners_now = self._listeners

            def make(key: str) -> CircuitBreaker:
                return breaker_factory(key, listeners_now)

        self._make_breaker = make
        self._default = self.breaker(DEFAULT_KEY)

    def breaker(self, key: str = DEFAULT_KEY) -> CircuitBreaker:
        """The breaker for *key*, created with the pool's settings on first use."""
        found = self._breakers.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._breakers.get(key)
            if found is None:
                found = self._make_breaker(key)
                # Copy on write, so readers iterate a dict that never changes.
                self._breakers = {**self._breakers, key: found}
            return found

    @property
    def breakers(self) -> Mapping[str, CircuitBreaker]:
        """A read-only snapshot of the breakers by key."""
        return MappingProxyType(self._breakers)

    @property
    def settings(self) -> BreakerSettings:
        """The settings each breaker the pool makes is built with (unused by a factory)."""
        return self._settings

    @property
    def bulkhead(self) -> Bulkhead:
        """The bulkhead every key shares."""
        return self._bulkhead

    def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` through the ``"default"`` breaker and the bulkhead.

        Raises:
            CircuitOpenError: When the breaker rejects the call; *fn* is not called.
            BulkheadFullError: When no permit came free within ``max_wait_s``.
        """
        return self._default.call(self._bulkhead._run, fn, args, kwargs)  # noqa: SLF001  # one package

    def run_on(self, key: str, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Like `run`, through the breaker for *key* (e.g. one provider endpoint)."""
        # The breaker comes first, so an open circuit rejects at once without waiting for a
        # permit; a full bulkhead's `BulkheadFullError` is an ignored outcome for the breaker.
        return self.breaker(key).call(self._bulkhead._run, fn, args, kwargs)  # noqa: SLF001  # one package

    async def _ain_bulkhead(
        self,
        fn: Callable[..., Awaitable[R]],
        args: tuple[object, ...],
        kwargs: dict[str, object],
    ) -> R:
        bulkhead = self._bulkhead
        if not bulkhead.try_acquire():  # a free permit needs no await
            await bulkhead.aacquire()
        try:
            return await fn(*args, **kwargs)
        finally:
            bulkhead.release()

    async def arun(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` through the ``"default"`` breaker and the bulkhead.

        Raises:
            CircuitOpenError: When the breaker rejects the call; *fn* is not called.
            BulkheadFullError: When no permit came free within ``max_wait_s``.
        """
        return await self.arun_on(DEFAULT_KEY, fn, *args, **kwargs)

    async def arun_on(
        self, key: str, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Like `arun`, through the breaker for *key*; cancellation is an ignored outcome.

        A breaker whose state lives elsewhere (`RedisCircuitBreaker`) admits and reports off
        the event loop, so its round trips never block other tasks.
        """
        return await self.breaker(key).acall(self._ain_bulkhead, fn, args, kwargs)

    @property
    def state(self) -> CircuitState:
        """The worst state over all breakers: OPEN, else HALF_OPEN, else CLOSED.

        With only the ``"default"`` breaker, this is simply its state.
        """
        worst = CircuitState.CLOSED
        for breaker in self._breakers.values():
            state = breaker.state
            if _SEVERITY[state] > _SEVERITY[worst]:
                worst = state
        return worst

    @property
    def consecutive_failures(self) -> int:
        """The largest consecutive-failure count over all breakers."""
        return max(b.consecutive_failures for b in self._breakers.values())

    @property
    def active(self) -> int:
        """Calls in flight now (bulkhead permits held)."""
        return self._bulkhead.active

    @property
    def max_concurrent(self) -> int:
        """The limit on calls in flight."""
        return self._bulkhead.max_concurrent

    def status(self) -> dict[str, object]:
        """A plain-dict snapshot.

        Keys: ``state`` (worst state's value), ``consecutive_failures`` (max), ``active``,
        ``max_concurrent`` and ``breakers`` (key -> `CircuitBreaker.status`).
        """
        breakers = {key: b.status() for key, b in self._breakers.items()}
        worst = max(
            (CircuitState(str(s["state"])) for s in breakers.values()), key=_SEVERITY.__getitem__
        )
        failures = max(b.consecutive_failures for b in self._breakers.values())
        return {
            "state": worst.value,
            "consecutive_failures": failures,
            "active": self._bulkhead.active,
            "max_concurrent": self._bulkhead.max_concurrent,
            "breakers": breakers,
        }

    def snapshot(self) -> PoolStatus:
        """A typed snapshot: the worst state, the bulkhead, and each breaker's `BreakerStatus`."""
        breakers = {key: b.snapshot() for key, b in self._breakers.items()}
        worst = max((s.state for s in breakers.values()), key=_SEVERITY.__getitem__)
        return PoolStatus(
            state=worst,
            consecutive_failures=max(s.consecutive_failures for s in breakers.values()),
            active=self._bulkhead.active,
            max_concurrent=self._bulkhead.max_concurrent,
            breakers=breakers,
        )

    def add_listener(self, listener: BreakerListener) -> None:
        """Attach *listener* to every breaker, present and future."""
        with self._lock:
            self._listeners.append(listener)
            for breaker in self._breakers.values():
                breaker.add_listener(listener)

    def remove_listener(self, listener: BreakerListener) -> None:
        """Detach *listener* from every breaker; unknown listeners are ignored."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
            for breaker in self._breakers.values():
                breaker.remove_listener(listener)

    def reset(self) -> None:
        """Reset every breaker (see `CircuitBreaker.reset`)."""
        for breaker in self._breakers.values():
            breaker.reset()

    def __repr__(self) -> str:
        """Show the keys, active calls and the limit."""
        return (
            f"AgentPool(breakers={sorted(self._breakers)!r}, active={self._bulkhead.active}, "
            f"max_concurrent={self._bulkhead.max_concurrent})"
        )
