"""RedisCircuitBreaker against a real redis-server: semantics, drivers, outages, the pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid

import pytest
import redis
from aegis_breaker import (
    AgentPool,
    BreakerEvent,
    CallRejected,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    CountWindow,
    Permit,
    RedisCircuitBreaker,
    RedisClient,
    StateChanged,
    TimeWindow,
    connect_redis,
    redis_agent_pool,
)
from hypothesis import given
from hypothesis import strategies as st

from tests.scale.conftest import RedisServer

pytestmark = pytest.mark.timeout(60)


class BoomError(Exception):
    pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _fail() -> None:
    raise BoomError


def state_of(breaker: CircuitBreaker | AgentPool) -> CircuitState:
    """Read the state through a call, so mypy does not narrow it across assertions."""
    return breaker.state


def is_shared(breaker: RedisCircuitBreaker) -> bool:
    """Read `shared` through a call, so mypy does not narrow it across assertions."""
    return breaker.shared


def _ok() -> int:
    return 42


@pytest.fixture(scope="module")
def client(redis_server: RedisServer) -> RedisClient:
    return connect_redis(redis_server.url)


@pytest.fixture
def name() -> str:
    return f"test-{uuid.uuid4().hex}"


def _pair(
    client: RedisClient, name: str, limit: int = 3, recovery_s: float = 60.0, **kwargs: object
) -> tuple[RedisCircuitBreaker, RedisCircuitBreaker]:
    """Two breakers on one name: two processes' views of one shared state."""
    one = RedisCircuitBreaker(client, name, limit, recovery_s, **kwargs)  # type: ignore[arg-type]
    two = RedisCircuitBreaker(client, name, limit, recovery_s, **kwargs)  # type: ignore[arg-type]
    return one, two


def _trip(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(BoomError):
            breaker.call(_fail)


def test_failures_anywhere_trip_it_everywhere(client: RedisClient, name: str) -> None:
    one, two = _pair(client, name, limit=3, recovery_s=60.0)
    _trip(one, 2)
    _trip(two, 1)
    assert state_of(one) is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as rejected:
        two.call(_ok)
    assert rejected.value.state == "open"
    assert rejected.value.breaker_name == name
    assert 59.0 < rejected.value.retry_after_s <= 60.0
    status = one.status()
    assert status["state"] == "open"
    assert status["consecutive_failures"] == 3
    assert status["shared"] is True


def test_a_success_anywhere_resets_the_count(client: RedisClient, name: str) -> None:
    one, two = _pair(client, name, limit=3)
    _trip(one, 2)
    assert two.call(_ok) == 42
    _trip(one, 2)
    assert state_of(two) is CircuitState.CLOSED
    assert two.consecutive_failures == 2


def test_late_results_never_transition(client: RedisClient, name: str) -> None:
    one, two = _pair(client, name, limit=1)
    late = one.admit()
    two.reset()  # no state change while CLOSED: the permit is still current
    assert late.generation == two.generation
    two.open_for(60.0)
    two.reset()  # OPEN -> CLOSED: two generations later
    late.failure(BoomError())
    assert state_of(one) is CircuitState.CLOSED
    assert one.consecutive_failures == 0


def test_probe_successes_close_and_a_probe_failure_reopens(client: RedisClient, name: str) -> None:
    one, two = _pair(client, name, limit=1, recovery_s=0.0, success_threshold=2,
                     half_open_max_calls=2)  # fmt: skip
    one.open_for(0.0)
    first, second = one.admit(), two.admit()
    assert first.is_probe
    assert second.is_probe
    with pytest.raises(CircuitOpenError) as full:
        one.admit()
    assert full.value.state == "half_open"
    first.success()
    assert state_of(two) is CircuitState.HALF_OPEN
    second.success()
    assert state_of(two) is CircuitState.CLOSED
    events: list[BreakerEvent] = []
    watcher = RedisCircuitBreaker(client, name, 1, 0.0, listeners=[events.append])
    one.open_for(0.0)
    probe = watcher.admit()
    probe.failure(BoomError())
    assert [(e.old, e.new) for e in events if isinstance(e, StateChanged)] == [
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.OPEN),  # reopened, with a fresh (zero) timer
    ]


