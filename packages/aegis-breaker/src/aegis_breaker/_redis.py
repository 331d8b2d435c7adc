"""A circuit breaker whose state lives in Redis, shared by every process using one name."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib
import logging
import math
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from aegis_breaker._breaker import _IGNORE, _SUCCESS, CircuitBreaker, Token, merge_settings
from aegis_breaker._errors import CircuitOpenError
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
from aegis_breaker._policy import CountWindow, TimeWindow
from aegis_breaker._status import BreakerStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

    from aegis_breaker._policy import TripPolicy
    from aegis_breaker._settings import BreakerSettings

__all__ = ["RedisCircuitBreaker", "RedisClient", "connect_redis"]

logger = logging.getLogger(__name__)


DEFAULT_KEY_PREFIX: Final = "aegis:breaker"
DEFAULT_IDLE_EXPIRY_S: Final = 7 * 24 * 3600.0
"""How long a shared breaker's keys live after their last write, by default: a week."""


_STATES: Final = (
    CircuitState.CLOSED,
    CircuitState.OPEN,
    CircuitState.HALF_OPEN,
    CircuitState.FORCED_OPEN,
    CircuitState.DISABLED,
)
_STATE_CODES: Final = {state: code for code, state in enumerate(_STATES)}
_US: Final = 1_000_000

# Codes in the first element of a script's reply.
_ADMITTED: Final = 0
_REJECTED_OPEN: Final = 1
_REJECTED_HALF_OPEN: Final = 2
_PROBE_ADMITTED: Final = 3
_REJECTED_FORCED: Final = 4
_REJECTED: Final = {
    _REJECTED_OPEN: CircuitState.OPEN,
    _REJECTED_HALF_OPEN: CircuitState.HALF_OPEN,
    _REJECTED_FORCED: CircuitState.FORCED_OPEN,
}

# Every script reads the whole state and the server's clock first, may make one transition
# (`move`), and replies {code, generation, value, old state or -1, state, now_us, failures}.
# State codes: 0 closed, 1 open, 2 half_open. Times are integer microseconds of the Redis server's
# clock (TIME), formatted with %d because Lua's default number formatting keeps 14 digits only.
# The last three ARGV of every script are: the time in microseconds ('' for the server's TIME),
# the calling breaker's origin id, and the idle expiry in milliseconds (0: never). A script that
# wrote sets both keys to expire that long after the write, or after the open timer if later.
# Every transition is published on `{key}:events` as "origin old new now_us", so the listeners
# of other processes hear it.
_PRELUDE: Final = """
local key, probes, window = KEYS[1], KEYS[2], KEYS[3]
local idle_ms = tonumber(ARGV[#ARGV])
local origin = ARGV[#ARGV - 1]
local dirty = false
local now = tonumber(ARGV[#ARGV - 2])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local h = redis.call('HMGET', key, 'state', 'gen', 'failures', 'open_until')
local state = tonumber(h[1]) or 0
local gen = tonumber(h[2]) or 0
local failures = tonumber(h[3]) or 0
local open_until = tonumber(h[4]) or 0
-- A count window's counts are read only by the scripts that use them (load_counts).
local wn, wf, ws, hn, hf, hs = 0, 0, 0, 0, 0, 0
local function load_counts()
  local c = redis.call('HMGET', key, 'w_n', 'w_f', 'w_s', 'h_n', 'h_f', 'h_s')
  wn, wf, ws = tonumber(c[1]) or 0, tonumber(c[2]) or 0, tonumber(c[3]) or 0
  hn, hf, hs = tonumber(c[4]) or 0, tonumber(c[5]) or 0, tonumber(c[6]) or 0
end
local old = -1
local function move(new, until_us)
  old = state
  state = new
  gen = gen + 1
  if new == 0 or new == 4 then
    failures = 0
    wn, wf, ws = 0, 0, 0
    redis.call('DEL', window)
    redis.call('HSET', key, 'w_i', 0, 'w_n', 0, 'w_f', 0, 'w_s', 0)
  elseif new == 2 then
    hn, hf, hs = 0, 0, 0
    redis.call('HSET', key, 'h_n', 0, 'h_f', 0, 'h_s', 0)
  end
  open_until = until_us
  dirty = true
  redis.call('DEL', probes)
  redis.call('HSET', key, 'state', new, 'gen', gen, 'failures', failures, 'successes', 0,
             'open_until', string.format('%d', until_us))
  redis.call('PUBLISH', key .. ':events', string.format('%s %d %d %d', origin, old, new, now))
end
local function reply(code, value)
  if dirty and idle_ms > 0 then
    local ms = idle_ms
    if state == 1 and open_until > now then ms = ms + math.ceil((open_until - now) / 1000) end
    ms = string.format('%d', ms)
    redis.call('PEXPIRE', key, ms)
    redis.call('PEXPIRE', probes, ms)
    redis.call('PEXPIRE', window, ms)
  end
  if state == 2 then return {code, gen, value, old, state, now, failures, hn, hf, hs} end
  return {code, gen, value, old, state, now, failures, wn, wf, ws}
end
"""

