"""Declared limits per model: what a provider account allows, enforced before each request.

``OpenMultiAgent(limits={"gpt-4o-mini": Limits(requests_per_minute=500,
tokens_per_minute=200_000, max_concurrent=8)})``. A key is a model name, ``"provider:model"``
or a full endpoint key; the most specific match wins. Requests and tokens are paced with
aegis-breaker's :class:`~aegis_breaker.RateLimiter` (token buckets, first come first served);
a declared ``max_concurrent`` replaces the endpoint's adaptive limit.

Requests are spaced evenly: the request bucket holds ``Limits.burst`` requests, one by default.
Providers enforce per-minute limits over much shorter windows (a bucket that refills
continuously, holding only a few requests), so even a second's worth at once draws 429s; the
traffic benchmark measured that (every 429 of a declared run came from the first second's
burst). The token bucket holds a second's worth (requests differ in size).

Several processes share one budget per model with a :class:`RedisRateStore`: the buckets then
live in Redis (aegis-breaker's :class:`~aegis_breaker.RedisRateLimiter`: one atomic script per
operation, on the server's clock, with a local bucket while Redis is unreachable).

Tokens are counted before a call from an estimate — a quarter of the characters of the
messages, the system prompt and the tools' schemas, plus the call's ``max_tokens`` is *not*
added — and reconciled after it with the usage the provider reports (input plus output), so
the bucket converges on the real count.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import attrs
from aegis_adapters import ChatResponse, Endpoint

from aegis_gov._checks import check_number

if TYPE_CHECKING:
    from aegis_breaker import RateLimiter, RedisClient

__all__ = [
    "MIN_PER_MINUTE",
    "EndpointLimiter",
    "Limits",
    "RedisRateStore",
    "estimate_output",
    "estimate_tokens",
    "resolve_limits",
    "tools_chars",
]


MIN_PER_MINUTE = 0.001
"""The smallest rate a limit may declare (one request in about 17 hours)."""


def _rate(_instance: object, attribute: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None:
        check_number(attribute.name, value)
        if value < MIN_PER_MINUTE:
            raise ValueError(f"{attribute.name} must be at least {MIN_PER_MINUTE}, got {value!r}")


def _burst(
    _instance: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None:
        check_number(attribute.name, value)
        if value < 1:
            raise ValueError(f"{attribute.name} must be at least 1 request, got {value!r}")


def _count(_instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None:
        check_number(attribute.name, value, integer=True)


@attrs.frozen
class Limits:
    """What a model's provider account allows; ``None`` leaves that dimension unlimited."""

    requests_per_minute: float | None = attrs.field(default=None, validator=_rate)
    """Requests started per minute, spaced evenly (at most ``burst`` at once)."""
    tokens_per_minute: float | None = attrs.field(default=None, validator=_rate)
    """Tokens (input and output) per minute."""
    max_concurrent: int | None = attrs.field(default=None, validator=_count)
    """Calls in flight at once; replaces the endpoint's adaptive limit."""
    burst: float | None = attrs.field(default=None, validator=_burst)
    """Requests that may go at once after a quiet spell; ``None`` means 1 (evenly spaced).

    Raise it only when the provider is known to accept bursts; needs ``requests_per_minute``.
    """

    def __attrs_post_init__(self) -> None:
        """A burst needs a request rate to refill it."""
        if self.burst is not None and self.requests_per_minute is None:
            raise ValueError("burst needs requests_per_minute (it is a number of requests)")


def _prefix(_instance: object, _attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"key_prefix must be a non-empty string, got {value!r}")