def test_an_ignored_probe_gives_its_slot_back(client: RedisClient, name: str) -> None:
    one, two = _pair(client, name, limit=1, recovery_s=0.0)
    one.open_for(0.0)
    permit = one.admit()
    with pytest.raises(CircuitOpenError):
        two.admit()
    permit.ignore()
    again = two.admit()
    assert again.is_probe
    again.success()
    assert state_of(one) is CircuitState.CLOSED


def test_open_for_extends_but_never_shortens(client: RedisClient, name: str) -> None:
    one, two = _pair(client, name)
    one.open_for(30.0)
    two.open_for(5.0)
    assert 29.0 < one.retry_after_s <= 30.0
    two.open_for(90.0)
    assert 89.0 < one.retry_after_s <= 90.0
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        one.open_for(-1.0)
    two.reset()
    assert state_of(one) is CircuitState.CLOSED
    assert one.retry_after_s == 0.0


def test_listeners_hear_this_process_transitions_on_the_server_clock(
    client: RedisClient, name: str
) -> None:
    # `at` is the breaker's own clock, as for a local breaker; `shared_at` the server's.
    clock = FakeClock()
    events: list[BreakerEvent] = []
    one = RedisCircuitBreaker(client, name, 1, 60.0, clock=clock, listeners=[events.append])
    before = time.time()
    with pytest.raises(BoomError):
        one.call(_fail)
    clock.now += 1.0
    with pytest.raises(CircuitOpenError):
        one.call(_ok)
    after = time.time()
    changed, rejected = events
    assert isinstance(changed, StateChanged)
    assert (changed.old, changed.new, changed.breaker) == (
        CircuitState.CLOSED, CircuitState.OPEN, name,
    )  # fmt: skip
    assert changed.at == 100.0
    assert changed.shared_at is not None
    assert before - 1.0 < changed.shared_at < after + 1.0  # epoch seconds from Redis TIME
    assert isinstance(rejected, CallRejected)
    assert rejected.state is CircuitState.OPEN
    assert rejected.at == 101.0
    assert rejected.shared_at is not None
    assert changed.shared_at <= rejected.shared_at < after + 1.0
    assert 59.0 < rejected.retry_after_s <= 60.0


def test_shared_at_is_the_breaker_clock_without_the_server_clock(
    client: RedisClient, name: str
) -> None:
    clock = FakeClock()
    events: list[BreakerEvent] = []
    one = RedisCircuitBreaker(
        client, name, 1, 60.0, clock=clock, listeners=[events.append], server_clock=False
    )
    with pytest.raises(BoomError):
        one.call(_fail)
    (changed,) = events
    assert isinstance(changed, StateChanged)
    assert (changed.at, changed.shared_at) == (100.0, 100.0)


def test_decorator_and_context_manager(client: RedisClient, name: str) -> None:
    breaker = RedisCircuitBreaker(client, name, 2, 60.0)

    @breaker
    def double(x: int) -> int:
        return 2 * x

    assert double(4) == 8
    with breaker as permit:
        assert isinstance(permit, Permit)
    with pytest.raises(BoomError), breaker:
        raise BoomError
    assert breaker.consecutive_failures == 1
    with pytest.raises(BoomError), breaker:
        raise BoomError
    with pytest.raises(CircuitOpenError):
        double(1)


def test_async_drivers(client: RedisClient, name: str) -> None:
    breaker = RedisCircuitBreaker(client, name, 2, 0.0)

    async def ok() -> str:
        await asyncio.sleep(0)
        return "ok"

    @breaker
    async def boom() -> None:
        raise BoomError

    async def scenario() -> None:
        assert await breaker.acall(ok) == "ok"
        with pytest.raises(BoomError):
            await boom()
        with pytest.raises(BoomError):
            async with breaker:
                raise BoomError
        assert breaker.consecutive_failures == 2  # tripped; its zero timer is due at once
        permit = await breaker.aadmit()
        assert permit.is_probe
        with pytest.raises(CircuitOpenError):
            await breaker.aadmit()
        permit.success()
        async with breaker as inner:
            assert not inner.is_probe

    asyncio.run(scenario())
    assert state_of(breaker) is CircuitState.CLOSED