# ARGV: half_open_max_calls, half_open_max_wait_us
_ADMIT: Final = (
    _PRELUDE
    + """
if state == 0 or state == 4 then return reply(0, 0) end
if state == 3 then return reply(4, 0) end
if state == 1 then
  if now < open_until then return reply(1, open_until - now) end
  move(2, 0)
end
local max_calls, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', probes, '-inf', string.format('%d', now - max_wait))
if redis.call('ZCARD', probes) >= max_calls then
  local oldest = redis.call('ZRANGE', probes, 0, 0, 'WITHSCORES')
  return reply(2, tonumber(oldest[2]) + max_wait - now)
end
local seq = redis.call('HINCRBY', key, 'probe_seq', 1)
redis.call('ZADD', probes, string.format('%d', now), seq)
dirty = true
return reply(3, seq)
"""
)

# ARGV: is_probe (0/1), generation, probe seq, outcome (0 success, 1 failure, 2 ignore),
# consecutive_failure_limit, recovery_timeout_us, success_threshold, then only for a count
# window: window size, minimum calls, failure rate threshold, slow-call rate threshold,
# slow (0/1), half_open_max_calls. The window is a string of one digit per call (bit 1:
# failed, bit 2: slow) in KEYS[3], with its running counts in the hash (w_*; h_* for the
# half-open probes), as the local CountWindow keeps them.
_REPORT: Final = (
    _PRELUDE
    + """
local is_probe, token_gen, outcome = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
if token_gen ~= gen then return reply(0, 0) end
-- The window arguments are sent only for a count window (16 ARGV in all, else 10).
local size = 0
if #ARGV > 10 then size = tonumber(ARGV[8]) end
if size > 0 then load_counts() end
local code = outcome + 2 * (tonumber(ARGV[12]) or 0)
local function exceeded(n, f, s)
  return f / n >= tonumber(ARGV[10]) or s / n >= tonumber(ARGV[11])
end
if is_probe == 0 and size > 0 then
  if (state ~= 0 and state ~= 4) or outcome == 2 then return reply(0, 0) end
  if outcome == 1 then failures = failures + 1 else failures = 0 end
  local i = tonumber(redis.call('HGET', key, 'w_i')) or 0
  if wn >= size then
    local gone = tonumber(redis.call('GETRANGE', window, i, i))
    wf = wf - gone % 2
    ws = ws - math.floor(gone / 2)
  else
    wn = wn + 1
  end
  redis.call('SETRANGE', window, i, string.format('%d', code))
  wf = wf + code % 2
  ws = ws + math.floor(code / 2)
  redis.call('HSET', key, 'w_i', (i + 1) % size, 'w_n', wn, 'w_f', wf, 'w_s', ws,
             'failures', failures)
  dirty = true
  if state == 0 and wn >= math.min(tonumber(ARGV[9]), size) and exceeded(wn, wf, ws) then
    move(1, now + tonumber(ARGV[6]))
  end
  return reply(0, 0)
end
if is_probe == 0 then
  if (state ~= 0 and state ~= 4) or outcome == 2 then return reply(0, 0) end
  if outcome == 0 then
    if failures ~= 0 then
      failures = 0
      redis.call('HSET', key, 'failures', 0)
      dirty = true
    end
    return reply(0, 0)
  end
  failures = redis.call('HINCRBY', key, 'failures', 1)
  dirty = true
  if state == 0 and failures >= tonumber(ARGV[5]) then move(1, now + tonumber(ARGV[6])) end
  return reply(0, 0)
end
if redis.call('ZREM', probes, ARGV[3]) == 0 or outcome == 2 then return reply(0, 0) end
if size > 0 then
  if outcome == 1 then failures = failures + 1 else failures = 0 end
  hn = hn + 1
  hf = hf + code % 2
  hs = hs + math.floor(code / 2)
  redis.call('HSET', key, 'h_n', hn, 'h_f', hf, 'h_s', hs, 'failures', failures)
  dirty = true
  if hn >= tonumber(ARGV[13]) then
    if exceeded(hn, hf, hs) then move(1, now + tonumber(ARGV[6])) else move(0, 0) end
  end
  return reply(0, 0)
end
if outcome == 1 then
  failures = failures + 1
  move(1, now + tonumber(ARGV[6]))
  return reply(0, 0)
end
dirty = true
if redis.call('HINCRBY', key, 'successes', 1) >= tonumber(ARGV[7]) then move(0, 0) end
return reply(0, 0)
"""
)

