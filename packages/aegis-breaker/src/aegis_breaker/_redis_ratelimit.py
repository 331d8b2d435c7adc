"""A rate limiter whose bucket lives in Redis, shared by every process using one name."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import attrs

from aegis_breaker._ratelimit import (
    RateLimiter,
    RateLimiterStatus,
    RateLimitExceededError,
    _number,
)
from aegis_breaker._redis import RedisClient

if TYPE_CHECKING:
    import asyncio

__all__ = ["RedisRateLimiter"]

logger = logging.getLogger(__name__)

DEFAULT_KEY_PREFIX: Final = "aegis:ratelimit"
_Grant = tuple[float, float, bool]
"""What `RateLimiter._take` returns: (wait or -retry_after, go time, from the shared bucket)."""
_US: Final = 1_000_000

_MEMBER_WINDOW_S: Final = 60.0
"""A limiter counts as sharing the budget for this long after its last call to Redis."""

# One script, the same bucket as `RateLimiter` (see its `_reserve_at`, `_give_back_at` and
# `_SLACK`), on the Redis server's clock in microseconds. KEYS: the hash, the sorted set
# of the limiters using it (by their last call), and the list of reservations waiting in
# line (the local core's `_ahead`). ARGV: op, amount, capacity, tokens per
# microsecond, a number whose meaning depends on op (reserve: the longest wait in us, -1:
# any; cancel: the reservation's go time; refund, consume, status: unused), the caller's
# process id and how long (us) a process counts as sharing after its last call (a status
# read does not count).
# Reply: {refused (0/1), value, now, tokens, last_go, sharers}, numbers as strings (Lua would
# truncate them to integers); value is the wait (reserve, refused or not) or the tokens put
# back; sharers is how many limiters used the bucket within the window, this one included.
# Every write sets the key to expire once the bucket would be full again with nobody queued,
# plus a second: by then a missing key (a full bucket) means the same thing.
# Nothing that is not a finite number is ever stored: an argument that is not one is refused
# before any write, and so is a result that is not one (a debt too deep for a float). A
# stored field that is not one (written by someone else) is corrupt, and read as the state
# that grants least without freezing: no tokens, refilled from now, nobody queued past now.
# A missing field, by contrast, is a bucket that expired full. (A NaN once stored read back
# as missing and reset the bucket to full; an infinite go time froze it for good.)
_SCRIPT: Final = """
local function finite(x) return x ~= nil and x == x and x > -math.huge and x < math.huge end
local function refuse(what)
  return redis.error_reply('ERR aegis rate limiter: ' .. what .. ' is not a finite number')
end
local key, op = KEYS[1], ARGV[1]
local amount, cap, per_us, arg = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5])
if not (finite(amount) and finite(cap) and finite(per_us) and finite(arg)) then
  return refuse('an argument')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[7])
if op ~= 'status' then redis.call('ZADD', KEYS[2], now, ARGV[6]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('(%d', now - window))
redis.call('PEXPIRE', KEYS[2], string.format('%d', math.ceil(window / 1000)))
local sharers = tostring(redis.call('ZCARD', KEYS[2]))
local h = redis.call('HMGET', key, 'tokens', 'ts', 'last_go')
local function field(raw, missing, corrupt)
  if not raw then return missing end
  local x = tonumber(raw)
  if finite(x) then return x end
  return corrupt
end
local tokens = field(h[1], cap, 0)
local ts, last_go = field(h[2], now, now), field(h[3], 0, now)
local slack = cap * 1e-9
if now < ts then now = ts end
tokens = math.min(cap, tokens + (now - ts) * per_us)
local function f(x) return string.format('%.17g', x) end
-- The reservations that wait, in line (a list of 'go amount given_back'), as the local core's
-- `_ahead`: those whose time has come are forgotten.
local line = KEYS[3]
-- A corrupt entry reads as a go time of nil: it is forgotten as one whose time came.
local function entry(i)
  local raw = redis.call('LINDEX', line, i)
  if not raw then return nil end
  local go, amt, gone = string.match(raw, '(%S+) (%S+) (%S+)')
  go, amt = tonumber(go), tonumber(amt)
  if not (finite(go) and finite(amt)) then return nil, nil, true, raw end
  return go, amt, gone == '1', raw
end
while true do
  local go, _, _, raw = entry(0)
  if raw == nil or (go ~= nil and go > now) then break end
  redis.call('LPOP', line)