def test_a_cancelled_async_admission_gives_the_probe_back(client: RedisClient, name: str) -> None:
    breaker = RedisCircuitBreaker(client, name, 1, 0.0)
    breaker.open_for(0.0)

    async def scenario() -> None:
        waiting = asyncio.ensure_future(breaker.aadmit())
        await asyncio.sleep(0)  # let it start its round trip on the executor thread
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # The give-back runs when the round trip ends; the default executor is then idle.
        loop = asyncio.get_running_loop()
        await loop.shutdown_default_executor()

    asyncio.run(scenario())
    permit = breaker.admit()
    assert permit.is_probe


def test_unreachable_redis_falls_back_to_local_state_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = connect_redis("redis://127.0.0.1:9/0", timeout_s=0.2)  # discard port: refused
    clock = FakeClock()
    heard: list[BreakerEvent] = []
    breaker = RedisCircuitBreaker(
        dead, "nowhere", 2, 60.0, clock=clock, reconnect_interval_s=0.0, listeners=[heard.append]
    )
    with caplog.at_level(logging.WARNING, logger="aegis_breaker._redis_store"):
        assert breaker.call(_ok) == 42  # never worse than no breaker
        permit = breaker.admit()  # from the local state: its own generation, not an offset
        assert (permit.generation, permit.is_probe) == (0, False)
        permit.success()
        _trip(breaker, 2)
        with pytest.raises(CircuitOpenError):  # the local state still protects
            breaker.call(_ok)
    assert breaker.shared is False
    assert breaker.status()["shared"] is False
    # Decided on the local state: timed on the breaker's clock only.
    changed = [e for e in heard if isinstance(e, StateChanged)]
    assert [(e.new, e.at, e.shared_at) for e in changed] == [(CircuitState.OPEN, 100.0, None)]
    warnings = [r for r in caplog.records if "using local state" in r.getMessage()]
    assert len(warnings) == 1
    assert "'nowhere'" in warnings[0].getMessage()


