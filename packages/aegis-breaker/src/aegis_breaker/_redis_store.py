"""The Redis store: a breaker's `Machine`, encoded, in one Redis hash, changed by compare-and-set.

Every decision is made in Python by the same `step` the in-memory store uses. Redis only keeps
the encoded `Machine` with a version, through one small generic Lua script (`_CAS`): read the
state (or just learn it has not changed since the version the caller holds), or write a new
state if the version is still the one the caller decided on. A writer that lost the race gets
the current state in the same reply, decides again and retries, so the shared state changes
exactly as one process applying `step` in some order would change it. Time is the Redis
server's clock (``TIME``, read by the script), so hosts need not agree on time; a write between
two reads is timed by the server's last reading plus the local time elapsed since.

Round trips: admitting while CLOSED is one read; a report that changes nothing (a success with
no failure counted under `ConsecutiveFailures`) is none; any other report is one write (more
only when another process wrote meanwhile). A window policy's every outcome is a write.

When Redis fails, the store falls back to an in-memory store (`MemoryStore`) until Redis answers
again, trying at most once per ``reconnect_interval_s``; tokens it issues are marked ``local``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Callable, Iterator
from typing import Final, Protocol

from aegis_breaker._events import CircuitState
from aegis_breaker._machine import (
    IGNORE,
    SUCCESS,
    Admit,
    Decision,
    Event,
    Machine,
    Observe,
    Report,
    Rules,
    Token,
    initial_machine,
    step,
)
from aegis_breaker._policy import ConsecutiveFailures
from aegis_breaker._redis_codec import CODES, STATES, decode, encode
from aegis_breaker._store import MemoryStore

__all__ = ["STATES", "RedisClient", "RedisStore"]

logger = logging.getLogger(__name__)

_US: Final = 1_000_000
_MAX_ATTEMPTS: Final = 64
_ADMIT: Final = Admit()
_CLOSED: Final = CircuitState.CLOSED
_DISABLED: Final = CircuitState.DISABLED
_OBSERVE: Final = Observe()

# KEYS[1]: the breaker's hash (fields v: version, s: encoded state).
# ARGV[1]: the time in microseconds ('' to use the server's TIME); ARGV[2]: the version the
# caller holds. To write, also ARGV[3]: the state to write if the version is still that one,
# ARGV[4]: expiry in ms after the write (0: none), and, to announce a transition, ARGV[5]: the
# message to publish on channel ARGV[6]. (Reads send two arguments: fewer bytes to pack.)
# Reply: {1 if written else 0, the version now, the state if the caller's version is not the
# current one (else ''), the time in microseconds}. A new hash starts at the current time as
# its version, so a hash that expired and came back never repeats an old version.
_CAS: Final = """
local now = ARGV[1]
if now == '' then
  local t = redis.call('TIME')
  now = string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]))
