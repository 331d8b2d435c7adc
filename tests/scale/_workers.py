"""Functions the scale-out tests run in child processes (module level: spawn imports them)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import uuid
from collections.abc import Sequence
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from aegis_adapters import InvalidRequestError, Message, ProviderUnavailableError
from aegis_breaker import (
    BreakerEvent,
    CircuitOpenError,
    CircuitState,
    Permit,
    RedisCircuitBreaker,
    StateChanged,
    TimeWindow,
    connect_redis,
)


class BoomError(Exception):
    """The failure of the fake dependency."""


def _fail() -> None:
    raise BoomError


def hammer(  # noqa: PLR0917  # a Process target takes positional arguments
    url: str, name: str, limit: int, calls: int, barrier: Barrier, out: Queue[tuple[int, int, int]]
) -> None:
    """Make *calls* failing calls through the shared breaker; report (admitted, rejected, trips)."""
    events: list[BreakerEvent] = []
    breaker = RedisCircuitBreaker(connect_redis(url), name, limit, 60.0, listeners=[events.append])
    admitted = rejected = 0
    barrier.wait()
    for _ in range(calls):
        try:
            breaker.call(_fail)
        except BoomError:  # noqa: PERF203  # the exception is the point
            admitted += 1
        except CircuitOpenError:
            rejected += 1
    # Other processes' transitions arrive too (through pub/sub), marked remote: count our own.
    trips = sum(
        1
        for e in events
        if isinstance(e, StateChanged) and e.new is CircuitState.OPEN and not e.remote
    )
    out.put((admitted, rejected, trips))


# A window that never reaches minimum_calls: it only counts, so every outcome must be there.
COUNTING_WINDOW = TimeWindow(window_s=600.0, buckets=10, minimum_calls=10**9)


def fill_window(url: str, name: str, calls: int, barrier: Barrier, out: Queue[int]) -> None:
    """Report *calls* outcomes (every third a failure) into a shared time window."""
    breaker = RedisCircuitBreaker(connect_redis(url), name, policy=COUNTING_WINDOW)
    barrier.wait()
    for i in range(calls):
        with contextlib.suppress(BoomError):
            breaker.call(_fail if i % 3 == 0 else _ok)
    out.put(calls)


def _ok() -> None:
    return None


def probe(  # noqa: PLR0917  # a Process target takes positional arguments
    url: str,
    name: str,
    max_calls: int,
    attempts: int,
    barrier: Barrier,
    out: Queue[int],
) -> None:
    """Try to admit *attempts* half-open probes; report how many; after a barrier, succeed them."""
    breaker = RedisCircuitBreaker(
        connect_redis(url), name, 1, 0.0, half_open_max_calls=max_calls, half_open_max_wait_s=60.0
    )
    permits: list[Permit] = []
    barrier.wait()
    for _ in range(attempts):
        with contextlib.suppress(CircuitOpenError):
            permits.append(breaker.admit())
    out.put(len(permits))
    barrier.wait()
    for permit in permits:
        permit.success()


def crash_during_probe(url: str, name: str, max_wait_s: float, out: Queue[bool]) -> None:
    """Get admitted as the half-open probe, say so, then die without reporting."""
    breaker = RedisCircuitBreaker(connect_redis(url), name, 1, 0.0, half_open_max_wait_s=max_wait_s)

    def die() -> None:
        out.put(True)
        out.close()
        out.join_thread()
        os.kill(os.getpid(), signal.SIGKILL)

    breaker.call(die)


# -- replies computed on Dask workers (module level, so they pickle by reference) ----------------


def unique_reply(messages: Sequence[Message]) -> str:
    """A reply no other call gets: the worker's pid and a fresh uuid."""
    del messages
    return f"{os.getpid()}:{uuid.uuid4().hex}"


def flaky_reply(messages: Sequence[Message]) -> str:
    """``result:<first word>``; a transient 503 one time in five; a 400 for "permanent" tasks."""
    first_line = messages[-1].content.split("\n", 1)[0]
    if "permanent" in first_line:
        raise InvalidRequestError("scripted", f"cannot do {first_line!r}", status_code=400)
    if random.random() < FLAKY_RATE:  # simulated faults, not cryptography
        raise ProviderUnavailableError("scripted", "flaky upstream", status_code=503)
    return f"result:{first_line.split()[0]}"


FLAKY_RATE = 0.2


def keyword_echo(text: str, *, key: str, pure: str) -> str:
    """Return its arguments: `key` and `pure` are also names of Dask's submit options."""
    return f"{text}/{key}/{pure}"


def worker_pid() -> int:
    """The process the call ran in."""
    return os.getpid()