def test_redis_restarting_mid_run(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    client = connect_redis(own_redis_server.url)
    breaker = RedisCircuitBreaker(client, "restart", 2, 60.0, clock=clock, reconnect_interval_s=5.0)
    other = RedisCircuitBreaker(client, "restart", 2, 60.0, clock=clock, reconnect_interval_s=5.0)
    assert breaker.call(_ok) == 42
    held = breaker.admit()  # admitted by Redis, reported during the outage
    other.open_for(60.0)
    assert state_of(breaker) is CircuitState.OPEN
    with caplog.at_level(logging.WARNING, logger="aegis_breaker._redis_store"):
        own_redis_server.stop()
        # Down: the local state (CLOSED) takes over; calls go through, one warning.
        assert [breaker.call(_ok) for _ in range(5)] == [42] * 5
        local = breaker.admit()
        held.failure(BoomError())  # lost: the shared state is unreachable
        assert not is_shared(breaker)
        own_redis_server.start()  # back, empty (no persistence), scripts forgotten
        assert breaker.call(_ok) == 42  # still within reconnect_interval_s: local
        assert not is_shared(breaker)
        clock.now += 5.0
        assert breaker.call(_ok) == 42  # tried again: shared state, NOSCRIPT handled
        assert is_shared(breaker)
        local.failure(BoomError())  # a local permit reports to the local state
        assert breaker.status()["consecutive_failures"] == 0  # the shared count
    messages = [r.getMessage() for r in caplog.records]
    assert sum("using local state" in m for m in messages) == 1
    assert sum("Redis is back" in m for m in messages) == 1
    _trip(other, 2)
    assert state_of(breaker) is CircuitState.OPEN  # sharing again


def test_redis_agent_pool_shares_each_keys_breaker(client: RedisClient, name: str) -> None:
    events: list[BreakerEvent] = []
    prefix = f"aegis:test:{name}"
    pool = redis_agent_pool(client, 2, 2, 60.0, key_prefix=prefix)
    twin = redis_agent_pool(client, 2, 2, 60.0, key_prefix=prefix, listeners=[events.append])
    assert isinstance(pool, AgentPool)
    assert isinstance(pool.breaker(), RedisCircuitBreaker)
    assert pool.run(_ok) == 42
    for _ in range(2):
        with pytest.raises(BoomError):
            pool.run_on("endpoint-a", _fail)
    with pytest.raises(CircuitOpenError):
        twin.run_on("endpoint-a", _ok)
    assert twin.run_on("endpoint-b", _ok) == 42
    assert state_of(twin) is CircuitState.OPEN
    # The twin hears its own rejection; the transition was made (and heard) by the other pool.
    assert [type(e) for e in events] == [CallRejected]
    twin.reset()
    assert state_of(pool.breaker("endpoint-a")) is CircuitState.CLOSED

    async def arun() -> int:
        async def ok() -> int:
            return 7

        return await pool.arun_on("endpoint-a", ok)

    assert asyncio.run(arun()) == 7


class GatedClient:
    """A real client whose every command waits for ``gate``: a call made on the event loop's
    thread would stall the loop, which is the only thing that can open the gate."""

    def __init__(self, inner: RedisClient) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.timed_out = False

    def evalsha(self, sha: str, numkeys: int, /, *keys_and_args: str) -> object:
        self.entered.set()
        if not self.gate.wait(10):
            self.timed_out = True  # the breaker falls back to local state; the test fails below
            raise ConnectionError("the gate never opened: the loop was blocked")
        return self.inner.evalsha(sha, numkeys, *keys_and_args)

    def script_load(self, script: str, /) -> object:
        return self.inner.script_load(script)


def test_pool_arun_on_keeps_redis_round_trips_off_the_loop(client: RedisClient, name: str) -> None:
    gated = GatedClient(client)
    pool = redis_agent_pool(gated, 2, 1, 60.0, key_prefix=f"aegis:test:{name}")

    async def fail() -> int:
        raise BoomError

    async def main() -> None:
        loop = asyncio.get_running_loop()
        call = asyncio.create_task(pool.arun_on("endpoint", fail))
        # The admission is now waiting in an executor thread; the loop runs on meanwhile.
        assert await loop.run_in_executor(None, gated.entered.wait, 10)
        gated.gate.set()
        with pytest.raises(BoomError):
            await call  # the failure's report also went through the executor
        with pytest.raises(CircuitOpenError):
            await pool.arun_on("endpoint", fail)

    asyncio.run(main())
    assert not gated.timed_out
    # The failure reached Redis: a pool on an ungated client sees the endpoint OPEN.
    other = redis_agent_pool(client, 2, 1, 60.0, key_prefix=f"aegis:test:{name}")
    assert state_of(other.breaker("endpoint")) is CircuitState.OPEN


def test_aadmit_of_a_local_breaker_never_awaits() -> None:
    breaker = CircuitBreaker(1, 60.0)

    async def main() -> None:
        permit = await breaker.aadmit()
        permit.failure(BoomError())
        with pytest.raises(CircuitOpenError):
            await breaker.aadmit()

    asyncio.run(main())
    assert state_of(breaker) is CircuitState.OPEN


def _ttl_ms(redis_server: RedisServer, key: str) -> int:
    """The key's remaining time to live in ms (-1: no expiry, -2: no key), read with redis-py."""
    return int(redis.Redis.from_url(redis_server.url).pttl(key))


def test_written_keys_expire_after_the_idle_expiry(
    redis_server: RedisServer, client: RedisClient, name: str
) -> None:
    key = f"aegis:breaker:{{{name}}}:state"
    breaker = RedisCircuitBreaker(client, name, 3, 60.0, idle_expiry_s=120.0)
    assert breaker.call(_ok) == 42
    assert _ttl_ms(redis_server, key) == -2  # reads and clean successes write nothing
    _trip(breaker, 1)
    assert 119_000 < _ttl_ms(redis_server, key) <= 120_000
    # While OPEN the keys outlive the open timer by the idle expiry.
    breaker.open_for(600.0)
    assert 719_000 < _ttl_ms(redis_server, key) <= 720_000
    # A probe is part of the one hash, so it expires with it.
    breaker.reset()
    breaker.open_for(0.0)
    permit = breaker.admit()
    assert permit.is_probe
    assert 119_000 < _ttl_ms(redis_server, key) <= 120_000
    permit.success()
    assert state_of(breaker) is CircuitState.CLOSED
    # An expired key reads as a fresh breaker, which is what every process then sees.
    _trip(breaker, 3)
    assert state_of(breaker) is CircuitState.OPEN
    redis.Redis.from_url(redis_server.url).delete(key)  # what the expiry does
    assert state_of(breaker) is CircuitState.CLOSED
    assert breaker.consecutive_failures == 0


def test_idle_expiry_none_keeps_keys_forever(
    redis_server: RedisServer, client: RedisClient, name: str
) -> None:
    pool = redis_agent_pool(client, 2, 1, 60.0, key_prefix=f"aegis:test:{name}", idle_expiry_s=None)
    with pytest.raises(BoomError):
        pool.run_on("endpoint", _fail)
    assert state_of(pool.breaker("endpoint")) is CircuitState.OPEN
    assert _ttl_ms(redis_server, f"aegis:test:{name}:{{endpoint}}:state") == -1


def test_settings_are_validated(client: RedisClient) -> None:
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="idle_expiry_s must be > 0 or None"):
            RedisCircuitBreaker(client, "x", idle_expiry_s=bad)
    with pytest.raises(ValueError, match="non-empty name"):
        RedisCircuitBreaker(client, "")
    with pytest.raises(ValueError, match="reconnect_interval_s"):
        RedisCircuitBreaker(client, "x", reconnect_interval_s=-1.0)
    with pytest.raises(ValueError, match="consecutive_failure_limit"):
        RedisCircuitBreaker(client, "x", 0)
    assert repr(RedisCircuitBreaker(client, "x")) == "RedisCircuitBreaker(name='x', shared=True)"