end
local cur = redis.call('HMGET', KEYS[1], 'v', 's')
local v = cur[1] or '0'
if v ~= ARGV[2] then return {0, v, cur[2] or '', now} end
if #ARGV < 4 then return {0, v, '', now} end
if v == '0' then v = now else v = string.format('%d', tonumber(v) + 1) end
redis.call('HSET', KEYS[1], 'v', v, 's', ARGV[3])
if ARGV[4] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
if #ARGV >= 6 then redis.call('PUBLISH', ARGV[6], ARGV[5]) end
return {1, v, '', now}
"""
_CAS_SHA: Final = hashlib.sha1(_CAS.encode(), usedforsecurity=False).hexdigest()


class RedisClient(Protocol):
    """The two commands the breaker needs; a `redis.Redis` (or a cluster client) fits."""

    def evalsha(self, sha: str, numkeys: int, /, *keys_and_args: str) -> object:
        """Run a cached Lua script."""
        ...

    def script_load(self, script: str, /) -> object:
        """Cache a Lua script on the server."""
        ...


# -- the store -----------------------------------------------------------------------------------


class _Conflict(Exception):  # noqa: N818  # internal control flow, not an error
    pass


class RedisStore:
    """A `BreakerStore` on one Redis hash, with a local fallback (see the module docstring)."""

    __slots__ = (
        "_cache",
        "_cache_lock",
        "_channel",
        "_client",
        "_clock",
        "_consecutive",
        "_degraded",
        "_fallback",
        "_idle_expiry_ms",
        "_key",
        "_name",
        "_offset",
        "_reconnect_interval_s",
        "_retry_at",
        "_rules",
        "_server_clock",
        "_token",
        "on_contact",
        "origin",
    )

    does_io = True
    # No lock-free hints: every admission asks Redis (see `BreakerStore`).
    closed_token: Token | None = None
    quiet: Iterator[int] | None = None
    quiet_bucket: int | None = None
    bucket_width = 0.0

    def __init__(  # each is one setting of the shared state
        self,
        client: RedisClient,
        rules: Rules,
        clock: Callable[[], float],
        *,
        name: str,
        key: str,
        channel: str,
        origin: str,
        reconnect_interval_s: float,
        idle_expiry_ms: int,
        server_clock: bool,
    ) -> None:
        """Keep the state of breaker *name* in hash *key*; nothing is sent until first used."""
        self._client = client
        self._rules = rules
        self._clock = clock
        self._name = name
        self._key = key
        self._channel = channel
        self.origin = origin
        self._reconnect_interval_s = reconnect_interval_s
        self._idle_expiry_ms = idle_expiry_ms
        self._server_clock = server_clock
        self._consecutive = isinstance(rules.policy, ConsecutiveFailures)
        self._fallback = MemoryStore(rules, clock, local=True)
        self._cache_lock = threading.Lock()
        # (version, machine): the newest state this process has seen.
        self._cache: tuple[int, Machine] = (0, initial_machine(rules))
        self._offset = 0.0  # the server's clock minus ours, at the last reply
        self._token = Token(0)  # CLOSED admissions of one shared generation share a token
        self._retry_at = -math.inf
        self._degraded = False
        self.on_contact: Callable[[], None] | None = None
        """Called after each successful round trip while set (the breaker subscribes then)."""

    @property
    def shared(self) -> bool:
        """Whether the shared state is in use (False during an outage)."""
        return not self._degraded

    @property
    def machine(self) -> Machine:
        """The newest shared `Machine` seen (the fallback's during an outage), without I/O."""
        return self._fallback.machine if self._degraded else self._cache[1]

    # -- round trips -----------------------------------------------------------------------------

    def _arguments(
        self, now: str, version: str, new: Machine | None, expiry_ms: int, message: str
    ) -> tuple[str, ...]:
        """The key and ARGV of one run of `_CAS`: a read sends two arguments."""
        if new is None:
            return (self._key, now, version)
        if message:
            return (self._key, now, version, encode(new), str(expiry_ms), message, self._channel)
        return (self._key, now, version, encode(new), str(expiry_ms))

    def _send(
        self, version: str, new: Machine | None, expiry_ms: int, message: str
    ) -> tuple[bool, int, Machine, float]:
        """One run of `_CAS`: (written, version, the current Machine, the time in seconds).

        *new* is written if *version* is still the current one; None only reads.
        """
        local_now = self._clock()
        now = "" if self._server_clock else str(round(local_now * _US))
        args = self._arguments(now, version, new, expiry_ms, message)
        client = self._client
        try:
            raw = client.evalsha(_CAS_SHA, 1, *args)
        except Exception as exc:
            if type(exc).__name__ != "NoScriptError" and not str(exc).startswith("NOSCRIPT"):
                raise
            # A restarted server has forgotten its scripts: load once and run again.
            client.script_load(_CAS)
            raw = client.evalsha(_CAS_SHA, 1, *args)
        if not isinstance(raw, list) or len(raw) != 4:  # noqa: PLR2004  # the script's reply
            raise TypeError(f"unexpected reply from the breaker script: {raw!r}")
        written, current, text, now_us = raw
        version_now = int(current)
        if self._server_clock:
            seconds = int(now_us) / _US
            # Against our clock after the reply: an estimate never ahead of the server's.
            self._offset = seconds - self._clock()
        else:
            seconds = local_now
        cached_version, cached = self._cache
        if not text and version_now == cached_version:
            return False, version_now, cached, seconds  # nothing new: no lock needed
        with self._cache_lock:
            cached_version, cached = self._cache
            if text:
                machine = decode(text.decode() if isinstance(text, bytes) else str(text))
            elif version_now == cached_version:
                machine = cached
            elif new is not None and int(written):
                machine = new
            else:  # a hash that does not exist (yet, or any more): a fresh breaker
                machine = initial_machine(self._rules)
            if version_now >= cached_version or version_now == 0:
                self._cache = (version_now, machine)
        return bool(int(written)), version_now, machine, seconds

    def _decide(self, event: Event, *, read_first: bool) -> tuple[Machine, Decision] | Token:
        """Apply *event* by compare-and-set; raises on a Redis failure.

        Admitting while CLOSED or DISABLED returns the generation's `Token` (what `step`
        decides then, without building a `Decision`: the fast path of every admission).
        """
        if read_first:
            _, version, m, now = self._send(str(self._cache[0]), None, 0, "")
            if event is _ADMIT and (m.state is _CLOSED or m.state is _DISABLED):
                token = self._token
                if token.generation != m.generation:
                    token = self._token = Token(m.generation)
                return token
        else:
            version, m = self._cache
            # The server's clock now: its last reading plus the local time elapsed since.
            now = self._clock() + self._offset if self._server_clock else self._clock()
        for _ in range(_MAX_ATTEMPTS):
            new, decision = step(self._rules, m, event, now)
            if new is m:
                return m, _shared_decision(decision)
            written, version, m, now = self._send(
                str(version), new, self._expiry_ms(new, now), self._message(decision)
            )
            if written:
                return new, _shared_decision(decision)
        raise _Conflict(f"breaker {self._name!r}: gave up after {_MAX_ATTEMPTS} conflicting writes")

    def _expiry_ms(self, m: Machine, now: float) -> int:
        ms = self._idle_expiry_ms
        if ms and m.state is CircuitState.OPEN and m.open_until > now:
            ms += math.ceil((m.open_until - now) * 1e3)
        return ms

    def _message(self, decision: Decision) -> str:
        old = decision.changed_from
        if old is None:
            return ""
        return f"{self.origin} {CODES[old]} {CODES[decision.state]} {round(decision.now * _US)}"

    # -- outages ---------------------------------------------------------------------------------

    def _failed(self, exc: Exception) -> None:
        with self._cache_lock:
            self._retry_at = self._clock() + self._reconnect_interval_s
            first, self._degraded = not self._degraded, True
        if first:  # one warning per outage
            logger.warning(
                "circuit breaker %r: Redis failed (%s: %s); using local state until it is back",
                self._name,
                type(exc).__name__,
                exc,
            )

    def _recovered(self) -> None:
        if not self._degraded:
            return
        with self._cache_lock:
            was, self._degraded = self._degraded, False
        if was:
            logger.warning("circuit breaker %r: Redis is back; using the shared state", self._name)

    def _shared(self, event: Event, *, read_first: bool) -> tuple[Machine, Decision] | Token | None:
        """`_decide`, or None when Redis failed (the caller then uses the fallback)."""
        degraded = self._degraded
        if degraded and self._clock() < self._retry_at:
            return None
        try:
            result = self._decide(event, read_first=read_first)
        except Exception as exc:  # noqa: BLE001  # any store failure means: use local state
            self._failed(exc)
            return None
        if degraded:
            self._recovered()
        on_contact = self.on_contact
        if on_contact is not None:
            on_contact()
        return result

    # -- BreakerStore ----------------------------------------------------------------------------

    def admit(self) -> Token | Decision:
        """One read while CLOSED; a write too when the admission changes the state."""
        result = self._shared(_ADMIT, read_first=True)
        if result is None:
            return self._fallback.admit()
        if isinstance(result, Token):
            return result
        return result[1]

    def report(self, token: Token, outcome: int, slow: bool, now: float | None) -> Decision | None:  # noqa: FBT001, ARG002  # the server's clock times it
        """One write, or none when the outcome cannot change the shared state."""
        if token.local:
            return self._fallback.report(token, outcome, slow, None)
        if not token.probe:
            if outcome == IGNORE:
                return None
            if outcome == SUCCESS and self._consecutive and not self._cache[1].failures:
                # As the local store: nothing to count. A failure racing it (here or in another
                # process) is ordered after it, which is allowed since the two calls overlapped.
                return None
        # The cache is at least as new as the admission that issued the token, unless a
        # racing thread replaced it with an older reply; then read first.
        read_first = token.generation > self._cache[1].generation
        result = self._shared(Report(token, outcome, slow), read_first=read_first)
        if result is None or isinstance(result, Token):
            logger.debug("circuit breaker %r: outcome lost while Redis is down", self._name)
            return None
        decision = result[1]
        return decision if decision.changed_from is not None else None

    def apply(self, event: Event) -> Decision:
        """Apply an operator's event to the shared state (the fallback's during an outage)."""
        result = self._shared(event, read_first=True)
        if result is None or isinstance(result, Token):
            return self._fallback.apply(event)
        return result[1]

    def look(self) -> tuple[Machine, Decision]:
        """Read the shared state, applying a due OPEN -> HALF_OPEN change."""
        result = self._shared(_OBSERVE, read_first=True)
        if result is None or isinstance(result, Token):
            return self._fallback.look()
        return result


def _shared_decision(d: Decision) -> Decision:
    """*d* marked as made on the shared state (its `now` is the server's clock)."""
    return Decision(d.token, d.rejected, d.retry_after_s, d.changed_from, d.state, d.now, True)  # noqa: FBT003
