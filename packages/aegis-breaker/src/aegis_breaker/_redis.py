"""A circuit breaker whose state lives in Redis, shared by every process using one name."""

from __future__ import annotations

import importlib
import logging
import math
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final, cast

from aegis_breaker._breaker import CircuitBreaker, _emit, merge_settings
from aegis_breaker._events import BreakerListener, CallListener, CircuitState, StateChanged
from aegis_breaker._machine import Rules
from aegis_breaker._policy import TripPolicy
from aegis_breaker._redis_store import STATES, RedisClient, RedisStore
from aegis_breaker._settings import BreakerSettings
from aegis_breaker._store import BreakerStore

__all__ = ["RedisCircuitBreaker", "RedisClient", "connect_redis"]

logger = logging.getLogger(__name__)


DEFAULT_KEY_PREFIX: Final = "aegis:breaker"
DEFAULT_IDLE_EXPIRY_S: Final = 7 * 24 * 3600.0
"""How long a shared breaker's keys live after their last write, by default: a week."""

_US: Final = 1_000_000


def connect_redis(url: str = "redis://127.0.0.1:6379/0", *, timeout_s: float = 0.25) -> RedisClient:
    """A `redis.Redis` set up for a breaker: short socket timeouts and no client-side retries.

    redis-py's defaults (5 s timeouts, 10 retries with backoff) would make every call wait for
    seconds while Redis is down; a breaker should fall back to local state at once instead.
    Needs the ``aegis-breaker[redis]`` extra.

    Raises:
        ModuleNotFoundError: When redis-py is not installed.
    """
    redis = importlib.import_module("redis")
    retry = importlib.import_module("redis.retry").Retry
    backoff = importlib.import_module("redis.backoff").NoBackoff
    client = redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=retry(backoff(), 0),
    )
    return cast("RedisClient", client)


class _Subscription:
    """One pub/sub connection and its thread, delivering a breaker's channel to it."""

    __slots__ = ("_pubsub", "_thread")

    def __init__(
        self,
        pubsub_factory: Callable[..., Any],
        channel: str,
        breaker: weakref.ReferenceType[RedisCircuitBreaker],
        retry_s: float,
    ) -> None:
        def on_message(message: dict[str, object]) -> None:
            target = breaker()  # a weak reference: the thread keeps no breaker alive
            if target is not None:
                target._heard(message.get("data"))  # noqa: SLF001  # the breaker's own helper

        def on_error(exc: BaseException, pubsub: object, thread: object) -> None:
            del pubsub, thread
            logger.debug("breaker subscription to %s failed (%r); reconnecting", channel, exc)
            time.sleep(max(retry_s, 0.05))  # this thread only; redis-py resubscribes on reconnect

        self._pubsub = pubsub_factory()
        self._pubsub.subscribe(**{channel: on_message})
        # Wait for the server's confirmation, so every transition after this returns is heard.
        self._pubsub.get_message(timeout=1.0)
        self._pubsub.ignore_subscribe_messages = True
        self._thread = self._pubsub.run_in_thread(
            sleep_time=0.05, daemon=True, exception_handler=on_error
        )

    def close(self) -> None:
        self._thread.stop()
        self._thread.join(timeout=5.0)
        self._pubsub.close()