# -- the shared breaker behaves like the local one ------------------------------------------------

_OPS = st.lists(
    st.one_of(
        st.just(("admit", 0)),
        st.tuples(st.sampled_from(["success", "failure", "ignore"]), st.integers(0, 7)),
        st.just(("reset", 0)),
        st.just(("open", 0)),
        st.just(("state", 0)),
    ),
    max_size=30,
)


@given(ops=_OPS)
def test_same_decisions_as_the_local_breaker(
    client: RedisClient, ops: list[tuple[str, int]]
) -> None:
    # A zero recovery timeout and no probe expiry make both independent of time.
    settings = {"half_open_max_calls": 2, "success_threshold": 2, "half_open_max_wait_s": 1e6}
    local = CircuitBreaker(3, 0.0, clock=FakeClock(), **settings)  # type: ignore[arg-type]
    shared = RedisCircuitBreaker(client, f"model-{uuid.uuid4().hex}", 3, 0.0, **settings)  # type: ignore[arg-type]
    permits: list[tuple[Permit, Permit]] = []
    for op, index in ops:
        if op == "admit":
            outcomes: list[Permit | CircuitOpenError] = []
            for breaker in (local, shared):
                try:
                    outcomes.append(breaker.admit())
                except CircuitOpenError as exc:  # noqa: PERF203  # the rejection is compared
                    outcomes.append(exc)
            a, b = outcomes
            if isinstance(a, Permit):
                assert isinstance(b, Permit)
                assert a.is_probe == b.is_probe
                permits.append((a, b))
            else:
                assert isinstance(b, CircuitOpenError)
                assert a.state == b.state
        elif op in {"success", "failure", "ignore"} and permits:
            a, b = permits[index % len(permits)]
            for permit in (a, b):
                if op == "success":
                    permit.success()
                elif op == "failure":
                    permit.failure(BoomError())
                else:
                    permit.ignore()
        elif op == "reset":
            local.reset()
            shared.reset()
        elif op == "open":
            local.open_for(0.0)
            shared.open_for(0.0)
        assert state_of(local) is shared.state
        assert local.consecutive_failures == shared.consecutive_failures


_TIMED_OPS = st.lists(
    st.one_of(
        st.just(("admit", 0)),
        st.tuples(st.sampled_from(["success", "failure", "ignore"]), st.integers(0, 7)),
        st.just(("reset", 0)),
        st.tuples(st.just("open"), st.sampled_from([0, 1, 20])),
        st.tuples(st.just("advance"), st.sampled_from([0, 1, 5, 10, 25, 30])),
        st.tuples(st.just("operator"), st.sampled_from([2, 3, 4])),
    ),
    max_size=40,
)
_OPERATOR = {
    2: "transition_to_half_open",
    3: "force_open",
    4: "disable",
}


_WINDOW = CountWindow(
    size=4,
    minimum_calls=2,
    failure_rate_threshold=0.5,
    slow_call_duration_s=2.0,
    slow_call_rate_threshold=0.75,
)


