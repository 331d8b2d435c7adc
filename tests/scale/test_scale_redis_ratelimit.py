"""RedisRateLimiter against a real redis-server: one budget across clients and processes."""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import threading
import uuid
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from types import SimpleNamespace

import pytest
import redis
from aegis_breaker import (
    RateLimiter,
    RateLimiterStatus,
    RateLimitExceededError,
    RedisClient,
    RedisRateLimiter,
    _redis_ratelimit,
    connect_redis,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.scale.conftest import RedisServer

pytestmark = pytest.mark.timeout(60)

# fork starts the children in milliseconds and runs the targets below without importing them.
ctx = multiprocessing.get_context("fork")
HOUR = 3600.0  # a long period: refill during a test is negligible, so counts are exact


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def is_shared(limit: RedisRateLimiter) -> bool:
    """Read `shared` through a call, so mypy does not narrow it across assertions."""
    return limit.shared


def grab(  # noqa: PLR0917  # a Process target takes positional arguments
    url: str, name: str, rate: float, attempts: int, barrier: Barrier, out: Queue[int]
) -> None:
    """Try *attempts* times to take one token from the shared budget; report how many went."""
    limit = RedisRateLimiter(connect_redis(url, timeout_s=2.0), name, rate, 3600.0)
    barrier.wait()
    out.put(sum(limit.try_acquire() for _ in range(attempts)))


def queue_up(  # noqa: PLR0917  # a Process target takes positional arguments
    url: str, name: str, rate: float, reservations: int, barrier: Barrier, out: Queue[list[float]]
) -> None:
    """Reserve *reservations* tokens one by one; report each wait (nobody sleeps)."""
    limit = RedisRateLimiter(connect_redis(url, timeout_s=2.0), name, rate, 3600.0, burst=1)
    barrier.wait()
    out.put([limit.reserve() for _ in range(reservations)])


@pytest.fixture(scope="module")
def client(redis_server: RedisServer) -> RedisClient:
    return connect_redis(redis_server.url)


@pytest.fixture
def name() -> str:
    return f"test-{uuid.uuid4().hex}"


def test_settings_are_validated(client: RedisClient) -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        RedisRateLimiter(client, "", 10)
    with pytest.raises(ValueError, match="reconnect_interval_s must be >= 0"):
        RedisRateLimiter(client, "x", 10, reconnect_interval_s=-1)
    with pytest.raises(ValueError, match="rate must be a positive finite"):
        RedisRateLimiter(client, "x", 0)


def test_two_clients_share_one_budget(redis_server: RedisServer, name: str) -> None:
    one = RedisRateLimiter(connect_redis(redis_server.url), name, 5, HOUR)
    two = RedisRateLimiter(connect_redis(redis_server.url), name, 5, HOUR)
    went = [one.try_acquire(), two.try_acquire(2), one.try_acquire(2)]
    assert went == [True, True, True]
    assert not two.try_acquire()
    assert not one.try_acquire()
    assert one.status().available == pytest.approx(0.0, abs=0.01)
    assert is_shared(one)
    assert is_shared(two)
    assert "shared=True" in repr(one)


def test_reservations_queue_across_clients_first_come_first_served(
    client: RedisClient, name: str
) -> None:
    one = RedisRateLimiter(client, name, 10, HOUR, burst=2)
    two = RedisRateLimiter(client, name, 10, HOUR, burst=2)
    per_token = HOUR / 10
    assert one.reserve(2) == 0.0
    waits = [two.reserve(1), one.reserve(2), two.reserve(1)]
    expected = [per_token, 3 * per_token, 4 * per_token]
    assert waits == pytest.approx(expected, abs=0.5)
    status = two.status()
    assert isinstance(status, RateLimiterStatus)
    assert status.shared
    assert status.queued_s == pytest.approx(4 * per_token, abs=0.5)
    assert status.available == pytest.approx(-4.0, abs=0.01)


def test_max_wait_refuses_without_consuming(client: RedisClient, name: str) -> None:
    limit = RedisRateLimiter(client, name, 1, HOUR, burst=1)
    limit.acquire()
    with pytest.raises(RateLimitExceededError) as info:
        limit.acquire(timeout_s=5.0, sleep=lambda s: pytest.fail("must not sleep"))
    assert info.value.retry_after_s == pytest.approx(HOUR, abs=1.0)
    with pytest.raises(RateLimitExceededError):
        limit.reserve(max_wait_s=0.0)
    assert limit.status().queued_s == 0.0
    with pytest.raises(ValueError, match="exceeds the capacity"):
        limit.reserve(2)


def test_acquire_sleeps_the_shared_wait(client: RedisClient, name: str) -> None:
    limit = RedisRateLimiter(client, name, 2, 1.0, burst=1)
    slept: list[float] = []
    assert limit.acquire(sleep=slept.append) == 0.0
    assert limit.acquire(sleep=slept.append) == pytest.approx(0.5, abs=0.05)
    assert slept == [pytest.approx(0.5, abs=0.05)]


def test_refund_cancel_and_consume_reach_the_shared_bucket(client: RedisClient, name: str) -> None:
    limit = RedisRateLimiter(client, name, 100, HOUR)
    other = RedisRateLimiter(client, name, 100, HOUR)
    limit.reserve(80)
    assert limit.refund(50) == pytest.approx(50.0)
    assert other.status().available == pytest.approx(70.0, abs=0.01)
    other.consume(150)  # debt
    assert limit.status().available == pytest.approx(-80.0, abs=0.01)
    wait = limit.reserve(10)
    assert wait == pytest.approx(90 * HOUR / 100, abs=0.5)
    # The last in line is given back whole (the go time is on the limiter's own clock).
    assert limit.cancel(10, limit._clock() + wait) == pytest.approx(10.0, abs=0.01)
    status = other.status()
    assert status.available == pytest.approx(-80.0, abs=0.01)
    assert status.queued_s == 0.0  # nobody waits in line (the debt still delays newcomers)
    assert limit.refund(1000) == pytest.approx(180.0, abs=0.01)  # up to capacity, no more
    with pytest.raises(ValueError, match="refund must be"):
        limit.refund(-1)
    with pytest.raises(ValueError, match="consume must be"):
        limit.consume(float("nan"))


def test_cancelling_one_shared_reservation_twice_never_gives_back_another_s(
    client: RedisClient, name: str
) -> None:
    # Found by an adversarial review: the script took the waiting reservation of that
    # amount nearest the go time within 100 ms, so a cancel repeated gave back the next
    # waiter's reservation while that waiter still went (172 in a second against 101).
    limit = RedisRateLimiter(client, name, 20, 1.0, burst=1)  # go times 50 ms apart
    limit.reserve()
    first = limit._clock() + limit.reserve()
    last = limit._clock() + limit.reserve()
    assert limit.cancel(1, first) == 0.0  # the one behind it keeps its slot
    assert limit.cancel(1, first) == 0.0  # not the last one's, 50 ms later
    assert limit.cancel(1, first + 0.02) == 0.0  # nearer the first, given back already
    assert limit.status().queued_s == pytest.approx(0.1, abs=0.02)
    assert limit.cancel(1, last) == pytest.approx(2.0)  # the last: its own and the first's
    assert limit.cancel(1, last) == 0.0


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_time_that_is_not_finite_is_refused_before_reaching_redis(
    client: RedisClient, name: str, bad: float
) -> None:
    # As RateLimiter: a NaN go time sent to the script came back NaN and left the shared
    # bucket full, its line and debt forgotten; `now` is ignored here, but checked the same.
    limit = RedisRateLimiter(client, name, 10, HOUR, burst=2)
    limit.reserve(2)
    wait = limit.reserve(1)
    go_at = limit._clock() + wait
    calls: list[tuple[str, Callable[[], object]]] = [
        ("now", lambda: limit.reserve(1, now=bad)),
        ("go_at", lambda: limit.cancel(1, bad)),
        ("now", lambda: limit.cancel(1, go_at, now=bad)),
        ("amount", lambda: limit.cancel(bad, go_at)),
        ("now", lambda: limit.refund(1, now=bad)),
        ("now", lambda: limit.consume(1, now=bad)),
    ]
    for argument, call in calls:
        with pytest.raises(ValueError, match=rf"rate limiter '{name}': {argument} must be"):
            call()
    assert is_shared(limit)
    assert limit.status().available == pytest.approx(-1.0, abs=0.01)
    assert limit.cancel(1, go_at) == pytest.approx(1.0, abs=0.01)  # still in line
    assert is_shared(limit)


def test_an_idle_limiter_s_key_expires(redis_server: RedisServer, name: str) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    limit = RedisRateLimiter(connect_redis(redis_server.url), name, 10, 60.0)
    key = f"aegis:ratelimit:{{{name}}}"
    assert raw.exists(key) == 0  # nothing written before the first call
    limit.reserve(4)
    ttl_ms = raw.pttl(key)
    # Full again after 4 tokens at 10/min = 24 s, plus a second.
    assert 24_000 < ttl_ms <= 25_001  # rounded up to the millisecond
    limit.reserve(10)  # 4 s of queue, and 14 tokens to refill: 84 s
    assert 84_000 < raw.pttl(key) <= 85_001
    limit.status()  # reads never extend the life of the key
    assert raw.pttl(key) <= 85_001


def test_processes_sharing_one_budget_never_exceed_it(redis_server: RedisServer, name: str) -> None:
    processes, rate, attempts = 4, 50, 40
    barrier = ctx.Barrier(processes)
    out: multiprocessing.Queue[int] = ctx.Queue()
    procs = [
        ctx.Process(
            target=grab,
            args=(redis_server.url, name, rate, attempts, barrier, out),
        )
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    admitted = [out.get(timeout=50) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    assert sum(admitted) == rate  # 160 attempts, one budget of 50 (refill: 0.014/s)


def test_processes_queue_up_in_one_line(redis_server: RedisServer, name: str) -> None:
    processes, rate, each = 3, 10, 5
    barrier = ctx.Barrier(processes)
    out: multiprocessing.Queue[list[float]] = ctx.Queue()
    procs = [
        ctx.Process(
            target=queue_up,
            args=(redis_server.url, name, rate, each, barrier, out),
        )
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    waits = sorted(w for _ in procs for w in out.get(timeout=50))
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    # One shared line: every slot is handed out exactly once, whoever asked.
    per_token = HOUR / rate
    expected = [k * per_token for k in range(processes * each)]
    assert waits == pytest.approx(expected, abs=0.5)


def test_a_cancelled_async_waiter_gives_back_its_shared_reservation(
    client: RedisClient, name: str
) -> None:
    limit = RedisRateLimiter(client, name, 1, HOUR, burst=1)

    async def main() -> None:
        parked = asyncio.Event()

        async def park(seconds: float) -> None:
            parked.set()
            await asyncio.Event().wait()

        assert await limit.aacquire() == 0.0
        waiter = asyncio.create_task(limit.aacquire(sleep=park))
        await parked.wait()
        assert limit.status().waiting == 1
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)

    asyncio.run(main())  # waits for the executor, so the give-back round trip has finished
    status = limit.status()
    assert status.queued_s == 0.0
    assert status.available == pytest.approx(0.0, abs=0.01)
    assert status.waiting == 0


def test_falls_back_to_a_local_bucket_when_redis_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = connect_redis("redis://127.0.0.1:9/0", timeout_s=0.2)  # discard port: refused
    clock = FakeClock()
    limit = RedisRateLimiter(dead, "down", 2, 1.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="aegis_breaker._redis_ratelimit"):
        assert limit.try_acquire()
        assert limit.acquire(sleep=lambda s: pytest.fail("must not sleep")) == 0.0
        assert not limit.try_acquire()
        assert limit.reserve() == pytest.approx(0.5)
        assert limit.cancel(1, clock.now + 0.5) == 1.0
        limit.consume(1)
        assert limit.refund(1) == 1.0
        status = limit.status()
    assert not is_shared(limit)
    assert not status.shared
    assert status.available == 0.0
    assert "shared=False" in repr(limit)
    warnings = [r for r in caplog.records if "using a local bucket" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per call


def test_an_outage_and_recovery(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    clock = FakeClock()
    limit = RedisRateLimiter(
        connect_redis(own_redis_server.url), name, 3, HOUR, clock=clock, reconnect_interval_s=5.0
    )
    assert limit.try_acquire(3)
    with caplog.at_level(logging.WARNING, logger="aegis_breaker._redis_ratelimit"):
        own_redis_server.stop()
        # The local bucket starts where the shared one was (empty), not full: an outage is
        # no fresh budget.
        assert not limit.try_acquire()
        assert not is_shared(limit)
        own_redis_server.start()  # back, empty (no persistence), the script forgotten
        assert not limit.try_acquire()  # still local: the reconnect delay has not passed
        assert not is_shared(limit)
        clock.now += 5.0
        assert limit.try_acquire(3)  # a fresh shared bucket, through NOSCRIPT and a reload
        assert is_shared(limit)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("using a local bucket" in m for m in messages) == 1
    assert sum("Redis is back" in m for m in messages) == 1


def test_during_an_outage_each_process_takes_its_share_of_the_budget(
    own_redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    # Each process fell back to a full budget of its own, so N processes admitted N times
    # the rate (and N full bursts at once) for as long as Redis was down. Two processes are
    # played here by two limiters whose calls say they come from two processes (and which,
    # on clocks of their own, get local buckets of their own, as two processes would).
    process = ["a"]
    monkeypatch.setattr(_redis_ratelimit, "_process_id", lambda: process[0])
    clocks = {who: FakeClock() for who in "ab"}
    limits = {
        who: RedisRateLimiter(
            connect_redis(own_redis_server.url, timeout_s=1.0), name, 10, 1.0, clock=clock
        )
        for who, clock in clocks.items()
    }

    def admitted(count: int) -> list[int]:
        taken = []
        for who, limit in limits.items():
            process[0] = who
            taken.append(sum(limit.try_acquire() for _ in range(count)))
        return taken

    for _ in range(2):  # each has seen the other (the server counts sharers on each call)
        assert admitted(1) == [1, 1]
    own_redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="aegis_breaker._redis_ratelimit"):
        assert admitted(20) == [3, 3]  # half each of the 6 tokens left
        assert not any(is_shared(limit) for limit in limits.values())
        for clock in clocks.values():
            clock.now += 1.0  # a second: 10 tokens for the pair, 5 each
        assert admitted(20) == [5, 5]
        for limit in limits.values():
            assert limit.status().rate == 10  # the settings are unchanged; only the share
    assert caplog.text.count("with 1/2 of the budget") == 2


def test_limiters_of_one_process_count_once_and_status_readers_not_at_all(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    # Found by an adversarial review: every limiter object counted as a sharer for a minute
    # (a facade per job made many), and so did a dashboard reading status(): a lone process
    # fell back to 1/10 of its budget. A limiter made during the outage took a full bucket.
    clock = FakeClock()

    def limiter() -> RedisRateLimiter:
        client = connect_redis(own_redis_server.url, timeout_s=1.0)
        return RedisRateLimiter(client, name, 10, 1.0, clock=clock)

    for _ in range(9):  # nine short jobs, one after another
        assert limiter().try_acquire()
    readers = [limiter() for _ in range(3)]
    for reader in readers:
        reader.status()
    in_use = limiter()
    assert in_use.try_acquire()  # 0 tokens left: 10 taken in this second
    own_redis_server.stop()
    clock.now += 1.0  # a second later: the bucket is full again, all of it this process's
    with caplog.at_level(logging.WARNING, logger="aegis_breaker._redis_ratelimit"):
        assert sum(in_use.try_acquire() for _ in range(20)) == 10
        late = limiter()  # made during the outage: starts from what the process last saw
        assert sum(late.try_acquire() for _ in range(20)) == 0
        # Limiters alive at once split the process's share (each took all of it, found by
        # a second adversarial review: four limiters admitted four times the rate).
        clock.now += 1.0
        assert sum(lim.try_acquire() for lim in (in_use, late) for _ in range(20)) == 10
    assert "with all of the budget" in caplog.text


class GatedClient:
    """Holds the first script call until released, to cancel a caller during its round trip."""

    def __init__(self, inner: RedisClient) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self.armed = True

    def evalsha(self, sha: str, numkeys: int, /, *keys_and_args: str) -> object:
        if self.armed:
            self.armed = False
            self.entered.set()
            self.release.wait(10)
        return self.inner.evalsha(sha, numkeys, *keys_and_args)

    def script_load(self, script: str, /) -> object:
        return self.inner.script_load(script)


def test_a_limiter_made_during_an_outage_counts_the_refill_since_its_process_last_saw_redis(
    own_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Found by a second adversarial review: the process's last reply was taken as it was,
    # with no refill, so a queue long gone (10 turns) made the next job's limiter wait 10 s
    # on a bucket that had been full for a while.
    process_clock = FakeClock()  # the process's monotonic clock, as the share reads it
    monkeypatch.setattr(_redis_ratelimit, "time", SimpleNamespace(monotonic=process_clock))
    first = RedisRateLimiter(connect_redis(own_redis_server.url), name, 1, 1.0, burst=1)
    waits = [first.reserve() for _ in range(10)]
    assert waits[-1] == pytest.approx(9.0, abs=0.5)
    process_clock.now += 12.0  # the queue went through long ago
    own_redis_server.stop()
    second = RedisRateLimiter(connect_redis(own_redis_server.url, timeout_s=1.0), name, 1, 1.0)
    assert second.reserve() == 0.0


class FailingAfterGate(GatedClient):
    """The first call is held until released (then answered); every other call fails."""

    def evalsha(self, sha: str, numkeys: int, /, *keys_and_args: str) -> object:
        if self.armed:
            return super().evalsha(sha, numkeys, *keys_and_args)
        raise redis.ConnectionError("Redis went away")


def test_a_reply_sent_before_an_outage_does_not_end_it(client: RedisClient, name: str) -> None:
    # Found by an adversarial review: a reply in flight when another thread's call failed
    # switched the limiter back to "shared" (logging "Redis is back" with Redis down), and
    # its local bucket ran at the full rate rather than its share.
    gated = FailingAfterGate(client)
    limit = RedisRateLimiter(gated, name, 10, 1.0, reconnect_interval_s=5.0)
    first = threading.Thread(target=limit.try_acquire)
    first.start()
    assert gated.entered.wait(10)
    assert limit.try_acquire()  # fails over to the local bucket: Redis "went away"
    assert not is_shared(limit)
    gated.release.set()  # the reply sent before the outage lands now
    first.join(10)
    assert not is_shared(limit)


@pytest.mark.parametrize("queued", [False, True])
def test_a_task_cancelled_during_its_round_trip_gives_back_what_it_got(
    client: RedisClient, name: str, queued: bool
) -> None:
    gated = GatedClient(client)
    limit = RedisRateLimiter(gated, name, 1, HOUR, burst=1)
    if queued:
        gated.armed = False
        limit.reserve()  # the bucket is empty: the gated call will be queued behind it
        gated.armed = True

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(limit.aacquire())
        await loop.run_in_executor(None, gated.entered.wait)
        task.cancel()
        (outcome,) = await asyncio.gather(task, return_exceptions=True)
        assert isinstance(outcome, asyncio.CancelledError)
        gated.release.set()  # the reservation is made now, for a caller that is gone

    asyncio.run(main())  # waits for the executor, so the give-back has finished
    status = limit.status()
    assert status.queued_s == 0.0
    assert status.available == pytest.approx(0.0 if queued else 1.0, abs=0.01)


def test_an_interrupted_thread_gives_back_its_shared_reservation(
    client: RedisClient, name: str
) -> None:
    limit = RedisRateLimiter(client, name, 1, HOUR, burst=1)
    limit.acquire()

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        limit.acquire(sleep=interrupted)
    assert limit.status().queued_s == 0.0


class GarbageClient:
    def evalsha(self, sha: str, numkeys: int, /, *keys_and_args: str) -> object:
        return b"not a reply"

    def script_load(self, script: str, /) -> object:
        return None


def test_an_unexpected_reply_falls_back_to_the_local_bucket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limit = RedisRateLimiter(GarbageClient(), "garbage", 1, HOUR, burst=1)
    with caplog.at_level(logging.WARNING, logger="aegis_breaker._redis_ratelimit"):
        assert limit.try_acquire()
        assert not limit.try_acquire()
    assert not is_shared(limit)
    assert "unexpected reply" in caplog.text


def test_a_local_grant_of_a_cancelled_caller_goes_back_to_the_local_bucket() -> None:
    dead = connect_redis("redis://127.0.0.1:9/0", timeout_s=0.2)
    clock = FakeClock()
    limit = RedisRateLimiter(dead, "gone", 1, 1.0, burst=1, clock=clock)
    grant = limit._take(1, None)
    limit._give_back_grant(1, grant)
    assert limit.status().available == 1.0
    limit._take(1, None)
    grant = limit._take(1, None)
    assert grant[0] == 1.0
    limit._give_back_grant(1, grant)
    assert limit.status().queued_s == 0.0
    limit._give_back_grant(1, (-1.0, 0.0, False))  # refused: nothing to give back


@settings(max_examples=40, deadline=None)
@given(
    burst=st.integers(1, 10),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["reserve", "refund", "consume", "try", "cancel"]), st.integers(0, 12)
        ),
        max_size=25,
    ),
)
def test_the_script_and_the_local_bucket_agree(
    client: RedisClient, burst: int, ops: list[tuple[str, int]]
) -> None:
    """The Lua script is the local core's arithmetic: the same operations give the same bucket.

    A period of an hour keeps the refill during the test below a thousandth of a token.
    """
    clock = FakeClock()
    local = RateLimiter(10, HOUR, burst=burst, clock=clock)
    shared = RedisRateLimiter(client, f"test-{uuid.uuid4().hex}", 10, HOUR, burst=burst)
    pending: list[tuple[int, float, float]] = []  # amount, local go time, shared go time
    for op, number in ops:
        amount = number % (burst + 1)
        if op == "reserve":
            wait = local.reserve(amount)
            assert shared.reserve(amount) == pytest.approx(wait, abs=0.5)
            if wait > 0:
                pending.append((amount, clock.now + wait, shared._clock() + wait))
        elif op == "cancel" and pending:
            amount, local_go, shared_go = pending.pop()
            assert shared.cancel(amount, shared_go) == pytest.approx(
                local.cancel(amount, local_go), abs=0.01
            )
        elif op == "refund":
            assert shared.refund(number) == pytest.approx(local.refund(number), abs=0.01)
        elif op == "consume":
            local.consume(number)
            shared.consume(number)
        elif op == "try":
            assert shared.try_acquire(amount) == local.try_acquire(amount)
        ours, theirs = local.status(), shared.status()
        assert theirs.available == pytest.approx(ours.available, abs=0.01)
        assert theirs.queued_s == pytest.approx(ours.queued_s, abs=0.5)


def test_a_clock_reading_that_is_not_finite_never_reaches_the_shared_bucket(
    redis_server: RedisServer, name: str
) -> None:
    # Found by an adversarial review: one NaN reading of the limiter's clock made its
    # server-clock offset NaN; the next cancel sent a NaN go time, the script stored NaN,
    # and the shared bucket read back as full, its line and debt forgotten.
    raw = redis.Redis.from_url(redis_server.url)
    clock = FakeClock()
    limit = RedisRateLimiter(connect_redis(redis_server.url), name, 1, HOUR, burst=1, clock=clock)
    limit.reserve()
    for bad in (math.nan, math.inf, -math.inf):
        clock.now = bad
        limit.reserve()  # on the server's clock: fine; the offset keeps its last value
    clock.now = 100.0
    wait = limit.reserve()
    assert limit.cancel(1, clock.now + wait) == pytest.approx(1.0, abs=0.01)  # found
    fields = raw.hgetall(f"aegis:ratelimit:{{{name}}}")
    assert all(math.isfinite(float(v)) for v in fields.values())
    assert limit.status().available == pytest.approx(-3.0, abs=0.01)
    with pytest.raises(ValueError, match=rf"rate limiter '{name}': go_at 1e\+303 is too large"):
        limit.cancel(1, 1e303)
    assert is_shared(limit)


@pytest.mark.parametrize(
    ("field", "value"), [("tokens", "nan"), ("tokens", "inf"), ("tokens", "-inf"), ("ts", "nan")]
)
def test_a_corrupt_stored_field_neither_resets_nor_freezes_the_bucket(
    redis_server: RedisServer, name: str, field: str, value: str
) -> None:
    # A field that is not a finite number (written by someone else) read as missing, so
    # NaN tokens reset the bucket to full; it now reads as empty, refilling from now.
    raw = redis.Redis.from_url(redis_server.url)
    limit = RedisRateLimiter(connect_redis(redis_server.url), name, 10, HOUR, burst=10)
    limit.reserve(10)
    raw.hset(f"aegis:ratelimit:{{{name}}}", field, value)
    status = limit.status()
    assert math.isfinite(status.available)
    assert status.available <= 0.01  # not reset to full
    assert limit.reserve(1) == pytest.approx(HOUR / 10, rel=0.01)  # one token's refill
    assert is_shared(limit)


def test_a_corrupt_go_time_neither_freezes_the_line_nor_is_kept(
    redis_server: RedisServer, name: str
) -> None:
    # An infinite last_go made every wait infinite, for good.
    raw = redis.Redis.from_url(redis_server.url)
    key = f"aegis:ratelimit:{{{name}}}"
    limit = RedisRateLimiter(connect_redis(redis_server.url), name, 10, HOUR, burst=10)
    limit.reserve(5)
    raw.hset(key, "last_go", "inf")
    raw.rpush(f"{key}:line", "inf 1 0", "nan 1 0")
    status = limit.status()
    assert status.available == pytest.approx(5.0, abs=0.01)
    assert status.queued_s == 0.0
    assert limit.reserve(5) == 0.0
    assert limit.reserve(1) == pytest.approx(HOUR / 10, rel=0.01)
    line = [str(entry) for entry in raw.lrange(f"{key}:line", 0, -1)]
    assert "inf" not in line[0]
    assert "nan" not in line[0]  # the bad ones are gone
    assert all(math.isfinite(float(v)) for v in raw.hgetall(key).values())


def test_a_debt_no_float_can_count_is_refused_and_never_stored(
    redis_server: RedisServer, name: str
) -> None:
    # consume(1e308) stored a debt whose wait was +inf: every later caller waited forever.
    raw = redis.Redis.from_url(redis_server.url)
    limit = RedisRateLimiter(connect_redis(redis_server.url), name, 10, HOUR, burst=10)
    with pytest.raises(ValueError, match=rf"rate limiter '{name}': consume 1e\+308 would put"):
        limit.consume(1e308)
    limit.consume(4e299)
    assert is_shared(limit)
    # Deeper than the server counts: refused there (a store failure), then by the local
    # bucket, which holds this process's share of the same debt.
    with pytest.raises(ValueError, match="would put the bucket in a debt"):
        limit.consume(4e299)
    assert not is_shared(limit)
    stored = float(raw.hget(f"aegis:ratelimit:{{{name}}}", "tokens") or "nan")
    assert stored == pytest.approx(10 - 4e299)


def test_cancelling_a_shared_reservation_never_granted_gives_nothing_back(
    client: RedisClient, name: str
) -> None:
    # As RateLimiter: a go time matching none in line gave the amount back anyway.
    limit = RedisRateLimiter(client, name, 10, HOUR)
    limit.reserve(10)
    assert limit.cancel(10, limit._clock() + 5.0) == 0.0
    assert limit.status().available == pytest.approx(0.0, abs=0.01)