class RedisCircuitBreaker(CircuitBreaker):
    """A `CircuitBreaker` whose state is shared, through Redis, by every process using *name*.

    Same semantics and calling surface as `CircuitBreaker` (``call``, ``acall``, decorator,
    ``with``, ``admit()`` -> `Permit`, ``state``, ``status()``, ``open_for``, ``reset`` and the
    operator controls), for every trip policy. The decisions are made by the same transition
    function as the local breaker's; the state (the window of a window policy included) lives
    in one Redis hash, ``{key_prefix}:{{name}}``, changed only by an optimistic
    compare-and-set (one small Lua script), so a breaker trips once across processes and
    exactly ``half_open_max_calls`` probes are admitted across all of them. The open timer,
    probe expiry and time windows use the Redis server's clock, so hosts need not agree on
    time. Admission is one round trip while CLOSED; reporting is one round trip, skipped for
    a success while CLOSED with no failure counted under `ConsecutiveFailures` (as the local
    breaker skips its lock); a window policy reports every outcome. All processes sharing a
    name should share settings. Every write sets the hash to expire ``idle_expiry_s`` later
    (or that long after the open timer ends, if later), so the names of endpoints that are gone
    do not pile up in Redis; a breaker nobody wrote to for that long reads as CLOSED with no
    failure counted.

    When Redis fails (unreachable, timing out, any error), the breaker falls back to its own
    local state, logs one warning per outage and tries Redis again after
    ``reconnect_interval_s``; a call is never refused because Redis is down. Outcomes of calls
    admitted by Redis but reported during an outage are lost (the shared state does not see them).

    Events: listeners hear the transitions and rejections *this* process makes, and (through
    Redis pub/sub, on channel ``{key_prefix}:{{name}}:events``) the transitions every other
    process makes, delivered from a background thread started once the breaker has a listener;
    `close` stops it. Their ``at`` is this process's *clock* when it made or heard the change,
    as for a local breaker; ``shared_at`` is the Redis server's clock of the change, in epoch
    seconds (*clock* with ``server_clock=False``; None for a change made during an outage).

    Async: ``acall``, ``async with``, `aadmit` and an `AgentPool`'s ``arun``/``arun_on`` run
    the Redis round trips in the event loop's default executor, so the loop never waits on the
    network; ``admit`` and the permit's reports are blocking calls.

    Args:
        client: A Redis client, e.g. from `connect_redis`; use short timeouts, no retries.
        name: The shared breaker's name (its key namespace).
        consecutive_failure_limit: See `CircuitBreaker`.
        recovery_timeout_s: See `CircuitBreaker`.
        half_open_max_calls: See `CircuitBreaker`.
        success_threshold: See `CircuitBreaker`.
        half_open_max_wait_s: See `CircuitBreaker`; a crashed process's probe expires after it.
        is_failure: See `CircuitBreaker`.
        clock: Monotonic seconds for the local fallback and the reconnect delay.
        listeners: See `CircuitBreaker`.
        key_prefix: Prefix of the Redis keys.
        reconnect_interval_s: Seconds to stay on local state after Redis failed (>= 0).
        idle_expiry_s: Seconds after the last write at which the keys expire (> 0), or
            ``None`` to keep them forever.
        policy: See `CircuitBreaker`; a window is shared too (every outcome is then a round
            trip).
        settings: The settings in one `BreakerSettings`, instead of the keywords.
        call_listeners: See `CircuitBreaker`; they hear this process's calls.
        server_clock: Time the shared state on the Redis server's clock (the default); False
            uses *clock* instead, which every process must then share (tests, one host).

    Raises:
        ValueError: When a setting is out of range or *name* is empty.
    """

    __slots__ = (
        "_channel",
        "_client",
        "_idle_expiry_ms",
        "_key",
        "_origin",
        "_reconnect_interval_s",
        "_redis_store",
        "_server_clock",
        "_subscription",
        "_subscription_lock",
        "_wants_subscription",
    )

    def __init__(
        self,
        client: RedisClient,
        name: str,
        consecutive_failure_limit: int = 5,
        recovery_timeout_s: float = 30.0,
        *,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        half_open_max_wait_s: float | None = None,
        is_failure: Callable[[BaseException], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        listeners: Iterable[BreakerListener] = (),
        key_prefix: str = DEFAULT_KEY_PREFIX,
        reconnect_interval_s: float = 1.0,
        idle_expiry_s: float | None = DEFAULT_IDLE_EXPIRY_S,
        policy: TripPolicy | None = None,
        settings: BreakerSettings | None = None,
        call_listeners: Iterable[CallListener] = (),
        server_clock: bool = True,
    ) -> None:
        """Build the breaker; nothing is sent to Redis until the first call."""
        if not name:
            raise ValueError("a Redis circuit breaker needs a non-empty name")
        if not reconnect_interval_s >= 0:
            raise ValueError(
                f"circuit breaker {name!r}: reconnect_interval_s must be >= 0, "
                f"got {reconnect_interval_s}"
            )
        if idle_expiry_s is not None and not idle_expiry_s > 0:
            raise ValueError(
                f"circuit breaker {name!r}: idle_expiry_s must be > 0 or None, got {idle_expiry_s}"
            )
        settings = merge_settings(
            settings,
            f"circuit breaker {name!r}",
            consecutive_failure_limit=consecutive_failure_limit,
            recovery_timeout_s=recovery_timeout_s,
            half_open_max_calls=half_open_max_calls,
            success_threshold=success_threshold,
            half_open_max_wait_s=half_open_max_wait_s,
            is_failure=is_failure,
            policy=policy,
        )
        self._client = client
        base = f"{key_prefix}:{{{name}}}"
        # A key of its own (0.2.0 kept fields in `base`): versions never mix their layouts.
        self._key = f"{base}:state"
        self._channel = f"{base}:events"
        self._reconnect_interval_s = float(reconnect_interval_s)
        # At least 1 ms: 0 is the script's "never".
        self._idle_expiry_ms = (
            0 if idle_expiry_s is None else max(1, math.ceil(idle_expiry_s * 1e3))
        )
        self._server_clock = server_clock
        self._origin = uuid.uuid4().hex[:12]  # tells our own published transitions apart
        self._subscription: _Subscription | None = None
        self._subscription_lock = threading.Lock()
        self._wants_subscription = False
        super().__init__(
            settings=settings,
            clock=clock,
            name=name,
            listeners=listeners,
            call_listeners=call_listeners,
        )
        if self._listeners:
            self._want_subscription()

    def _new_store(
        self, rules: Rules, clock: Callable[[], float], initial_state: CircuitState
    ) -> BreakerStore:
        del initial_state  # a shared breaker starts as the shared state is
        store = RedisStore(
            self._client,
            rules,
            clock,
            name=cast("str", self._name),
            key=self._key,
            channel=self._channel,
            origin=self._origin,
            reconnect_interval_s=self._reconnect_interval_s,
            idle_expiry_ms=self._idle_expiry_ms,
            server_clock=self._server_clock,
        )
        self._redis_store = store
        return store

    # -- hearing other processes' transitions --------------------------------------------------

    def _want_subscription(self) -> None:
        """Subscribe after the next successful round trip (Redis is known to answer then)."""
        with self._subscription_lock:
            if self._subscription is None:
                self._wants_subscription = True
                self._redis_store.on_contact = self._subscribe

    def _subscribe(self) -> None:
        """Start hearing the transitions other processes publish (once, when listened to)."""
        with self._subscription_lock:
            if not self._wants_subscription:
                return
            self._wants_subscription = False
            self._redis_store.on_contact = None
        pubsub_factory = getattr(self._client, "pubsub", None)
        if pubsub_factory is None:
            return  # a client without pub/sub: listeners hear this process only
        try:
            subscription = _Subscription(
                pubsub_factory, self._channel, weakref.ref(self), self._reconnect_interval_s
            )
        except Exception as exc:  # noqa: BLE001  # retried after the next successful round trip
            logger.warning(
                "circuit breaker %r: cannot subscribe to %s (%s: %s); retrying later",
                self._name,
                self._channel,
                type(exc).__name__,
                exc,
            )
            self._want_subscription()
            return
        with self._subscription_lock:
            self._subscription = subscription

    def _heard(self, data: object) -> None:
        """Tell the listeners about a transition published by another process."""
        text = data.decode() if isinstance(data, bytes) else str(data)
        try:
            origin, old, new, now_us = text.split()
            event = StateChanged(
                self._name,
                STATES[int(old)],
                STATES[int(new)],
                self._clock(),
                remote=True,
                shared_at=int(now_us) / _US,
            )
        except (ValueError, IndexError):
            logger.warning("circuit breaker %r: unreadable event %r; ignored", self._name, text)
            return
        if origin != self._origin:  # our own transitions were emitted when we made them
            _emit(self._listeners, [event])

    def add_listener(self, listener: BreakerListener) -> None:
        """Like `CircuitBreaker.add_listener`; it also hears other processes' transitions."""
        super().add_listener(listener)
        self._want_subscription()

    def close(self) -> None:
        """Stop hearing other processes (ends the subscriber thread); the breaker still works."""
        with self._subscription_lock:
            subscription, self._subscription = self._subscription, None
            self._wants_subscription = False
            self._redis_store.on_contact = None
        if subscription is not None:
            subscription.close()

    # -- inspection ----------------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """Whether the breaker is on the shared Redis state (False during an outage)."""
        return self._redis_store.shared

    def status(self) -> dict[str, object]:
        """Like `CircuitBreaker.status`, plus ``shared``: whether it came from Redis."""
        snapshot = super().status()
        snapshot["shared"] = self._redis_store.shared
        return snapshot

    def __repr__(self) -> str:
        """Show the name and whether the shared state is in use, without a round trip."""
        return f"RedisCircuitBreaker(name={self._name!r}, shared={self._redis_store.shared})"