# 5 s buckets: "advance" steps roll the window over bucket by bucket and all at once.
_TIME_WINDOW = TimeWindow(
    window_s=20.0,
    buckets=4,
    minimum_calls=2,
    failure_rate_threshold=0.5,
    slow_call_duration_s=2.0,
    slow_call_rate_threshold=0.75,
)
_POLICIES = pytest.mark.parametrize(
    "policy",
    [None, _WINDOW, _TIME_WINDOW],
    ids=["consecutive", "count-window", "time-window"],
)


@_POLICIES
@given(ops=_TIMED_OPS)
def test_same_decisions_as_the_local_breaker_as_time_passes(
    client: RedisClient, policy: CountWindow | TimeWindow | None, ops: list[tuple[str, int]]
) -> None:
    # Both breakers read one fake clock (the shared one with server_clock=False), so the open
    # timer, half-open, probe expiry and slow calls are compared too.
    clock = FakeClock()
    settings = {
        "half_open_max_calls": 2,
        "success_threshold": 2,
        "half_open_max_wait_s": 25.0,
        "policy": policy,
    }
    local = CircuitBreaker(3, 10.0, clock=clock, **settings)  # type: ignore[arg-type]
    shared = RedisCircuitBreaker(
        client,
        f"timed-{uuid.uuid4().hex}",
        3,
        10.0,
        clock=clock,
        server_clock=False,
        **settings,  # type: ignore[arg-type]
    )
    permits: list[tuple[Permit, Permit]] = []
    for op, value in ops:
        if op == "admit":
            outcomes: list[Permit | CircuitOpenError] = []
            for breaker in (local, shared):
                try:
                    outcomes.append(breaker.admit())
                except CircuitOpenError as exc:  # noqa: PERF203  # the rejection is compared
                    outcomes.append(exc)
            a, b = outcomes
            if isinstance(a, Permit):
                assert isinstance(b, Permit)
                assert a.is_probe == b.is_probe
                permits.append((a, b))
            else:
                assert isinstance(b, CircuitOpenError)
                assert (a.state, a.retry_after_s) == (b.state, b.retry_after_s)
        elif op in {"success", "failure", "ignore"} and permits:
            for permit in permits[value % len(permits)]:
                if op == "success":
                    permit.success()
                elif op == "failure":
                    permit.failure(BoomError())
                else:
                    permit.ignore()
        elif op == "reset":
            local.reset()
            shared.reset()
        elif op == "open":
            local.open_for(float(value))
            shared.open_for(float(value))
        elif op == "advance":
            clock.now += value
        elif op == "operator":
            getattr(local, _OPERATOR[value])()
            getattr(shared, _OPERATOR[value])()
        assert state_of(local) is shared.state
        assert local.consecutive_failures == shared.consecutive_failures
        assert local.retry_after_s == shared.retry_after_s
        mine, theirs = local.snapshot().to_dict(), shared.snapshot().to_dict()
        assert mine.pop("name") is None
        assert theirs.pop("name") == shared.name
        assert mine == theirs


def test_listeners_hear_other_processes_transitions(client: RedisClient, name: str) -> None:
    heard: list[BreakerEvent] = []
    remote_arrived = threading.Event()

    def listen(event: BreakerEvent) -> None:
        heard.append(event)
        if isinstance(event, StateChanged) and event.remote:
            remote_arrived.set()

    mine = RedisCircuitBreaker(client, name, 1, 60.0, listeners=[listen])
    other = RedisCircuitBreaker(client, name, 1, 60.0)  # another process's view
    assert state_of(mine) is CircuitState.CLOSED  # the first round trip subscribes
    with pytest.raises(BoomError):
        other.call(_fail)
    assert remote_arrived.wait(10.0)
    remote_arrived.clear()
    mine.reset()  # our own transition: emitted once, not heard back
    with pytest.raises(BoomError):
        other.call(_fail)
    assert remote_arrived.wait(10.0)
    changes = [(e.old, e.new, e.remote) for e in heard if isinstance(e, StateChanged)]
    CLOSED, OPEN = CircuitState.CLOSED, CircuitState.OPEN  # noqa: N806  # short names
    assert changes == [(CLOSED, OPEN, True), (OPEN, CLOSED, False), (CLOSED, OPEN, True)]
    remote = [e for e in heard if isinstance(e, StateChanged) and e.remote]
    # `at`: when this process heard it, on its clock; `shared_at`: the server's clock.
    assert all(e.breaker == name and e.at < 1e9 for e in remote)
    assert all(e.shared_at is not None and e.shared_at > 1e9 for e in remote)
    mine.close()
    mine.close()  # closing twice is fine
    mine.reset()  # the breaker works on without its subscription
    assert mine.call(_ok) == 42


