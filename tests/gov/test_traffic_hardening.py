"""Traffic governance under a hostile provider: refusals, stalls and lying headers are bounded.

Found by an adversarial pass after the refusal rule landed: a provider answering 503 to every
call while others were in flight was taken as "full" for ever (no budget spent, no breaker);
tasks queued behind a call that never ends waited for ever; one 429 with a Retry-After of a
billion seconds closed the endpoint for good; and requests bigger than a second's worth of
declared tokens were paced as if they were small.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import attrs
import pytest
from aegis_breaker import RateLimitExceededError
from aegis_gov import (
    AgentConfig,
    AgentPool,
    ChatResponse,
    CircuitOpenError,
    CircuitState,
    Limits,
    Message,
    OpenMultiAgent,
    ProviderUnavailableError,
    RateLimitError,
    RetryPolicy,
    RunEvent,
    ScriptedAdapter,
    Task,
    TaskStarted,
    TaskState,
    ToolSpec,
)
from aegis_gov._adaptive import AdaptiveLimit
from aegis_gov._conversation import Conversation, Sleep
from aegis_gov._errors import EndpointBusyError
from aegis_gov._limits import EndpointLimiter
from aegis_gov._outcome import Failure, Raised

from tests.gov.conftest import FakeClock


class _AlwaysBusy(ScriptedAdapter):
    """Answers every call "overloaded" (503), after the other calls of its wave came in."""

    def __init__(self) -> None:
        super().__init__(["unused"], name="m")
        self.requests = 0

    async def achat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ChatResponse:
        self.requests += 1
        for _ in range(3):  # let the other tasks' calls start: each 503 finds them in flight
            await asyncio.sleep(0)
        raise ProviderUnavailableError("m", "The engine is currently overloaded", status_code=503)


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "adaptive"])
def test_a_provider_that_refuses_everything_is_down_not_full(declared: bool) -> None:
    provider = _AlwaysBusy()
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=4),
        default_adapter=provider,
        retry=RetryPolicy(max_attempts=2, initial_delay_s=0.001, max_total_delay_s=5.0),
        limits={"m": Limits(max_concurrent=4)} if declared else None,
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    tasks = [Task(f"t{i}", agent="w") for i in range(4)]
    result = asyncio.run(oma.arun_tasks(tasks, team, run_timeout_s=60))
    assert {r.status for r in result.values()} == {TaskState.FAILED}
    assert not result.cancelled  # they gave up on their own, long before the run's deadline
    # At most a few waves of refusals, then failures that spend the retry budget; it used
    # to go on at ~40 requests a second until the run was cancelled.
    assert provider.requests <= 40, provider.requests


def test_refusals_with_no_answer_between_stop_reading_as_full() -> None:
    limit = AdaptiveLimit(max_limit=4)
    for _ in range(5):
        assert limit.try_acquire()
        limit.release(overloaded=True, refused=True)
    assert limit.refusals == 5
    assert limit.try_acquire()
    limit.release(overloaded=False)  # an answer: the endpoint is alive, only full
    assert limit.refusals == 0


def _conversation(clock: FakeClock, retry: RetryPolicy) -> Conversation:
    import random  # noqa: PLC0415

    return Conversation(
        agent="w",
        prompt="hi",
        system=None,
        tools=(),
        retry=retry,
        rng=random.Random(0),
        emit=lambda _event: None,
        endpoint="e",
    )


def test_a_queue_that_has_not_moved_for_the_whole_budget_is_given_up(clock: FakeClock) -> None:
    retry = RetryPolicy(max_total_delay_s=10.0)
    steps = _conversation(clock, retry).steps()
    next(steps)  # the first request
    waited = steps.send(Raised(EndpointBusyError("e", 1, stalled_s=5.0)))
    assert type(waited).__name__ == "Sleep"  # still moving recently enough: queue on
    next(steps)  # the request again, after the wait
    stuck = EndpointBusyError("e", 1, stalled_s=10.5)
    with pytest.raises(StopIteration) as stop:
        steps.send(Raised(stuck))
    outcome = stop.value.value
    assert isinstance(outcome, Failure)
    assert outcome.error is stuck
    assert "none started or ended in 10.5 s" in str(stuck)


@pytest.mark.parametrize(
    ("queued", "max_delay_s", "low", "high"),
    [(False, 30.0, 0.25, 0.5), (True, 30.0, 2.5, 5.0), (True, 2.0, 1.0, 2.0)],
    ids=["not-queued", "queued", "queued-short-max-delay"],
)
def test_a_task_queued_for_a_busy_endpoint_looks_again_only_rarely(
    clock: FakeClock, queued: bool, max_delay_s: float, low: float, high: float
) -> None:
    # Queued to be woken when a call ends, a task needs no half-second polling: the wait
    # is a safety net (up to 5 s, at most max_delay_s), and it spends no budget.
    retry = RetryPolicy(initial_delay_s=0.5, max_delay_s=max_delay_s, max_total_delay_s=10.0)
    steps = _conversation(clock, retry).steps()
    next(steps)
    for _ in range(20):  # however many times: no budget spent, no failure
        waited = steps.send(Raised(EndpointBusyError("e", 1, queued=queued)))
        assert isinstance(waited, Sleep)
        assert low <= waited.seconds <= high
        next(steps)


def test_the_caller_gives_up_a_queue_behind_a_call_that_never_ends(clock: FakeClock) -> None:
    # A wedged first call (a stream that only sends keep-alives); a second call refused
    # beside it (503) cuts the limit to 1 and queues. The queue never moves: past the retry
    # budget (120 s of the fake clock) the second task gives up instead of waiting for ever.
    held = asyncio.Event()

    class Wedged(ScriptedAdapter):
        async def achat(
            self,
            messages: Sequence[Message],
            *,
            system: str | None = None,
            tools: Sequence[ToolSpec] = (),
        ) -> ChatResponse:
            if not held.is_set():
                held.set()
                await asyncio.Event().wait()  # a call that never ends
            raise ProviderUnavailableError(
                "m", "The engine is currently overloaded", status_code=503
            )

    adapter = Wedged(["unused"], name="m")
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=8, clock=clock),
        default_adapter=adapter,
        clock=clock,
        async_sleep=clock.async_sleep,
    )
    agent = AgentConfig(name="w")

    async def main() -> EndpointBusyError:
        first = asyncio.ensure_future(oma.arun_agent(agent, "one"))
        await held.wait()
        try:
            await oma.arun_agent(agent, "two")
        except EndpointBusyError as exc:
            return exc
        finally:
            first.cancel()
        raise AssertionError("the second call should have given up on the queue")

    busy = asyncio.run(main())
    assert busy.stalled_s > 120.0
    assert "none started or ended in" in str(busy)


def test_a_queue_behind_a_declared_limit_waits_however_slow_the_calls(clock: FakeClock) -> None:
    # A declared max_concurrent is all the endpoint allows: a slow call ahead is no fault.
    caller = OpenMultiAgent(clock=clock, limits={"m": Limits(max_concurrent=1)})._caller
    adapter = ScriptedAdapter(["ok"], name="m")
    key = adapter.endpoint.key
    assert caller.adaptive_limit(key, adapter).try_acquire()  # the one place, taken
    caller._progress[key] = 0.0
    clock.sleep(1000.0)
    from aegis_gov._caller import _Turn  # noqa: PLC0415

    with pytest.raises(EndpointBusyError) as raised:
        caller._start(adapter, key, _Turn(0.0, None, 0.0, None, 0), None, None)
    assert raised.value.stalled_s == 0.0


def test_a_huge_retry_after_holds_the_endpoint_no_longer_than_the_policy_waits(
    clock: FakeClock,
) -> None:
    lie = RateLimitError("m", "slow down", status_code=429, retry_after_s=1e9)
    adapter = ScriptedAdapter([lie, "fine"], name="m")
    retry = RetryPolicy(max_delay_s=30.0)
    oma = OpenMultiAgent(
        AgentPool(clock=clock), default_adapter=adapter, retry=retry, clock=clock, sleep=clock.sleep
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    first = oma.run_tasks([Task("a", agent="w")], team)
    assert first["a"].status is TaskState.FAILED  # it would not wait a billion seconds
    # The endpoint is held (in its pace; the circuit stays closed) for the policy's
    # longest wait, not the billion seconds: the next task waits that, then is answered.
    assert oma.pool.breaker(adapter.endpoint.key).state is CircuitState.CLOSED
    # The hold is visible: get_status() says how long is left, and so does the live table.
    adaptive = oma.get_status().endpoints[adapter.endpoint.key].adaptive
    assert adaptive is not None
    assert adaptive.held_s == pytest.approx(30.0, abs=0.01)
    assert oma.get_status().to_dict()["endpoints"] == {
        adapter.endpoint.key: oma.get_status().endpoints[adapter.endpoint.key].to_dict()
    }
    assert oma.get_status().endpoints[adapter.endpoint.key].to_dict()["adaptive"] == (
        attrs.asdict(adaptive)
    )
    start = clock.now
    second = oma.run_tasks([Task("b", agent="w")], team)
    assert second["b"].status is TaskState.DONE
    assert second["b"].output == "fine"
    assert clock.now - start == pytest.approx(30.0, abs=0.01)
    adaptive = oma.get_status().endpoints[adapter.endpoint.key].adaptive
    assert adaptive is not None
    assert adaptive.held_s == 0.0


def test_a_request_bigger_than_a_seconds_tokens_is_charged_in_full(clock: FakeClock) -> None:
    # 600 tokens a minute: the bucket holds 10 (a second's worth) and refills 10 a second.
    limiter = EndpointLimiter(Limits(tokens_per_minute=600), name="m", clock=clock)
    wait, taken, _ = limiter.reserve(100)
    assert (wait, taken) == (0.0, 100.0)  # a full bucket: it goes now, the rest is debt
    wait, _, _ = limiter.reserve(10)
    # The next one waits for the debt of 90 and its own 10 to be refilled: 10 s.
    assert wait == pytest.approx(10.0)


def test_a_token_wait_past_the_limit_names_the_requests_tokens(clock: FakeClock) -> None:
    # The bucket is asked for at most its second's worth (10 here); the message quoted that
    # ("10 would have to wait ...") instead of the request's own tokens.
    limiter = EndpointLimiter(Limits(tokens_per_minute=600), name="m", clock=clock)
    limiter.reserve(1000)  # an answer far over a second's worth: 99 s of debt
    with pytest.raises(
        RateLimitExceededError, match=r"tokens': 25 would have to wait 10\d\."
    ) as info:
        limiter.reserve(25, max_wait_s=5.0)
    assert info.value.amount == 25
    assert limiter.reserve(0)[0] == pytest.approx(99.0)  # nothing of the refused one stayed


def test_an_async_run_parks_any_number_of_tasks_of_a_sick_endpoint() -> None:
    # Forty tasks on an endpoint held by 429s, declared first, then six on a healthy one,
    # two slots: the healthy tasks used to wait for the outage to end once sixteen were
    # parked. Now all forty park and the healthy ones run meanwhile.
    outage_over = asyncio.Event()
    order: list[str] = []

    def sick(_messages: Sequence[Message]) -> ChatResponse:
        if not outage_over.is_set():
            raise RateLimitError("sick", "slow down", status_code=429, retry_after_s=0.05)
        order.append("sick")
        return ChatResponse("late")

    def healthy(_messages: Sequence[Message]) -> ChatResponse:
        order.append("healthy")
        if order.count("healthy") == 6:
            outage_over.set()  # the sick endpoint recovers only once the healthy work is done
        return ChatResponse("ok")

    oma = OpenMultiAgent(
        AgentPool(max_concurrent=2),
        retry=RetryPolicy(max_attempts=1000, max_delay_s=1.0, max_total_delay_s=60.0),
    )
    team = OpenMultiAgent.create_team(
        "t",
        AgentConfig(name="a", adapter=ScriptedAdapter(sick, name="sick")),
        AgentConfig(name="b", adapter=ScriptedAdapter(healthy, name="healthy")),
    )
    tasks = [Task(f"a{i}", agent="a") for i in range(40)]
    tasks += [Task(f"b{i}", agent="b") for i in range(6)]
    result = asyncio.run(oma.arun_tasks(tasks, team, run_timeout_s=60))
    assert {r.status for r in result.values()} == {TaskState.DONE}
    assert order[:6] == ["healthy"] * 6  # no sick answer before every healthy one


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
def test_a_task_given_up_while_waiting_its_turn_gives_the_turn_back(
    clock: FakeClock, use_async: bool
) -> None:
    from aegis_gov._caller import _Turn  # noqa: PLC0415

    limiter = EndpointLimiter(Limits(requests_per_minute=60), name="m", clock=clock)
    assert limiter.reserve(0)[:2] == (0.0, 0.0)  # the one in the bucket
    wait, taken, gos = limiter.reserve(0)
    assert wait == pytest.approx(1.0)  # the next turn, a second off: this task waits for it
    assert gos[0] == pytest.approx(1.0)
    caller = OpenMultiAgent(clock=clock)._caller
    turn = _Turn(wait, limiter, taken, None, 0, go_at=gos)

    def cancelled(_seconds: float) -> None:
        raise KeyboardInterrupt  # Ctrl-C, a deadline: the task is given up mid-wait

    async def acancelled(_seconds: float) -> None:
        raise asyncio.CancelledError

    if use_async:
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(caller._await_turn("m", turn, acancelled, None))
    else:
        with pytest.raises(KeyboardInterrupt):
            caller._wait_turn("m", turn, cancelled, None)
    # Its turn went back: the next task waits one second, not two.
    assert limiter.reserve(0)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("tokens", [False, True], ids=["requests", "requests+tokens"])
def test_a_whole_queue_given_up_leaves_no_turns_behind(clock: FakeClock, tokens: bool) -> None:
    # Found by an adversarial review: a run timed out with tasks waiting their turns at 60
    # requests a minute gives them up front first. Each had later ones scheduled behind
    # it, so no turn came back, and the facade's next one-task run waited 15.5-16.5 s for
    # requests never sent (28 s with 150 tasks). Go times are read again after reserving
    # (off by microseconds) and, with a token budget, differ between the two buckets.
    limits = Limits(requests_per_minute=60, tokens_per_minute=60_000 if tokens else None)
    limiter = EndpointLimiter(limits, name="m", clock=clock)
    limiter.reserve(10)
    turns = []
    for _ in range(15):
        _wait, taken, gos = limiter.reserve(10)
        turns.append((taken, gos))
    clock.sleep(0.5)
    for taken, gos in turns:  # front first, as a run's deadline gives them up
        limiter.cancel_waiting(taken, (gos[0] + 1e-6, gos[1] + 1e-6))
    assert limiter.reserve(10)[0] == pytest.approx(0.5)  # the next second's turn, not 16 s


def test_a_threaded_run_returns_once_its_given_up_waiters_gave_their_turns_back() -> None:
    # Found by an adversarial review: a threaded run cancelled with 35 tasks waiting their
    # turns at 300 a minute returned before their threads woke to give the turns back, and
    # a run started at once queued behind them (5.8-7.0 s for one task instead of 0.2 s).
    cancel = threading.Event()
    adapter = ScriptedAdapter(["ok"] * 100)
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=8),
        default_adapter=adapter,
        limits={adapter.endpoint.key: Limits(requests_per_minute=300)},
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))

    started: list[str] = []

    def on_event(event: RunEvent) -> None:
        if isinstance(event, TaskStarted):
            started.append(event.task_id)
            if len(started) == 40:  # every task started; all but a few wait their turns
                cancel.set()

    work = [Task(f"t{i}", agent="w") for i in range(40)]
    result = oma.run_tasks(work, team, on_event=on_event, cancel=cancel, cancel_grace_s=0.0)
    assert sum(r.status is TaskState.FAILED for r in result.values()) > 30
    status = oma.get_status().endpoints[adapter.endpoint.key].adaptive
    assert status is not None
    assert status.paced == 0  # every turn given back by the time the run returned
    limiter = oma._caller._limiter(adapter, adapter.endpoint.key)
    assert limiter is not None
    assert limiter.requests is not None
    assert limiter.requests.status().queued_s == 0.0


def test_a_call_the_circuit_turns_away_gives_its_declared_turn_back(clock: FakeClock) -> None:
    # Found by an adversarial review: a task parked behind an open circuit spent a declared
    # turn each time it looked again, so the declared queue grew for as long as the circuit
    # was open (37 s of turns for nothing sent) and the endpoint crawled after it closed.
    from aegis_gov._caller import _Call, _Turn  # noqa: PLC0415

    limiter = EndpointLimiter(Limits(requests_per_minute=60), name="m", clock=clock)
    caller = OpenMultiAgent(clock=clock)._caller
    wait, taken, _ = limiter.reserve(0)
    assert wait == 0.0
    limit = AdaptiveLimit(max_limit=1)
    assert limit.try_acquire()
    call = _Call(caller, "m", limit, _Turn(wait, limiter, taken, None, 0))
    call.rejected(CircuitOpenError("m", 5.0), None, None)
    call.settle()
    assert limiter.reserve(0)[:2] == (0.0, 0.0)  # the turn came back: the next one goes at once


def test_a_limits_key_that_is_not_a_name_is_blamed_not_its_value() -> None:
    with pytest.raises(TypeError, match=r"limits keys must be model names \(str\), got 1"):
        OpenMultiAgent(limits={1: Limits()})  # type: ignore[dict-item]


def test_a_declared_turn_past_the_budget_fails_at_once_instead_of_polling(
    clock: FakeClock,
) -> None:
    times: list[float] = []

    def reply(_messages: Sequence[Message]) -> ChatResponse:
        times.append(clock.now)
        return ChatResponse("ok")

    oma = OpenMultiAgent(
        AgentPool(max_concurrent=1, clock=clock),
        default_adapter=ScriptedAdapter(reply, name="m"),
        clock=clock,
        sleep=clock.sleep,
        retry=RetryPolicy(max_total_delay_s=10.0),
        limits={"m": Limits(requests_per_minute=1)},  # the next turn is a minute off
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    result = oma.run_tasks([Task("a", agent="w"), Task("b", agent="w")], team)
    assert result["a"].status is TaskState.DONE
    assert result["b"].status is TaskState.FAILED
    assert result["b"].error_type == "RateLimitExceededError"
    assert clock.now < 1.0  # it used to poll every half second for the whole 10 s budget
    assert times == [0.0]


def test_a_429_about_concurrent_requests_still_teaches_the_pace() -> None:
    calls = 0

    class Worded(ScriptedAdapter):
        async def achat(
            self,
            messages: Sequence[Message],
            *,
            system: str | None = None,
            tools: Sequence[ToolSpec] = (),
        ) -> ChatResponse:
            nonlocal calls
            calls += 1
            number = calls
            for _ in range(1 if number <= 3 else 3):  # three answer first, two stay in flight
                await asyncio.sleep(0)
            if number == 4:  # a rate limit, worded as some providers word it
                raise RateLimitError("m", "Too many concurrent requests", status_code=429)
            return ChatResponse("ok")

    adapter = Worded(["unused"], name="m")
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=4),
        default_adapter=adapter,
        retry=RetryPolicy(initial_delay_s=0.001),
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    result = asyncio.run(oma.arun_tasks([Task(f"t{i}", agent="w") for i in range(5)], team))
    assert {r.status for r in result.values()} == {TaskState.DONE}
    adaptive = oma.get_status().endpoints[adapter.endpoint.key].adaptive
    assert adaptive is not None
    assert adaptive.rate_per_s is not None  # learned from the 429, refusal or not


def test_after_an_outage_of_500s_the_probe_is_followed_by_half_the_former_load(
    clock: FakeClock,
) -> None:
    # 500s are no overload: they never cut the limit, so a successful probe used to be
    # followed at once by the whole former load. The circuit opening now marks an outage.
    adapter = ScriptedAdapter(
        [ProviderUnavailableError("m", "The server had an error", status_code=500), "ok"],
        name="m",
    )
    oma = OpenMultiAgent(
        AgentPool(
            max_concurrent=8, consecutive_failure_limit=1, recovery_timeout_s=5.0, clock=clock
        ),
        default_adapter=adapter,
        clock=clock,
        sleep=clock.sleep,
        retry=RetryPolicy(max_attempts=3),
    )
    assert oma.run_agent(AgentConfig(name="w"), "hi").output == "ok"
    adaptive = oma.get_status().endpoints[adapter.endpoint.key].adaptive
    assert adaptive is not None
    assert adaptive.limit == 4  # half of 8, growing back by one per success


def test_an_outage_remembers_the_limit_to_climb_back_to() -> None:
    limit = AdaptiveLimit(max_limit=8)
    limit.outage()
    limit.recovered()
    assert limit.limit == 4
    for _ in range(10):
        for _ in range(limit.limit):
            assert limit.try_acquire()
        for _ in range(limit.in_flight):
            limit.release(overloaded=False)
    assert limit.limit == 8


def test_tasks_given_a_long_retry_after_move_to_their_fallback_at_once(
    clock: FakeClock,
) -> None:
    # Every request to the primary draws a 429 asking for 20 s; the backup is healthy. The
    # tasks whose own request drew the 429 used to sleep out the 20 s, retry, draw another,
    # and fall over only after max_attempts (40 s in all); tasks arriving later moved on at
    # once. Now every one moves on at once.
    primary = ScriptedAdapter(
        [RateLimitError("p", "slow down", status_code=429, retry_after_s=20.0)],
        name="primary",
        cycle=True,
    )
    backup = ScriptedAdapter(["ok"], name="backup", cycle=True)
    oma = OpenMultiAgent(AgentPool(max_concurrent=4, clock=clock), clock=clock, sleep=clock.sleep)
    team = OpenMultiAgent.create_team(
        "t", AgentConfig(name="w", adapter=primary, fallbacks=[backup])
    )
    result = oma.run_tasks([Task(f"t{i}", agent="w") for i in range(8)], team)
    assert {r.status for r in result.values()} == {TaskState.DONE}
    assert {r.endpoint for r in result.values()} == {backup.endpoint.key}
    assert max(clock.sleeps, default=0.0) < 1.0, clock.sleeps  # nobody waited the 20 s
    assert len(primary.calls) <= 8


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
def test_an_endpoint_answering_only_429s_with_retry_after_opens_its_circuit(
    use_async: bool,
) -> None:
    # Every request draws a 429 with a short Retry-After and nothing is ever answered. Its
    # 429s never counted against the breaker, and waits for its holds spend no budget, so
    # the endpoint went one request per Retry-After and 50 tasks never gave up (the
    # attacker's run: 56 requests in 90 s, none failed). Past the 429s a pacing provider
    # may send with nothing answered, they count: the circuit opens and tasks give up.
    provider = ScriptedAdapter(
        [RateLimitError("m", "slow down", status_code=429, retry_after_s=0.05)],
        name="m",
        cycle=True,
    )
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=4, recovery_timeout_s=60.0),
        default_adapter=provider,
        retry=RetryPolicy(max_attempts=3, max_total_delay_s=5.0),
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    tasks = [Task(f"t{i}", agent="w") for i in range(20)]
    result = (
        asyncio.run(oma.arun_tasks(tasks, team, run_timeout_s=60))
        if use_async
        else oma.run_tasks(tasks, team, run_timeout_s=60)
    )
    assert {r.status for r in result.values()} == {TaskState.FAILED}
    assert not result.cancelled
    assert oma.pool.breaker(provider.endpoint.key).state is CircuitState.OPEN
    assert len(provider.calls) <= 30