# Applies the lazy OPEN -> HALF_OPEN change; value: microseconds until HALF_OPEN (0 unless OPEN,
# -1 when FORCED_OPEN: never by itself).
_OBSERVE: Final = (
    _PRELUDE
    + """
load_counts()
if state == 3 then return reply(0, -1) end
if state == 1 and now >= open_until then move(2, 0) end
if state == 1 then return reply(0, open_until - now) end
return reply(0, 0)
"""
)

# ARGV: the seconds to stay open, in microseconds
_OPEN_FOR: Final = (
    _PRELUDE
    + """
local until_us = now + tonumber(ARGV[1])
if state == 3 or state == 4 then return reply(0, 0) end
if state == 1 then
  if until_us > open_until then
    open_until = until_us
    redis.call('HSET', key, 'open_until', string.format('%d', until_us))
    dirty = true
  end
else
  move(1, until_us)
end
return reply(0, open_until - now)
"""
)

# ARGV: the state to move to (an operator's control): 2 half_open, 3 forced_open, 4 disabled
_MOVE: Final = (
    _PRELUDE
    + """
local target = tonumber(ARGV[1])
if state ~= target then move(target, 0) end
return reply(0, 0)
"""
)

_RESET: Final = (
    _PRELUDE
    + """
if state == 0 then
  failures = 0
  wn, wf, ws = 0, 0, 0
  redis.call('DEL', window)
  redis.call('HSET', key, 'failures', 0, 'w_i', 0, 'w_n', 0, 'w_f', 0, 'w_s', 0)
  dirty = true
else
  move(0, 0)
end
return reply(0, 0)
"""
)


class RedisClient(Protocol):
    """The two commands the breaker needs; a `redis.Redis` (or a cluster client) fits."""

    def evalsha(self, sha: str, numkeys: int, /, *keys_and_args: str) -> object:
        """Run a cached Lua script."""
        ...

    def script_load(self, script: str, /) -> object:
        """Cache a Lua script on the server."""
        ...


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