end
local function give_back(amt, after)
  local promised = (last_go - after) * per_us
  if promised <= slack then promised = 0 end
  local back = amt - promised
  if back <= 0 then return 0 end
  if last_go > now and promised == 0 then last_go = math.max(now, last_go - back / per_us) end
  if tokens + back > cap then back = cap - tokens end
  tokens = tokens + back
  return back
end
local value = 0
if op == 'reserve' then
  local left, wait = tokens - amount, 0
  if left < -slack then wait = -left / per_us end
  if last_go > now + wait then wait = last_go - now end  -- first come, first served
  if not finite(now + wait) then return refuse('the wait') end
  if arg >= 0 and wait > arg then return {'1', f(wait), f(now), f(tokens), f(last_go), sharers} end
  tokens = left
  if now + wait > last_go then last_go = now + wait end
  if wait > 0 then redis.call('RPUSH', line, f(now + wait) .. ' ' .. f(amount) .. ' 0') end
  value = wait
elseif op == 'cancel' then
  if arg <= now then return {'0', '0', f(now), f(tokens), f(last_go), sharers} end
  -- A go time converted from a client's clock is off by up to a round trip: the waiting
  -- reservation of that amount going nearest to it is the one, if less than half the
  -- spacing of such reservations (each waits for its own amount: amount / per_us) away.
  -- At most one is that near, so a cancel repeated, or a go time made up, never takes
  -- another waiter's reservation (that waiter would still go: tokens minted).
  local near = 0.5 * amount / per_us
  -- A reservation of nothing gives back nothing, only its place in line: within 100 ms.
  if near == 0 then near = 100000 end
  local n, found, best = redis.call('LLEN', line), nil, near
  for i = n - 1, 0, -1 do
    local go, amt, gone = entry(i)
    if go ~= nil and go <= arg - near then break end
    if go ~= nil and math.abs(go - arg) < best and amt == amount and not gone then
      found, best = i, math.abs(go - arg)
    end
  end
  -- None waiting matches: its turn came, or it was never granted; giving back anyway
  -- minted tokens, so nothing comes back (as the local core's `cancel`).
  if found == nil then return {'0', '0', f(now), f(tokens), f(last_go), sharers} end
  if found < n - 1 then
    local go = entry(found)
    value = give_back(amount, go)
    redis.call('LSET', line, found, f(go) .. ' ' .. f(amount - value) .. ' 1')
    local tail = entry(n - 1)
    if tail ~= nil and tail > last_go then last_go = tail end
  else
    local back = amount
    redis.call('RPOP', line)
    while true do
      local go, amt, gone = entry(-1)
      if go == nil or not gone then break end
      back = back + amt
      redis.call('RPOP', line)
    end
    tokens = tokens + back
    if tokens > cap then back = back - (tokens - cap) tokens = cap end
    local tail = entry(-1)
    if tail ~= nil then last_go = tail else last_go = math.min(last_go, now) end
    value = back
  end
elseif op == 'refund' then
  value = give_back(amount, now)
elseif op == 'consume' then
  tokens = tokens - amount
else
  return {'0', '0', f(now), f(tokens), f(last_go), sharers}
end
if not (finite(tokens) and finite(last_go) and finite((cap - tokens) / per_us)) then
  return refuse('the new state')
end
redis.call('HSET', key, 'tokens', f(tokens), 'ts', f(now), 'last_go', f(last_go))
local idle = math.max((cap - tokens) / per_us, last_go - now)
-- Capped (at some 30,000 years): a deep debt's TTL overflowed '%d' to a negative one,
-- which deleted the key, so the debt reset the bucket to full.
local ttl = string.format('%d', math.min(math.ceil(idle / 1000), 1e15) + 1000)
redis.call('PEXPIRE', key, ttl)
if redis.call('EXISTS', line) == 1 then redis.call('PEXPIRE', line, ttl) end
return {'0', f(value), f(now), f(tokens), f(last_go), sharers}
"""
_SHA: Final = hashlib.sha1(_SCRIPT.encode(), usedforsecurity=False).hexdigest()


@attrs.frozen
class _Reply:
    refused: bool
    value: float
    """The wait in microseconds (reserve) or the tokens put back (cancel, refund)."""
    now_s: float
    tokens: float
    last_go_s: float
    sharers: int
    """Limiters that used the bucket within the membership window, this one included."""

    @classmethod
    def parse(cls, raw: object) -> _Reply:
        if not isinstance(raw, list) or len(raw) != 6:  # noqa: PLR2004  # the script's reply shape
            raise TypeError(f"unexpected reply from the rate limiter script: {raw!r}")
        numbers = [float(x) for x in raw]
        refused, value, now, tokens, last_go, sharers = numbers
        if not (all(map(math.isfinite, numbers)) and sharers >= 1):
            raise TypeError(f"unexpected reply from the rate limiter script: {raw!r}")
        return cls(refused == 1, value, now / _US, tokens, last_go / _US, int(sharers))


class RedisRateLimiter(RateLimiter):
    """A `RateLimiter` whose bucket is shared, through Redis, by every process using *name*.

    Same settings, semantics and methods as `RateLimiter`: one budget of ``rate`` tokens per
    ``per_s`` across all processes, reservations first come first served across them. Every
    operation is one round trip running one Lua script atomically on the server, on the
    server's clock (``TIME``), so hosts need not agree on time. The state is one hash,
    ``{key_prefix}:{{name}}``, which expires once the bucket would be full again with nobody
    queued (plus a second): idle limiters leave nothing behind. Processes sharing a name
    should share settings.

    The ``now`` arguments of the sans-I/O methods are ignored (the server's clock is used);
    `cancel` takes a go time on this limiter's *clock* (its reading plus the wait `reserve`
    returned) and converts it with the server's clock seen on the latest reply, so it is
    exact to within a round trip: the waiting reservation of that amount nearest to it is
    the one, if less than half ``amount / rate * per_s`` away (as `RateLimiter.cancel`).
    The drivers (`acquire`, `aacquire`, `try_acquire`) keep the
    server's go time and give back exactly. `aacquire` runs its round trip in the event
    loop's default executor, so the loop never waits on the network.

    When Redis fails (unreachable, timing out, any error), the limiter uses its own local
    bucket, logs one warning per outage and tries Redis again after ``reconnect_interval_s``;
    a call is never refused because Redis is down. The local bucket takes this process's
    share of the budget, so the processes together stay near it: the refill rate divided by
    the number of processes that used the shared bucket within the last minute, as the
    server counted them at this process's last call (each call but a status read tells the
    server who is sharing; limiters of one process count once), starting from the shared
    bucket's tokens as last seen, divided the same way (debt included). A limiter made
    during an outage starts from what its process last saw; one in a process that never
    reached Redis has no one to share with: it takes the whole budget, with a full bucket.
    A Redis that restarts empty counts sharers afresh, as each process calls again.

    Args:
        client: A Redis client, e.g. from `connect_redis`; use short timeouts, no retries.
        name: The shared limiter's name (its key).
        rate: See `RateLimiter`.
        per_s: See `RateLimiter`.
        burst: See `RateLimiter`.
        clock: Monotonic seconds for the local fallback and the reconnect delay.
        key_prefix: Prefix of the Redis key.
        reconnect_interval_s: Seconds to stay on the local bucket after Redis failed (>= 0).

    Raises:
        ValueError: When a setting is out of range or *name* is empty.
    """

    __slots__ = (
        "_client",
        "_degraded",
        "_fallback",
        "_full_per_second",
        "_key",
        "_last_reply",
        "_reconnect_interval_s",
        "_server_offset_s",
        "_settings_args",
        "_store_lock",
        "_store_retry_at",
        "_window",
    )

    def __init__(
        self,
        client: RedisClient,
        name: str,
        rate: float,
        per_s: float = 60.0,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        reconnect_interval_s: float = 1.0,
    ) -> None:
        """Build the limiter; nothing is sent to Redis until the first call."""
        if not name:
            raise ValueError("a Redis rate limiter needs a non-empty name")
        if not _number(name, "reconnect_interval_s", reconnect_interval_s) >= 0:
            raise ValueError(
                f"rate limiter {name!r}: reconnect_interval_s must be >= 0, "
                f"got {reconnect_interval_s}"
            )
        super().__init__(rate, per_s, burst=burst, clock=clock, name=name)
        self._client = client
        self._key = f"{key_prefix}:{{{name}}}"
        self._settings_args = (repr(self._capacity), repr(self._per_second / _US))
        self._window = repr(_MEMBER_WINDOW_S * _US)
        self._full_per_second = self._per_second
        self._last_reply: _Reply | None = None  # this limiter's own latest reply
        self._fallback = _fallback(self._key, self._capacity, self._per_second, clock, name)
        self._reconnect_interval_s = float(reconnect_interval_s)
        self._store_lock = threading.Lock()
        self._store_retry_at = float("-inf")
        self._degraded = False
        self._server_offset_s = 0.0

    # -- talking to Redis ----------------------------------------------------------------------

    def _eval(self, op: str, amount: float = 0.0, arg: float = 0.0) -> _Reply | None:
        """Run the script; None when Redis failed (the caller falls back to local state).

        Raises:
            ValueError: When *amount* or *arg* is not finite (nothing is sent): the script
                refuses one too, but as a store failure, and it must never be stored.
        """
        if not (math.isfinite(amount) and math.isfinite(arg)):
            raise ValueError(
                f"{self._who()}: {op} with amount {amount!r} and argument {arg!r}: "
                "not a finite number, not sent to Redis"
            )
        retry_at = self._store_retry_at
        if retry_at > self._clock():
            return None
        args = (op, repr(amount), *self._settings_args, repr(arg), _process_id(), self._window)
        keys = (self._key, f"{self._key}:sharers", f"{self._key}:line")
        try:
            try:
                raw = self._client.evalsha(_SHA, 3, *keys, *args)
            except Exception as exc:
                if not _is_noscript(exc):
                    raise
                # A restarted server has forgotten its scripts: load once and run again.
                self._client.script_load(_SCRIPT)
                raw = self._client.evalsha(_SHA, 3, *keys, *args)
            reply = _Reply.parse(raw)
        except Exception as exc:  # noqa: BLE001  # any store failure means: use local state
            self._store_failed(exc)
            return None
        offset = reply.now_s - self._clock()
        if math.isfinite(offset):  # a reading that is not finite keeps the last offset
            self._server_offset_s = offset
        self._last_reply = reply
        _LAST_SEEN[self._key] = (reply, time.monotonic())
        if self._degraded and self._store_retry_at == retry_at:
            # Back, unless another call failed during this round trip (a reply sent before
            # the outage): that failure stands until its reconnect delay is over.
            self._store_recovered()
        return reply

    def _store_failed(self, exc: Exception) -> None:
        with self._store_lock:
            retry_at = self._clock() + self._reconnect_interval_s
            # NaN would retry at every call; +inf never again.
            self._store_retry_at = retry_at if math.isfinite(retry_at) else -math.inf
            first = not self._degraded
            self._degraded = True
        if first:
            sharers = self._take_local_share()
            logger.warning(
                "rate limiter %r: Redis failed (%s: %s); using a local bucket with %s of the "
                "budget until it is back",
                self._name,
                type(exc).__name__,
                exc,
                "all" if sharers == 1 else f"1/{sharers}",
            )

    def _take_local_share(self) -> int:
        """Set the process's local bucket to its share of the shared one; return the sharers.

        One local bucket per process and shared bucket (see `_Fallback`), so limiters of one
        process alive at once split the process's share instead of each taking it. The
        share is of the rate and of the tokens the shared bucket held when the process last
        saw it, refilled for the time since (negative ones too: reservations made ahead are
        debt every sharer pays its part of), taken once per reply: the limiters failing over
        after the first in one outage find it taken. The capacity stays whole, so any amount
        the shared bucket took still fits.
        """
        seen = _LAST_SEEN.get(self._key)
        if seen is None:
            return 1  # never reached the server: nobody to share with is known
        reply, received_at = seen
        fallback = self._fallback
        bucket = fallback.bucket
        with bucket._lock:  # noqa: SLF001  # the local bucket is this module's
            if fallback.reply is reply:
                return reply.sharers
            fallback.reply = reply
            sharers = reply.sharers
            now = bucket._clock()  # noqa: SLF001
            bucket._per_second = self._full_per_second / sharers  # noqa: SLF001
            # Read at the reply; refilled since at the full rate: on this limiter's clock if
            # the reply was its own, else for the time since the process received it.
            if reply is self._last_reply:
                since = max(0.0, now + self._server_offset_s - reply.now_s)
            else:
                since = max(0.0, time.monotonic() - received_at)
            if not math.isfinite(since):  # a reading that is not finite: none passed
                since = 0.0
            tokens = min(self._capacity, reply.tokens + since * self._full_per_second)
            bucket._tokens = tokens / sharers  # noqa: SLF001
            if math.isfinite(now):  # else the bucket keeps its time, as `_refill` would
                bucket._last = now  # noqa: SLF001
        return sharers

    def _store_recovered(self) -> None:
        with self._store_lock:
            was = self._degraded
            self._degraded = False
        if was:
            logger.warning("rate limiter %r: Redis is back; using the shared bucket", self._name)

    @property
    def shared(self) -> bool:
        """Whether the limiter is on the shared Redis bucket (False during an outage)."""
        return not self._degraded

    # -- the hooks the drivers use -----------------------------------------------------------

    def _take(self, amount: float, max_wait_s: float | None) -> tuple[float, float, bool]:
        max_wait_us = -1.0 if max_wait_s is None else max_wait_s * _US
        if max_wait_us == math.inf:  # a limit past what a float holds in us: none
            max_wait_us = -1.0
        reply = self._eval("reserve", amount, max_wait_us)
        if reply is None:
            return self._fallback.bucket._take(amount, max_wait_s)  # noqa: SLF001
        wait = reply.value / _US
        if reply.refused:
            return -wait, 0.0, True
        return wait, reply.now_s + wait, True

    def _try_take(self, amount: float) -> bool:
        return self._take(amount, 0.0)[0] >= 0

    async def _atake(self, amount: float, max_wait_s: float | None) -> _Grant:
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        loop = asyncio.get_running_loop()
        lock = threading.Lock()
        taken: list[_Grant] = []
        abandoned: list[bool] = []

        def take() -> _Grant:
            grant = self._take(amount, max_wait_s)
            with lock:
                taken.append(grant)
                gone = bool(abandoned)
            if gone:  # the caller was cancelled during the round trip
                self._give_back_grant(amount, grant)
            return grant

        try:
            return await asyncio.shield(loop.run_in_executor(None, take))
        except asyncio.CancelledError:
            # Whichever of us sees the grant second gives it back, off the loop.
            with lock:
                abandoned.append(True)
                grant = taken[0] if taken else None
            if grant is not None:
                loop.run_in_executor(None, self._give_back_grant, amount, grant)
            raise

    def _give_back_grant(self, amount: float, grant: _Grant) -> None:
        """Give back what a caller that is gone was granted (blocking: call it off the loop)."""
        wait, go_at, shared = grant
        if wait < 0:  # refused: nothing was taken
            return
        if not shared:
            if wait > 0:
                self._fallback.bucket._untake(amount, go_at, shared=False)  # noqa: SLF001
            else:
                self._fallback.bucket.refund(amount)
        elif wait > 0:
            self._eval("cancel", amount, go_at * _US)
        else:
            self._eval("refund", amount)

    def _untake(self, amount: float, go_at: float, shared: bool) -> None:  # noqa: FBT001
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        if not shared:
            self._fallback.bucket._untake(amount, go_at, shared=False)  # noqa: SLF001
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            self._eval("cancel", amount, go_at * _US)
        else:  # from a cancelled task: keep the loop free of the round trip
            loop.run_in_executor(None, self._eval, "cancel", amount, go_at * _US)

    # -- the sans-I/O API, on the server's clock -----------------------------------------------

    def reserve(
        self, amount: float = 1.0, *, now: float | None = None, max_wait_s: float | None = None
    ) -> float:
        """Reserve *amount* in the shared bucket; see `RateLimiter.reserve` (*now* is ignored).

        Raises:
            ValueError: When *amount* is negative, not finite or above `capacity`, the wait
                limit is negative, or *now* is not finite (ignored, but checked as
                `RateLimiter.reserve` checks it).
            RateLimitExceededError: When the wait would exceed *max_wait_s*.
        """
        self._check(amount, max_wait_s)
        self._check_time("now", now)
        wait = self._take(amount, max_wait_s)[0]
        if wait < 0:
            raise RateLimitExceededError(self._name, -wait, amount)
        return wait

    def cancel(self, amount: float, go_at: float, *, now: float | None = None) -> float:
        """Give back a reservation that was to go at *go_at* on this limiter's clock.

        See `RateLimiter.cancel`; *now* is ignored. During an outage the local bucket gets it.

        Returns:
            The tokens put back.

        Raises:
            ValueError: When *amount* is negative or not finite, or *go_at* or *now* is not
                finite, or *go_at* is too large to convert to the server's clock (nothing
                is sent).
        """
        self._check_amount("amount", amount)
        self._check_time("go_at", go_at, required=True)
        self._check_time("now", now)
        go_at_us = (go_at + self._server_offset_s) * _US
        if not math.isfinite(go_at_us):
            raise ValueError(
                f"{self._who()}: go_at {go_at!r} is too large to convert to the server's clock"
            )
        reply = self._eval("cancel", amount, go_at_us)
        if reply is None:
            return self._fallback.bucket.cancel(amount, go_at)
        return reply.value

    def refund(self, amount: float, *, now: float | None = None) -> float:
        """Give back *amount* an admitted call did not use; see `RateLimiter.refund`.

        Returns:
            The tokens put back.

        Raises:
            ValueError: When *amount* is negative or not finite, or *now* is not finite.
        """
        self._check_amount("refund", amount)
        self._check_time("now", now)
        reply = self._eval("refund", amount)
        if reply is None:
            return self._fallback.bucket.refund(amount)
        return reply.value

    def consume(self, amount: float, *, now: float | None = None) -> None:
        """Take *amount* more without waiting; see `RateLimiter.consume`.

        Raises:
            ValueError: When *amount* is negative or not finite, *now* is not finite, or
                *amount* alone is a debt that takes longer than a float can count to pay
                back (nothing is sent). A debt that grows that deep over several calls is
                refused by the server, which counts as a Redis failure, and then by the
                local bucket.
        """
        self._check_amount("consume", amount)
        self._check_time("now", now)
        self._check_debt(amount, 0.0)  # the script refuses a deeper debt, as a store failure
        if self._eval("consume", amount) is None:
            self._fallback.bucket.consume(amount)

    def status(self) -> RateLimiterStatus:
        """A snapshot of the shared bucket (of the local one during an outage)."""
        reply = self._eval("status")
        if reply is None:
            return attrs.evolve(self._fallback.bucket.status(), waiting=self._waiting)
        return RateLimiterStatus(
            name=self._name,
            rate=self._rate,
            per_s=self._per_s,
            capacity=self._capacity,
            available=reply.tokens,
            waiting=self._waiting,
            queued_s=max(0.0, reply.last_go_s - reply.now_s),
            shared=True,
        )

    def __repr__(self) -> str:
        """Show the name, settings and whether the shared bucket is in use, without a round trip."""
        return (
            f"RedisRateLimiter(name={self._name!r}, rate={self._rate:g}, per_s={self._per_s:g}, "
            f"capacity={self._capacity:g}, shared={not self._degraded})"
        )


_LAST_SEEN: dict[str, tuple[_Reply, float]] = {}
"""The last reply seen in this process, by the shared bucket's key (see `_take_local_share`)."""