def _interval(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    check_number(attribute.name, value, positive=False)
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _client(_instance: object, _attribute: attrs.Attribute[RedisClient], value: object) -> None:
    if not callable(getattr(value, "evalsha", None)):
        raise TypeError(f"client must be a Redis client (see connect_redis), got {value!r:.80}")


@attrs.frozen
class RedisRateStore:
    """Keeps declared limits' buckets in Redis: processes share one budget per model.

    ``OpenMultiAgent(limits=..., rate_store=RedisRateStore(connect_redis(url)))``. Every
    facade, in any process, whose store points at the same Redis server and ``key_prefix``
    draws a model's requests and tokens from one pair of buckets, named after its endpoint
    (provider, base URL, model): ``Limits(requests_per_minute=500)`` then means 500 a minute
    across all of them, first come first served. Each operation is one atomic script on the
    Redis server's clock (hosts need not agree on time). While Redis is unreachable each
    process uses a local bucket with the same settings (logging one warning) and returns
    to the shared one after ``reconnect_interval_s``; a call is never refused because Redis
    is down. Processes sharing a budget should declare the same limits; give accounts with
    separate limits separate prefixes. An async run does its round trips off the event loop.
    """

    client: RedisClient = attrs.field(validator=_client)
    """A Redis client, e.g. from :func:`~aegis_breaker.connect_redis` (short timeouts)."""
    key_prefix: str = attrs.field(default="aegis:limits", validator=_prefix)
    """Prefix of the buckets' Redis keys."""
    reconnect_interval_s: float = attrs.field(default=1.0, validator=_interval)
    """Seconds on the local bucket after Redis failed, before trying it again."""

    def bucket(
        self,
        name: str,
        rate: float,
        per_s: float,
        *,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> RateLimiter:
        """The shared token bucket called *name*: *rate* every *per_s* seconds, *burst* deep."""
        from aegis_breaker import RedisRateLimiter  # noqa: PLC0415  # only when a store is used

        return RedisRateLimiter(
            self.client,
            name,
            rate,
            per_s,
            burst=burst,
            clock=clock,
            key_prefix=self.key_prefix,
            reconnect_interval_s=self.reconnect_interval_s,
        )


def resolve_limits(limits: Mapping[str, Limits], endpoint: Endpoint, key: str) -> Limits | None:
    """The limits declared for *endpoint*: by its full key, ``provider:model`` or model."""
    for name in (key, f"{endpoint.provider}:{endpoint.model}", endpoint.model):
        found = limits.get(name)
        if found is not None:
            return found
    return None


def estimate_tokens(messages_chars: int, system: str | None, tools_json_chars: int) -> int:
    """A cheap token estimate: four characters a token, at least one."""
    return max(1, (messages_chars + len(system or "") + tools_json_chars) // 4)


def estimate_output(response: ChatResponse) -> int:
    """*response*'s output tokens, estimated from its text and tool calls (4 characters each)."""
    chars = len(response.text) + sum(
        len(call.name) + len(str(call.arguments)) for call in response.tool_calls
    )
    return (chars + 3) // 4


class EndpointLimiter:
    """The request and token buckets of one endpoint with declared :class:`Limits`."""

    def __init__(
        self,
        limits: Limits,
        *,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        store: RedisRateStore | None = None,
    ) -> None:
        """Make the buckets *limits* asks for, on *clock* (in *store*, shared, if given)."""
        # The limiter's module loads with the first endpoint that declares limits.
        from aegis_breaker import RateLimiter  # noqa: PLC0415

        self.limits = limits
        self.shared = store is not None
        self._clock = clock

        def bucket(what: str, per_minute: float, burst: float) -> RateLimiter:
            if store is not None:
                return store.bucket(f"{name} {what}", per_minute, 60.0, burst=burst, clock=clock)
            return RateLimiter(per_minute, 60.0, burst=burst, name=f"{name} {what}", clock=clock)

        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        self.requests = (
            None
            if rpm is None
            else bucket("requests", rpm, 1.0 if limits.burst is None else limits.burst)
        )
        self.tokens = None if tpm is None else bucket("tokens", tpm, _second_of(tpm))
        self._lock = threading.Lock()

    def reserve(
        self, estimate: int, *, max_wait_s: float | None = None
    ) -> tuple[float, float, tuple[float, float]]:
        """Reserve one request and *estimate* tokens.

        Returns:
            The seconds to wait, the tokens taken, and when each bucket's turn comes on the
            limiter's clock (requests, tokens; what :meth:`cancel_waiting` gives back).

        Raises:
            RateLimitExceededError: the wait would exceed *max_wait_s* (nothing is reserved).
        """
        from aegis_breaker import RateLimitExceededError  # noqa: PLC0415  # loaded by __init__

        wait = 0.0
        now = self._clock()
        gos = (now, now)
        if self.requests is not None:
            wait = self.requests.reserve(1.0, max_wait_s=max_wait_s)
            gos = (now + wait, now)
        taken = 0.0
        if self.tokens is not None:
            # The bucket holds a second's worth; a request bigger than that waits for a full
            # bucket and takes the rest as debt, which the requests after it wait out. So
            # the declared tokens per minute hold however large the requests are.
            taken = float(estimate)
            head = min(taken, self.tokens.capacity)
            try:
                token_wait = self.tokens.reserve(head, max_wait_s=max_wait_s)
            except RateLimitExceededError as exc:
                if self.requests is not None and wait > 0.0:
                    self.requests.cancel(1.0, gos[0])  # its place in line, as if never taken
                elif self.requests is not None:
                    self.requests.refund(1.0)
                if head == taken:
                    raise
                # Name the request's tokens, not the bucket's second's worth it asked for
                # (a message read "1.66667 would have to wait 600 s" at 100 a minute).
                raise RateLimitExceededError(exc.limiter_name, exc.retry_after_s, taken) from None
            gos = (gos[0], now + token_wait)
            wait = max(wait, token_wait)
            if taken > head:
                self.tokens.consume(taken - head)
        return wait, taken, gos

    def cancel(self, taken: float) -> None:
        """Give back a reservation that was not used (one request and *taken* tokens)."""
        if self.requests is not None:
            self.requests.refund(1.0)
        if self.tokens is not None and taken:
            self.tokens.refund(taken)

    def cancel_waiting(self, taken: float, gos: tuple[float, float]) -> None:
        """Give back a reservation whose caller was given up before its turn.

        *gos* is what :meth:`reserve` returned. Unlike :meth:`cancel` (a turn whose time
        had come), the capacity it held in line goes back, so the callers after it do not
        wait for a request never sent.
        """
        if self.requests is not None:
            self.requests.cancel(1.0, gos[0])
        if self.tokens is not None and taken:
            head = min(taken, self.tokens.capacity)
            self.tokens.cancel(head, gos[1])
            if taken > head:
                self.tokens.refund(taken - head)

    def reconcile(self, taken: float, response: ChatResponse | None) -> None:
        """Correct the token bucket with what the provider reports the call used."""
        if self.tokens is None or response is None:
            return
        usage = response.usage
        if not (usage.input_tokens or usage.output_tokens):
            return  # the provider reported nothing: keep the estimate
        # A count the adapter could not read (absurd, not a number) comes as 0: estimate
        # that field alone, or one unreadable input count refunded the whole estimate.
        used = float(
            (usage.input_tokens or taken) + (usage.output_tokens or estimate_output(response))
        )
        if used > taken:
            self.tokens.consume(used - taken)
        elif used < taken:
            self.tokens.refund(taken - used)


def _second_of(per_minute: float) -> float:
    # Providers enforce per-minute limits over shorter windows (a minute's worth at once is
    # refused), so the token bucket holds one second's worth.
    return max(1.0, per_minute / 60.0)


def tools_chars(schemas: object) -> int:
    """Characters the tools' specs add to a request."""
    try:
        return len(json.dumps(schemas, default=str))
    except (TypeError, ValueError):
        return 0