class _Reply:
    """One script reply, decoded."""

    __slots__ = ("code", "counts", "failures", "generation", "now_s", "old", "state", "value")

    def __init__(self, raw: object) -> None:
        if not isinstance(raw, list) or len(raw) != 10:  # noqa: PLR2004  # the scripts' reply shape
            raise TypeError(f"unexpected reply from a breaker script: {raw!r}")
        code, gen, value, old, state, now_us, failures, calls, failed, slow = (int(x) for x in raw)
        self.counts = (calls, failed, slow)
        self.code = code
        self.generation = gen
        self.value = value
        self.old = None if old < 0 else _STATES[old]
        self.state = _STATES[state]
        self.now_s = now_us / _US
        self.failures = failures

    @property
    def retry_after_s(self) -> float:
        """The reply's value as seconds to wait: infinite when FORCED_OPEN."""
        if self.state is CircuitState.FORCED_OPEN:
            return math.inf
        return self.value / _US

    def changed(self, name: str) -> StateChanged | None:
        if self.old is None:
            return None
        return StateChanged(name, self.old, self.state, self.now_s)


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
    operator controls), for `ConsecutiveFailures` and `CountWindow`. Every
    transition is one Lua script run atomically on the server, so a breaker trips once across
    processes and exactly ``half_open_max_calls`` probes are admitted across all of them. The
    open timer and probe expiry use the Redis server's clock, so hosts need not agree on time.
    Admission is one round trip; reporting is one round trip, skipped for a success while CLOSED
    with no failure counted (as the local breaker skips its lock). Keys:
    ``{key_prefix}:{{name}}`` (a hash) and ``{key_prefix}:{{name}}:probes`` (a sorted set), hash
    tagged so they share a cluster slot. All processes sharing a name should share settings.
    Every write sets both keys to expire ``idle_expiry_s`` later (or that long after the open
    timer ends, if later), so the names of endpoints that are gone do not pile up in Redis; a
    breaker nobody wrote to for that long reads as CLOSED with no failure counted.

    When Redis fails (unreachable, timing out, any error), the breaker falls back to its own
    local state, logs one warning per outage and tries Redis again after
    ``reconnect_interval_s``; a call is never refused because Redis is down. Outcomes of calls
    admitted by Redis but reported during an outage are lost (the shared state does not see them).

    Events: listeners hear the transitions and rejections *this* process makes, and (through
    Redis pub/sub, on channel ``{key_prefix}:{{name}}:events``) the transitions every other
    process makes, delivered from a background thread started once the breaker has a listener;
    `close` stops it. Their ``at`` is the Redis server's clock in epoch seconds (the local clock
    during an outage, or with ``server_clock=False``).

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
        policy: `ConsecutiveFailures` (None) or `CountWindow`, whose window is shared too (every
            outcome is then one round trip); `TimeWindow` is not supported yet.
        settings: The settings in one `BreakerSettings`, instead of the keywords.
        call_listeners: See `CircuitBreaker`; they hear this process's calls.
        server_clock: Time the shared state on the Redis server's clock (the default); False
            uses *clock* instead, which every process must then share (tests, one host).

    Raises:
        ValueError: When a setting is out of range or *name* is empty, or *policy* is a
            `TimeWindow`.
    """

    __slots__ = (
        "_channel",
        "_client",
        "_degraded",
        "_idle_expiry_ms",
        "_keys",
        "_origin",
        "_reconnect_interval_s",
        "_server_clock",
        "_shared_failures",
        "_shared_token",
        "_store_lock",
        "_store_retry_at",
        "_subscription",
        "_wants_subscription",
        "_window_args",
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
        trip = settings.trip_policy
        if isinstance(trip, TimeWindow):
            raise ValueError(  # noqa: TRY004  # a wrong setting value, like any other setting
                f"circuit breaker {name!r}: RedisCircuitBreaker supports ConsecutiveFailures "
                f"and CountWindow, not {trip!r}"
            )
        super().__init__(
            settings=settings,
            clock=clock,
            name=name,
            listeners=listeners,
            call_listeners=call_listeners,
        )
        self._client = client
        base = f"{key_prefix}:{{{name}}}"
        self._keys = (base, f"{base}:probes", f"{base}:window")
        self._reconnect_interval_s = float(reconnect_interval_s)
        # At least 1 ms: 0 is the scripts' "never".
        self._idle_expiry_ms = (
            0 if idle_expiry_s is None else max(1, math.ceil(idle_expiry_s * 1e3))
        )
        self._store_lock = threading.Lock()
        self._store_retry_at = float("-inf")
        self._degraded = False
        self._shared_failures = 0
        self._server_clock = server_clock
        self._shared_token = Token(0)
        self._window_args: tuple[int, int, float, float] | None = (
            (
                trip.size,
                trip.minimum_calls,
                trip.failure_rate_threshold,
                trip.slow_call_rate_threshold,
            )
            if isinstance(trip, CountWindow)
            else None
        )
        self._origin = uuid.uuid4().hex[:12]  # tells our own published transitions apart
        self._channel = f"{base}:events"
        self._subscription: _Subscription | None = None
        self._wants_subscription = bool(self._listeners)

    # -- talking to Redis ----------------------------------------------------------------------

    def _eval(self, script: str, *args: float) -> _Reply | None:
        """Run *script*; None when Redis failed (the caller falls back to local state)."""
        if self._store_retry_at > self._clock():
            return None
        now = "" if self._server_clock else str(_micros(self._clock()))
        keys_and_args = (
            *self._keys,
            *(str(a) for a in args),
            now,
            self._origin,
            str(self._idle_expiry_ms),
        )
        try:
            try:
                raw = self._client.evalsha(_SHA[script], 3, *keys_and_args)
            except Exception as exc:
                if not _is_noscript(exc):
                    raise
                # A restarted server has forgotten its scripts: load once and run again.
                self._client.script_load(script)
                raw = self._client.evalsha(_SHA[script], 3, *keys_and_args)
            reply = _Reply(raw)
        except Exception as exc:  # noqa: BLE001  # any store failure means: use local state
            self._store_failed(exc)
            return None
        if self._degraded:
            self._store_recovered()
        if self._wants_subscription:
            self._subscribe()
        self._shared_failures = reply.failures
        return reply

    # -- hearing other processes' transitions --------------------------------------------------

    def _subscribe(self) -> None:
        """Start hearing the transitions other processes publish (once, when listened to)."""
        with self._store_lock:
            if not self._wants_subscription:
                return
            self._wants_subscription = False
        pubsub_factory = getattr(self._client, "pubsub", None)
        if pubsub_factory is None:
            return  # a client without pub/sub: listeners hear this process only
        try:
            self._subscription = _Subscription(
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
            self._wants_subscription = True

    def _heard(self, data: object) -> None:
        """Tell the listeners about a transition published by another process."""
        text = data.decode() if isinstance(data, bytes) else str(data)
        try:
            origin, old, new, now_us = text.split()
            event = StateChanged(
                self._name, _STATES[int(old)], _STATES[int(new)], int(now_us) / _US, remote=True
            )
        except (ValueError, IndexError):
            logger.warning("circuit breaker %r: unreadable event %r; ignored", self._name, text)
            return
        if origin != self._origin:  # our own transitions were emitted when we made them
            _emit_all(self._listeners, [event])

    def add_listener(self, listener: BreakerListener) -> None:
        """Like `CircuitBreaker.add_listener`; it also hears other processes' transitions."""
        super().add_listener(listener)
        with self._store_lock:
            if self._subscription is None:
                self._wants_subscription = True

    def close(self) -> None:
        """Stop hearing other processes (ends the subscriber thread); the breaker still works."""
        with self._store_lock:
            subscription, self._subscription = self._subscription, None
            self._wants_subscription = False
        if subscription is not None:
            subscription.close()

    def _store_failed(self, exc: Exception) -> None:
        with self._store_lock:
            self._store_retry_at = self._clock() + self._reconnect_interval_s
            first = not self._degraded
            self._degraded = True
        if first:
            logger.warning(
                "circuit breaker %r: Redis failed (%s: %s); using local state until it is back",
                self._name,
                type(exc).__name__,
                exc,
            )

    def _store_recovered(self) -> None:
        with self._store_lock:
            was = self._degraded
            self._degraded = False
        if was:
            logger.warning("circuit breaker %r: Redis is back; using the shared state", self._name)

    @property
    def shared(self) -> bool:
        """Whether the breaker is on the shared Redis state (False during an outage)."""
        return not self._degraded

    def _emit_reply(self, reply: _Reply) -> None:
        listeners = self._listeners
        if not listeners:
            return
        name = cast("str", self._name)
        events: list[BreakerEvent] = []
        changed = reply.changed(name)
        if changed is not None:
            events.append(changed)
        rejected_in = _REJECTED.get(reply.code)
        if rejected_in is not None:
            events.append(CallRejected(name, rejected_in, reply.retry_after_s, reply.now_s))
        _emit_all(listeners, events)

    # -- the core, shared with every inherited driver ------------------------------------------

    def _acquire(self) -> Token:
        reply = self._eval(_ADMIT, self._half_open_max_calls, _micros(self._half_open_max_wait_s))
        if reply is None:
            # Admitted by the local fallback state: the report must go back to it.
            token = super()._acquire()
            return Token(token.generation, token.probe, local=True)
        self._emit_reply(reply)
        code = reply.code
        if code == _ADMITTED:
            token = self._shared_token  # one per shared generation, as the local breaker does
            if token.generation != reply.generation:
                token = self._shared_token = Token(reply.generation)
            return token
        if code == _PROBE_ADMITTED:
            return Token(reply.generation, reply.value)
        state = _REJECTED[code]
        with self._lock:
            self._rejected += 1
        if self._call_listeners:
            event = CallRejected(self._name, state, reply.retry_after_s, reply.now_s)
            _emit_all(self._call_listeners, [event])
        raise CircuitOpenError(self._name, reply.retry_after_s, state)

    def _report(
        self,
        token: Token,
        outcome: int,
        duration_s: float = 0.0,
        error: BaseException | None = None,
        now: float | None = None,
    ) -> None:
        if token.local:
            super()._report(token, outcome, duration_s, error, now)
            return
        if self._call_listeners and outcome != _IGNORE:
            now = self._clock()
            event: CallEvent = (
                CallSucceeded(self._name, duration_s, False, now)  # noqa: FBT003  # not timed for slowness
                if outcome == _SUCCESS
                else CallFailed(self._name, duration_s, False, error, now)  # noqa: FBT003
            )
            _emit_all(self._call_listeners, [event])
        window = self._window_args
        if not token.probe:
            if outcome == _IGNORE:
                return
            # As in the local breaker: under ConsecutiveFailures a success with no failure seen
            # changes nothing; a failure racing it is ordered after it, which is allowed since
            # the two calls overlapped. A window records every outcome.
            if not window and outcome == _SUCCESS and self._shared_failures == 0:
                return
            args = (0, token.generation, 0)
        else:
            args = (1, token.generation, token.probe)
        if window:
            slow_s = self._slow_s
            slow = 1 if slow_s is not None and duration_s > slow_s else 0
            window_args: tuple[float, ...] = (*window, slow, self._half_open_max_calls)
        else:
            window_args = ()
        reply = self._eval(
            _REPORT,
            *args,
            outcome,
            self._limit,
            _micros(self._recovery_timeout_s),
            self._success_threshold,
            *window_args,
        )
        if reply is None:
            logger.debug("circuit breaker %r: outcome lost while Redis is down", self._name)
            return
        self._emit_reply(reply)

    def _observe(self) -> tuple[CircuitState, int, float]:
        reply = self._eval(_OBSERVE)
        if reply is None:
            return super()._observe()
        self._emit_reply(reply)
        return reply.state, reply.failures, reply.retry_after_s

    # -- async drivers: Redis round trips off the event loop -----------------------------------

    async def _aacquire(self) -> Token:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self._acquire)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(self._give_back)
            raise

    def _give_back(self, future: asyncio.Future[Token]) -> None:
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
        loop = asyncio.get_running_loop()
        report = functools.partial(self._report, token, outcome, duration_s, error, now)
        await asyncio.shield(loop.run_in_executor(None, report))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Report the body's outcome off the loop; cancellation is ignored."""
        stack = self._cm_permits.get()
        self._cm_permits.set(stack[:-1])
        permit = stack[-1]
        report = permit.success if exc is None else functools.partial(permit.failure, exc)
        loop = asyncio.get_running_loop()
        await asyncio.shield(loop.run_in_executor(None, report))

    # -- control and inspection ----------------------------------------------------------------

    def open_for(self, seconds: float) -> None:
        """Force the shared breaker OPEN for at least *seconds* (see `CircuitBreaker.open_for`).

        Raises:
            ValueError: When *seconds* is negative or NaN.
        """
        if not seconds >= 0:
            raise ValueError(f"open_for of circuit breaker {self._name!r}: seconds must be >= 0")
        reply = self._eval(_OPEN_FOR, _micros(seconds))
        if reply is None:
            super().open_for(seconds)
            return
        self._emit_reply(reply)

    def reset(self) -> None:
        """Close the shared breaker and clear its failure count, for every process."""
        reply = self._eval(_RESET)
        if reply is None:
            super().reset()
            return
        self._emit_reply(reply)

    @property
    def consecutive_failures(self) -> int:
        """Failures in a row counted so far, across every process."""
        return self._observe()[1]

    @property
    def generation(self) -> int:
        """The shared generation (the local one during an outage)."""
        reply = self._eval(_OBSERVE)
        if reply is None:
            return self._generation
        self._emit_reply(reply)
        return reply.generation

    def snapshot(self) -> BreakerStatus:
        """The shared state as a `BreakerStatus` (rejections counted by this process)."""
        reply = self._eval(_OBSERVE)
        if reply is None:
            return super().snapshot()
        self._emit_reply(reply)
        calls, failed, slow = reply.counts if self._window_args else (0, 0, 0)
        minimum = self._minimum_calls(reply.state)
        rated = self._window_args is not None and calls > 0 and calls >= minimum
        return BreakerStatus(
            name=self._name,
            state=reply.state,
            failure_rate=failed / calls if rated else None,
            slow_call_rate=slow / calls if rated else None,
            calls_in_window=calls,
            failed_calls=failed,
            slow_calls=slow,
            consecutive_failures=reply.failures,
            rejected_calls=self._rejected,
            retry_after_s=reply.retry_after_s,
        )

    def status(self) -> dict[str, object]:
        """Like `CircuitBreaker.status`, plus ``shared``: whether it came from Redis."""
        snapshot = super().status()
        snapshot["shared"] = not self._degraded
        return snapshot

    def _move_shared(self, new: CircuitState) -> None:
        reply = self._eval(_MOVE, _STATE_CODES[new])
        if reply is None:
            super()._move(new)  # Redis is down: the local state obeys the operator
            return
        self._emit_reply(reply)

    def force_open(self) -> None:
        """Reject every call, in every process, until `reset` (see `CircuitBreaker.force_open`).

        The shared keys still expire ``idle_expiry_s`` after the last write, which ends it.
        """
        self._move_shared(CircuitState.FORCED_OPEN)

    def disable(self) -> None:
        """Admit every call in every process and never trip (see `CircuitBreaker.disable`)."""
        self._move_shared(CircuitState.DISABLED)

    def transition_to_half_open(self) -> None:
        """Make the next calls, in any process, half-open probes."""
        self._move_shared(CircuitState.HALF_OPEN)

    def __repr__(self) -> str:
        """Show the name and whether the shared state is in use, without a round trip."""
        return f"RedisCircuitBreaker(name={self._name!r}, shared={not self._degraded})"


_SHA: Final = {
    script: hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
    for script in (_ADMIT, _REPORT, _OBSERVE, _OPEN_FOR, _MOVE, _RESET)
}


def _is_noscript(exc: Exception) -> bool:
    """Whether *exc* is Redis's NOSCRIPT reply (redis-py raises NoScriptError without the code)."""
    return type(exc).__name__ == "NoScriptError" or str(exc).startswith("NOSCRIPT")


def _micros(seconds: float) -> int:
    return round(seconds * _US)


def _emit_all(listeners: Iterable[Callable[[Any], None]], events: list[Any]) -> None:
    for event in events:
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # noqa: PERF203  # each listener is isolated from the others
                logger.exception("breaker listener %r raised on %r; ignored", listener, event)