def test_a_breaker_added_a_listener_later_subscribes_then(client: RedisClient, name: str) -> None:
    arrived = threading.Event()
    mine = RedisCircuitBreaker(client, name, 1, 60.0)
    other = RedisCircuitBreaker(client, name, 1, 60.0)
    mine.add_listener(lambda e: arrived.set() if isinstance(e, StateChanged) else None)
    assert state_of(mine) is CircuitState.CLOSED  # subscribes on this round trip
    other.open_for(5.0)
    assert arrived.wait(10.0)
    mine.close()


def test_operator_controls_reach_every_process(client: RedisClient, name: str) -> None:
    one, two = _pair(client, name, limit=1)
    one.force_open()
    with pytest.raises(CircuitOpenError) as caught:
        two.call(_ok)
    assert caught.value.state is CircuitState.FORCED_OPEN
    assert caught.value.retry_after_s == float("inf")
    assert two.retry_after_s == float("inf")
    two.open_for(5.0)  # the operator's choice wins
    assert state_of(one) is CircuitState.FORCED_OPEN
    one.disable()
    for _ in range(3):
        with pytest.raises(BoomError):
            two.call(_fail)  # admitted and measured, never tripping
    assert state_of(two) is CircuitState.DISABLED
    assert two.consecutive_failures == 3
    two.transition_to_half_open()
    permit = one.admit()
    assert permit.is_probe
    permit.success()
    assert state_of(two) is CircuitState.CLOSED


# Mostly calls, mostly successes: windows fill, roll over and reach half-open.
_CALL = st.tuples(
    st.just("call"),
    st.sampled_from(["success", "success", "success", "failure", "ignore"]),
    st.sampled_from([0.0, 0.0, 2.5]),
)
_CALL_OPS = st.lists(
    st.one_of(
        _CALL,
        _CALL,
        _CALL,
        st.tuples(st.just("advance"), st.just(""), st.sampled_from([1.0, 10.0, 30.0])),
        st.tuples(st.just("reset"), st.just(""), st.just(0.0)),
    ),
    max_size=60,
)


@pytest.mark.parametrize("policy", [_WINDOW, _TIME_WINDOW], ids=["count", "time"])
@given(ops=_CALL_OPS)
def test_a_shared_window_decides_as_the_local_one(
    client: RedisClient, policy: CountWindow | TimeWindow, ops: list[tuple[str, str, float]]
) -> None:
    _same_windows(client, ops, policy)


def _calls(pattern: str) -> list[tuple[str, str, float]]:
    """S/F/I: a quick success, failure or ignored call; s/f: a slow one; '+': 10 s pass."""
    names = {"s": "success", "f": "failure", "i": "ignore"}
    return [
        ("advance", "", 10.0)
        if c == "+"
        else ("call", names[c.lower()], 0.0 if c.isupper() else 2.5)
        for c in pattern
    ]


@pytest.mark.parametrize(
    "pattern",
    [
        "SSFSSSSSS",  # a failure rolls out of the full window
        "SSsSSsSSSS",  # slow calls roll out too
        "SSFSF+sS",  # trip, half-open: a slow probe and a quick one (2 of 2 permitted)
        "SSFSF+SF+SS",  # half-open reopens at 50%, then closes
        "SISIFIS",  # ignored calls never enter the window
    ],
)
@pytest.mark.parametrize("policy", [_WINDOW, _TIME_WINDOW], ids=["count", "time"])
def test_a_shared_window_rolls_over_as_the_local_one(
    client: RedisClient, pattern: str, policy: CountWindow | TimeWindow
) -> None:
    _same_windows(client, _calls(pattern), policy)