@attrs.define
class _Fallback:
    """A process's local bucket for one shared bucket, used by its limiters while Redis is down."""

    bucket: RateLimiter
    reply: _Reply | None = None
    """The reply the bucket's share was last taken from."""


_FALLBACKS: dict[tuple[str, float, float, Callable[[], float]], _Fallback] = {}
_FALLBACKS_LOCK = threading.Lock()


def _fallback(
    key: str, capacity: float, per_second: float, clock: Callable[[], float], name: str
) -> _Fallback:
    """The process's local bucket for the shared bucket *key* (made full, at the full rate)."""
    with _FALLBACKS_LOCK:
        found = _FALLBACKS.get((key, capacity, per_second, clock))
        if found is None:
            bucket = RateLimiter(per_second, 1.0, burst=capacity, clock=clock, name=name)
            found = _FALLBACKS[key, capacity, per_second, clock] = _Fallback(bucket)
        return found


_PROCESS_TOKEN: Final = uuid.uuid4().hex


def _process_id() -> str:
    """This process, as the server counts sharers: limiters of one process are one sharer.

    The pid is read at each limiter's making, so a forked child is a sharer of its own.
    """
    return f"{_PROCESS_TOKEN}:{os.getpid()}"


def _is_noscript(exc: Exception) -> bool:
    """Whether *exc* is Redis's NOSCRIPT reply (redis-py raises NoScriptError without the code)."""
    return type(exc).__name__ == "NoScriptError" or str(exc).startswith("NOSCRIPT")