def test_a_shared_time_window_forgets_what_left_it(client: RedisClient) -> None:
    # Outcomes leave a 20 s window of 5 s buckets bucket by bucket, on both sides.
    _same_windows(client, _calls("SF++SSF++F"), _TIME_WINDOW)
    clock = FakeClock()
    shared = RedisCircuitBreaker(
        client,
        f"forget-{uuid.uuid4().hex}",
        clock=clock,
        server_clock=False,
        policy=_TIME_WINDOW,
    )
    assert shared.call(_ok) == 42
    clock.now += 5.0
    assert shared.call(_ok) == 42
    assert shared.snapshot().calls_in_window == 2
    clock.now += 20.0  # both buckets have left the window
    assert shared.snapshot().calls_in_window == 0
    with pytest.raises(BoomError):
        shared.call(_fail)  # alone in the window: below minimum_calls, so no verdict
    status = shared.snapshot()
    assert (status.calls_in_window, status.failed_calls, status.state) == (
        1, 1, CircuitState.CLOSED,
    )  # fmt: skip


def _same_windows(
    client: RedisClient, ops: list[tuple[str, str, float]], policy: CountWindow | TimeWindow
) -> None:
    # Whole calls, some slow, through both: the shared window (encoded in Redis) and the local
    # one must hold the same outcomes and trip and close on the same call.
    clock = FakeClock()
    settings = {"half_open_max_calls": 2, "policy": policy}
    local = CircuitBreaker(recovery_timeout_s=10.0, clock=clock, **settings)  # type: ignore[arg-type]
    shared = RedisCircuitBreaker(
        client,
        f"window-{uuid.uuid4().hex}",
        recovery_timeout_s=10.0,
        clock=clock,
        server_clock=False,
        **settings,  # type: ignore[arg-type]
    )
    for op, outcome, seconds in ops:
        if op == "call":
            admitted: list[Permit] = []
            for breaker in (local, shared):
                with contextlib.suppress(CircuitOpenError):  # both must reject alike
                    admitted.append(breaker.admit())
            assert len(admitted) in {0, 2}
            clock.now += seconds
            for permit in admitted:
                if outcome == "success":
                    permit.success()
                elif outcome == "failure":
                    permit.failure(BoomError())
                else:
                    permit.ignore()
        elif op == "advance":
            clock.now += seconds
        else:
            local.reset()
            shared.reset()
        mine, theirs = local.snapshot().to_dict(), shared.snapshot().to_dict()
        del mine["name"], theirs["name"]
        assert mine == theirs


class CountingClient:
    """Forwards to a real client and counts the scripts run: one per round trip."""

    def __init__(self, inner: RedisClient) -> None:
        self.inner = inner
        self.sent = 0

    def evalsha(self, sha: str, numkeys: int, /, *keys_and_args: str) -> object:
        self.sent += 1
        return self.inner.evalsha(sha, numkeys, *keys_and_args)

    def script_load(self, script: str, /) -> object:
        return self.inner.script_load(script)


@pytest.mark.parametrize(
    ("policy", "success_trips", "failure_trips"),
    [(None, 1, 2), (_WINDOW, 2, 2), (_TIME_WINDOW, 2, 2)],
    ids=["consecutive", "count-window", "time-window"],
)
def test_round_trips_per_call_while_closed(
    client: RedisClient,
    name: str,
    policy: CountWindow | TimeWindow | None,
    success_trips: int,
    failure_trips: int,
) -> None:
    # Admitting reads once; a success that changes nothing writes nothing; anything else is
    # one compare-and-set (more only when another writer got there first).
    counting = CountingClient(client)
    breaker = RedisCircuitBreaker(counting, name, 10**6, policy=policy)
    assert breaker.call(_ok) == 42  # loads the script on first use
    counting.sent = 0
    for _ in range(5):
        assert breaker.call(_ok) == 42
    assert counting.sent == 5 * success_trips
    counting.sent = 0
    with pytest.raises(BoomError):
        breaker.call(_fail)
    assert counting.sent == failure_trips


def test_a_lost_race_is_decided_again_on_the_current_state(client: RedisClient, name: str) -> None:
    # Two processes admit on the same state; the second one's report conflicts with the
    # first one's write and is decided again: both failures count, the breaker trips once.
    one, two = _pair(client, name, limit=2)
    first, second = one.admit(), two.admit()
    first.failure(BoomError())
    second.failure(BoomError())
    assert state_of(one) is CircuitState.OPEN
    assert one.generation == two.generation == 1
