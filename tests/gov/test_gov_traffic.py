"""Runs keep flowing when a provider degrades: parked waits and half-open circuits."""

from __future__ import annotations

import asyncio
import itertools
import math
import pickle
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from fractions import Fraction

import pytest
from aegis_gov import (
    AgentConfig,
    AgentPool,
    ChatResponse,
    CircuitState,
    CircuitStateChanged,
    Limits,
    Message,
    OpenMultiAgent,
    ProviderUnavailableError,
    RateLimitError,
    RetryAfterTooLongError,
    RetryPolicy,
    RunEvent,
    ScriptedAdapter,
    Task,
    TaskRetrying,
    TaskStarted,
    TaskState,
    TaskSucceeded,
    Team,
    ToolSpec,
)
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from tests.gov.conftest import FakeClock


def _down(_messages: Sequence[Message]) -> str:
    raise ProviderUnavailableError("bad", "HTTP 500")


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
def test_tasks_waiting_on_a_failing_provider_do_not_hold_the_healthy_ones_back(
    use_async: bool,
) -> None:
    # Two slots, both first taken by tasks of a failing endpoint. While they wait out their
    # retry delays they give their slots up, so the healthy endpoint's task runs meanwhile.
    # (Before, it waited for the failing tasks to give up: their waits below would time out.)
    healthy_done = threading.Event()
    waits_cut_short: list[bool] = []

    def sleep(_seconds: float) -> None:
        waits_cut_short.append(healthy_done.wait(timeout=10))

    async def async_sleep(seconds: float) -> None:
        await asyncio.to_thread(sleep, seconds)

    def on_event(event: RunEvent) -> None:
        if isinstance(event, TaskSucceeded) and event.task_id == "good":
            healthy_done.set()

    team = OpenMultiAgent.create_team(
        "t",
        AgentConfig(name="bad", adapter=ScriptedAdapter(_down, name="bad")),
        AgentConfig(name="fine", adapter=ScriptedAdapter(["ok"], name="fine")),
    )
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=2, consecutive_failure_limit=100),
        retry=RetryPolicy(max_attempts=2, initial_delay_s=1.0),
        sleep=sleep,
        async_sleep=async_sleep,
    )
    tasks = [Task("bad1", agent="bad"), Task("bad2", agent="bad"), Task("good", agent="fine")]
    if use_async:
        result = asyncio.run(oma.arun_tasks(tasks, team, on_event=on_event))
    else:
        result = oma.run_tasks(tasks, team, on_event=on_event)
    assert result["good"].status is TaskState.DONE
    assert result["bad1"].status is TaskState.FAILED
    assert waits_cut_short == [True, True]


def _held_then_healthy(
    clock: FakeClock, sleep: Callable[[float], None]
) -> tuple[Team, OpenMultiAgent, list[Task]]:
    """70 tasks of an endpoint whose 429 asks for 20 s, then one of a healthy endpoint."""

    def held(_messages: Sequence[Message]) -> str:
        raise RateLimitError("held", "429 too many requests", retry_after_s=20.0)

    team = OpenMultiAgent.create_team(
        "t",
        AgentConfig(name="held", adapter=ScriptedAdapter(held, name="held")),
        AgentConfig(name="fine", adapter=ScriptedAdapter(["ok"], name="fine")),
    )
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=1, consecutive_failure_limit=1000, clock=clock),
        retry=RetryPolicy(max_attempts=2, initial_delay_s=1.0, max_delay_s=30.0),
        sleep=sleep,
        clock=clock,
    )
    tasks = [*(Task(f"h{i}", agent="held") for i in range(70)), Task("good", agent="fine")]
    return team, oma, tasks


def test_hundreds_of_tasks_held_by_a_retry_after_do_not_hold_back_a_later_healthy_one(
    clock: FakeClock,
) -> None:
    # A threaded run parks a waiting task in its thread, up to max_parked (64 at one slot).
    # The first 70 tasks are on an endpoint whose 429 asks for 20 s: before, the first 64
    # parked and nothing else started until they came back, so the healthy task at the end
    # waited the 20 s out. Now, with the lot full, a task whose endpoint is held waits
    # without a thread and the healthy one starts at once. Every wait below ends when the
    # healthy task is done, so on the old code each would run into its 10 s timeout.
    healthy_done = threading.Event()
    waits_cut_short: list[bool] = []
    started: list[str] = []

    def sleep(seconds: float) -> None:
        waits_cut_short.append(healthy_done.wait(timeout=10))
        clock.sleep(seconds)

    def on_event(event: RunEvent) -> None:
        if isinstance(event, TaskStarted):
            started.append(event.task_id)
        if isinstance(event, TaskSucceeded) and event.task_id == "good":
            healthy_done.set()

    team, oma, tasks = _held_then_healthy(clock, sleep)
    result = oma.run_tasks(tasks, team, on_event=on_event)
    assert result["good"].status is TaskState.DONE
    assert waits_cut_short
    assert all(waits_cut_short)
    # Every task started (the held ones too, without a thread) and every held one ended.
    assert sorted(started) == sorted(t.id for t in tasks)
    assert {result[f"h{i}"].status for i in range(70)} == {TaskState.FAILED}


def test_tasks_held_without_a_thread_end_cancelled_with_the_run(clock: FakeClock) -> None:
    # The run above, cancelled once the healthy task is done: the tasks held back without a
    # thread (past the 64 parked) are recorded FAILED as cancelled, like the parked ones,
    # and the run returns instead of waiting for them.
    cancel = threading.Event()

    def sleep(seconds: float) -> None:
        cancel.wait(timeout=10)
        clock.sleep(seconds)

    def on_event(event: RunEvent) -> None:
        if isinstance(event, TaskSucceeded) and event.task_id == "good":
            cancel.set()

    team, oma, tasks = _held_then_healthy(clock, sleep)
    result = oma.run_tasks(tasks, team, on_event=on_event, cancel=cancel)
    assert result["good"].status is TaskState.DONE
    held_back = [result[f"h{i}"] for i in range(64, 70)]
    assert {(r.status, r.error_type) for r in held_back} == {
        (TaskState.FAILED, "RunCancelledTaskError")
    }
    assert {result[f"h{i}"].status for i in range(64)} == {TaskState.FAILED}


def test_tasks_arriving_while_a_circuit_is_half_open_wait_for_the_probe(clock: FakeClock) -> None:
    # The endpoint fails once, its breaker opens, and recovers. Tasks turned away while the
    # probe is in flight used to fail at once ("retry in 60 s" > max_delay_s) without making
    # a request; now they look again and finish.
    others_turned_away = threading.Event()
    turned_away: set[str] = set()
    calls = 0
    lock = threading.Lock()

    def reply(_messages: Sequence[Message]) -> str:
        nonlocal calls
        with lock:
            calls += 1
            call = calls
        if call == 1:
            raise ProviderUnavailableError("p", "HTTP 503")
        if call == 2:  # the probe: hold it until the other tasks were turned away
            others_turned_away.wait(timeout=10)
        return "ok"

    def on_event(event: RunEvent) -> None:
        if isinstance(event, TaskRetrying) and "half-open" in event.error:
            turned_away.add(event.task_id)
            if len(turned_away) >= 2:
                others_turned_away.set()

    pool = AgentPool(
        max_concurrent=4,
        consecutive_failure_limit=1,
        recovery_timeout_s=5.0,
        clock=clock,
        half_open_max_wait_s=1000.0,
    )
    adapter = ScriptedAdapter(reply)

    def sleep(seconds: float) -> None:
        # Waits take time: model it by letting the probe settle while a task waits (the
        # fake clock alone would let waiting tasks spin through their budget at once).
        clock.sleep(seconds)
        if turned_away:
            breaker = pool.breaker(adapter.endpoint.key)
            for _ in range(5000):
                if breaker.state is not CircuitState.HALF_OPEN:
                    break
                threading.Event().wait(0.001)

    oma = OpenMultiAgent(
        pool,
        default_adapter=adapter,
        retry=RetryPolicy(max_attempts=3, initial_delay_s=1.0, max_delay_s=30.0),
        sleep=sleep,
        clock=clock,
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    tasks = [Task(f"t{i}", agent="w") for i in range(4)]
    result = oma.run_tasks(tasks, team, on_event=on_event)
    assert others_turned_away.is_set()
    assert {r.status for r in result.values()} == {TaskState.DONE}


def test_a_429_left_out_of_the_breaker_still_holds_the_endpoint_and_shrinks_its_limit(
    clock: FakeClock,
) -> None:
    # Found by the traffic benchmarks: an error the pool's is_failure leaves out skipped the
    # Retry-After hold and the adaptive limit, so 429s went on at full speed.
    from aegis_gov import RateLimitError, RetryableError  # noqa: PLC0415

    def breaker_counts(exc: BaseException) -> bool:
        return isinstance(exc, RetryableError) and not isinstance(exc, RateLimitError)

    adapter = ScriptedAdapter([RateLimitError("p", "slow down", retry_after_s=7.0), "ok"])
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=8, is_failure=breaker_counts, clock=clock),
        default_adapter=adapter,
        retry=RetryPolicy(max_attempts=3, initial_delay_s=0.1),
        sleep=clock.sleep,
        clock=clock,
    )
    assert oma.run_agent(AgentConfig(name="w"), "hi").output == "ok"
    assert clock.sleeps[0] >= 7.0  # the endpoint was held for the Retry-After
    adaptive = oma.get_status().endpoints[adapter.endpoint.key].adaptive
    assert adaptive is not None
    assert adaptive.overloads == 1
    assert adaptive.limit == 7  # 8 * 0.9


def test_a_task_the_run_gave_up_on_sends_no_more_requests(clock: FakeClock) -> None:
    # Its thread cannot be killed, but once the run has recorded it FAILED (past its
    # deadline), the conversation stops at its next request instead of sending it.
    threads_before = set(threading.enumerate())
    release = threading.Event()

    def reply(_messages: Sequence[Message]) -> str:
        raise ProviderUnavailableError("p", "HTTP 503")

    def sleep(_seconds: float) -> None:
        clock.now += 100.0  # past the task's deadline: the driver gives the task up
        release.wait(timeout=10)

    adapter = ScriptedAdapter(reply)
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=2, consecutive_failure_limit=100),
        default_adapter=adapter,
        retry=RetryPolicy(max_attempts=5, initial_delay_s=0.1),
        sleep=sleep,
        clock=clock,
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    result = oma.run_tasks([Task("a", agent="w")], team, task_timeout_s=30.0)
    assert result["a"].error_type == "DeadlineExceededError"
    assert result["a"].attempts == 1  # what it did before it was given up is kept (was 0)
    release.set()
    oma.close()
    for worker in set(threading.enumerate()) - threads_before:  # this run's, not others'
        worker.join(timeout=10)
    assert len(adapter.calls) == 1  # the abandoned task did not retry


def test_a_task_given_up_while_waiting_for_its_turn_reports_no_request(clock: FakeClock) -> None:
    # Found by an adversarial review: a task counts a request before its turn comes (a
    # declared rate, the limit's queue, the budget's check); given up while it waited, it
    # reported attempts=1 with nothing sent (12 attempts for the 3 requests a server got).
    release = threading.Event()

    def sleep(_seconds: float) -> None:
        clock.now += 100.0  # past the task's deadline: the driver gives the task up
        release.wait(timeout=10)

    adapter = ScriptedAdapter(["ok", "ok"])
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=2),
        default_adapter=adapter,
        sleep=sleep,
        clock=clock,
        limits={adapter.endpoint.model: Limits(requests_per_minute=1)},  # one, then a minute
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    tasks = [Task("a", agent="w"), Task("b", agent="w")]
    result = oma.run_tasks(tasks, team, task_timeout_s=30.0)
    release.set()
    oma.close()
    assert len(adapter.calls) == 1
    assert (result["a"].status, result["a"].attempts) == (TaskState.DONE, 1)
    assert (result["b"].error_type, result["b"].attempts) == ("DeadlineExceededError", 0)


def test_repeated_short_retry_afters_are_honoured_not_turned_into_a_recovery_timeout(
    clock: FakeClock,
) -> None:
    # A second adversarial pass: two 429s asking for 0.05 s each held a task for the
    # breaker's 30 s recovery timeout (the half-open probe's 429 reopened the circuit).
    from aegis_gov import RateLimitError  # noqa: PLC0415

    slow_down = RateLimitError("m", "429", retry_after_s=0.05)
    adapter = ScriptedAdapter([slow_down, slow_down, "ok"])
    oma = OpenMultiAgent(
        AgentPool(clock=clock),
        default_adapter=adapter,
        retry=RetryPolicy(max_attempts=5, initial_delay_s=0.05, max_total_delay_s=100),
        sleep=clock.sleep,
        clock=clock,
    )
    assert oma.run_agent(AgentConfig(name="a"), "hi").output == "ok"
    assert clock.now < 5.0  # not the 30 s recovery timeout


def test_an_abandoned_task_wakes_from_a_real_wait_at_once() -> None:
    # Its thread used to sleep out its whole retry delay after the run had returned,
    # holding the process open; with the real time.sleep it now ends with the run.
    import time  # noqa: PLC0415

    from aegis_gov._slots import Slots  # noqa: PLC0415

    slots = Slots(1, max_parked=4, wake=lambda: None)
    slot = slots.claim()
    woke = threading.Event()

    def wait_long() -> None:
        slot.sleep(60.0, time.sleep)
        woke.set()

    thread = threading.Thread(target=wait_long)
    thread.start()
    slot.leave()  # the run gives the task up
    assert woke.wait(timeout=10)
    thread.join(timeout=10)
    assert slot.abandoned


def _throttled(count: int, retry_after_s: float | None = None) -> list[str | BaseException]:
    from aegis_gov import RateLimitError  # noqa: PLC0415

    return [RateLimitError("m", "429 too many requests", retry_after_s=retry_after_s)] * count


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
def test_429s_while_the_provider_serves_others_wait_instead_of_failing_tasks(
    clock: FakeClock, use_async: bool
) -> None:
    # A real-clock run against a 10 request/s provider whose 429s carry no Retry-After:
    # a burst of 429s at the start opened the circuit for its 30 s recovery timeout, and
    # a task that drew three 429s in a row failed, though the provider was only pacing.
    adapter = _cycling("4.")  # the provider serves every second request
    # One call at a time, so each answer is in before the next request goes.
    pool = AgentPool(max_concurrent=1, consecutive_failure_limit=2, clock=clock)
    oma = OpenMultiAgent(
        pool,
        default_adapter=adapter,
        retry=RetryPolicy(max_attempts=1, initial_delay_s=0.1, max_total_delay_s=60.0),
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        clock=clock,
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    events: list[RunEvent] = []
    work = [Task(f"t{i}", agent="w") for i in range(6)]
    if use_async:
        result = asyncio.run(oma.arun_tasks(work, team, on_event=events.append))
    else:
        result = oma.run_tasks(work, team, on_event=events.append)
    # max_attempts=1, yet no task failed: each 429 came while others were being served.
    assert {r.status for r in result.values()} == {TaskState.DONE}
    assert len(adapter.calls) == 12  # six answers, six 429s
    assert sum(r.attempts for r in result.values()) == 12  # every request counted
    assert sum(isinstance(e, TaskRetrying) for e in events) == 6
    # The provider answered every time: the circuit never opened.
    assert pool.breaker(adapter.endpoint.key).state is CircuitState.CLOSED


def test_429s_from_a_provider_serving_nobody_count_as_failed_attempts(clock: FakeClock) -> None:
    from aegis_gov import RateLimitError  # noqa: PLC0415

    adapter = ScriptedAdapter(_throttled(1000))
    pool = AgentPool(consecutive_failure_limit=2, clock=clock)
    oma = OpenMultiAgent(
        pool,
        default_adapter=adapter,
        retry=RetryPolicy(max_attempts=3, initial_delay_s=0.1),
        sleep=clock.sleep,
        clock=clock,
    )
    with pytest.raises(RateLimitError):
        oma.run_agent(AgentConfig(name="a"), "hi")
    # The first 429 is taken as pacing; with nobody answered since, the next three count.
    assert len(adapter.calls) == 4
    assert pool.breaker(adapter.endpoint.key).state is CircuitState.CLOSED


def test_a_retry_after_longer_than_max_delay_still_ends_the_task_at_once(
    clock: FakeClock,
) -> None:
    from aegis_gov import RateLimitError  # noqa: PLC0415

    adapter = ScriptedAdapter([*_throttled(1, retry_after_s=3600.0), "ok"])
    oma = OpenMultiAgent(
        AgentPool(clock=clock),
        default_adapter=adapter,
        retry=RetryPolicy(max_delay_s=30.0),
        sleep=clock.sleep,
        clock=clock,
    )
    with pytest.raises(RateLimitError) as raised:
        oma.run_agent(AgentConfig(name="a"), "hi")
    assert len(adapter.calls) == 1
    # Found by an adversarial review: the error said only "429 too many requests", while the
    # task's siblings waited out the (capped) hold and finished. It now says why it gave up.
    error = raised.value
    assert isinstance(error, RetryAfterTooLongError)
    assert (error.retry_after_s, error.max_delay_s, error.status_code) == (3600.0, 30.0, None)
    assert str(error) == (
        "m: 429 too many requests; gave up: the provider asked to wait 3600 s, "
        "more than RetryPolicy.max_delay_s=30"
    )
    copy = pickle.loads(pickle.dumps(error))  # errors cross process boundaries
    assert (type(copy), str(copy)) == (RetryAfterTooLongError, str(error))
    hair = RetryAfterTooLongError(RateLimitError("m", "429", retry_after_s=30.0000004), 30.0)
    assert str(hair).endswith("wait 30.0000004 s, more than RetryPolicy.max_delay_s=30.0")
    unsaid = RetryAfterTooLongError(RateLimitError("m", "429"), 30.0)
    assert str(unsaid) == "m: 429; gave up: RetryPolicy.max_delay_s=30 was too short"
    huge = RetryAfterTooLongError(RateLimitError("m", "429", retry_after_s=123456789.0), 30.0)
    assert "wait 123456789 s," in str(huge)  # not 1.23457e+08
    # Found by an adversarial review: built by hand, it read "asked to wait 0 s, more than
    # RetryPolicy.max_delay_s=30" (and -1 s, nan s). A Retry-After a task waits out, or a
    # setting no RetryPolicy takes, is refused instead.
    for after, most in ((0.0, 30.0), (-1.0, 30.0), (math.nan, 30.0), (30.0, 30.0)):
        with pytest.raises(ValueError, match=r"retry_after_s=.* is not more than max_delay_s"):
            RetryAfterTooLongError(RateLimitError("m", "429", retry_after_s=after), most)
    for most in (math.nan, -1.0, 0.0, math.inf):
        with pytest.raises(ValueError, match="max_delay_s must be a finite number > 0"):
            RetryAfterTooLongError(RateLimitError("m", "429"), most)
    # Also from a review: numbers that are no floats. An int or a Fraction is converted;
    # one too large for a float is refused (str() raised OverflowError or TypeError).
    half = Fraction(61, 2)  # not a float, as a caller ignoring the annotations may pass
    exact = RetryAfterTooLongError(RateLimitError("m", "429", retry_after_s=half), 30)  # type: ignore[arg-type]
    assert (exact.retry_after_s, exact.max_delay_s) == (30.5, 30.0)
    assert str(exact).endswith("wait 30.5 s, more than RetryPolicy.max_delay_s=30")
    for after, most in ((10**400, 30), (40.0, 10**400)):
        with pytest.raises(ValueError, match="too large for a float"):
            RetryAfterTooLongError(RateLimitError("m", "429", retry_after_s=after), most)


@settings(max_examples=500, deadline=None)
@example(most=1234564.6, over=0.8)  # the review's case: both rounded to 1234565
@example(most=30.0, over=4e-7)  # a hair over reads as equal at six digits
@given(
    most=st.floats(min_value=1e-6, max_value=1e18, allow_nan=False, allow_infinity=False),
    over=st.floats(min_value=0.0, max_value=1e18, allow_nan=False),
)
def test_retry_after_too_long_never_reads_as_waiting_no_longer_than_allowed(
    most: float, over: float
) -> None:
    # Found by an adversarial review: rounded to whole seconds, 1234565 "more than" 1234565.
    after = math.nextafter(most, math.inf) if over == 0.0 else most + over
    assume(after > most)
    text = str(RetryAfterTooLongError(RateLimitError("m", "429", retry_after_s=after), most))
    waited, allowed = re.search(
        r"wait (\S+) s, more than RetryPolicy.max_delay_s=(\S+)$", text
    ).groups()  # type: ignore[union-attr]
    assert float(waited) > float(allowed), text


def test_429s_count_as_failed_attempts_when_a_fallback_is_left(clock: FakeClock) -> None:
    primary = ScriptedAdapter(_throttled(1000), name="primary")
    backup = ScriptedAdapter(["from the backup"], name="backup")
    oma = OpenMultiAgent(
        AgentPool(clock=clock),
        retry=RetryPolicy(max_attempts=3, initial_delay_s=0.1),
        sleep=clock.sleep,
        clock=clock,
    )
    agent = AgentConfig(name="a", adapter=primary, fallbacks=[backup])
    answer = oma.run_agent(agent, "hi")
    assert answer.output == "from the backup"
    assert len(primary.calls) == 3  # max_attempts 429s, then the backup


def _cycling(pattern: str) -> ScriptedAdapter:
    """A provider answering by *pattern*, cycled: 5 a 500, 4 a 429 (no Retry-After), . ok."""
    from aegis_gov import RateLimitError  # noqa: PLC0415

    requests = 0

    def reply(_messages: Sequence[Message]) -> str:
        nonlocal requests
        requests += 1
        answer = pattern[(requests - 1) % len(pattern)]
        if answer == "4":
            raise RateLimitError("m", "429 too many requests")
        if answer == "5":
            raise ProviderUnavailableError("m", "HTTP 500")
        return "ok"

    return ScriptedAdapter(reply)


def _opened(events: Sequence[RunEvent]) -> bool:
    return any(isinstance(e, CircuitStateChanged) and e.new is CircuitState.OPEN for e in events)


@pytest.mark.parametrize("pattern", ["54", "554"])
def test_429s_mixed_into_500s_do_not_keep_the_circuit_closed(
    clock: FakeClock, pattern: str
) -> None:
    # Found by an adversarial review: each 429 was reported to the breaker as a success, so a
    # provider failing every other call with a 500 never opened its circuit.
    adapter = _cycling(pattern)
    pool = AgentPool(max_concurrent=1, consecutive_failure_limit=3, clock=clock)
    oma = OpenMultiAgent(
        pool,
        default_adapter=adapter,
        retry=RetryPolicy(max_attempts=3, initial_delay_s=0.1, max_total_delay_s=5.0),
        sleep=clock.sleep,
        clock=clock,
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    result = oma.run_tasks([Task(f"t{i}", agent="w") for i in range(10)], team)
    assert result.summary() == {"failed": 10}
    assert pool.breaker(adapter.endpoint.key).state is CircuitState.OPEN
    assert len(adapter.calls) <= 8  # three 500s (and the 429s between) opened it


def test_a_provider_answering_nothing_but_429s_opens_its_circuit(clock: FakeClock) -> None:
    # Found by an adversarial review: with no 429 counted, 200 tasks sent 2,700 requests to
    # a provider refusing everyone (an exhausted quota worded as a rate limit).
    adapter = ScriptedAdapter(_throttled(10_000))
    pool = AgentPool(max_concurrent=8, clock=clock)  # 5 failures in a row open it
    oma = OpenMultiAgent(
        pool, default_adapter=adapter, sleep=clock.sleep, clock=clock
    )  # the default RetryPolicy
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    sent_when_opened: list[int] = []

    def on_event(event: RunEvent) -> None:
        if isinstance(event, CircuitStateChanged) and event.new is CircuitState.OPEN:
            sent_when_opened.append(len(adapter.calls))

    result = oma.run_tasks([Task(f"t{i}", agent="w") for i in range(50)], team, on_event=on_event)
    assert result.summary() == {"failed": 50}
    # 16 429s (twice the limit) are taken as pacing, then five more open the circuit (a few
    # more were in flight by then). Later openings are failed probes.
    assert sent_when_opened
    assert sent_when_opened[0] <= 16 + 5 + 8
    assert all(b - a == 1 for a, b in itertools.pairwise(sent_when_opened))


@pytest.mark.parametrize(("throttles", "opens"), [(12, False), (20, True)])
def test_429s_alone_in_flight_count_only_past_twice_the_pool_s_width(
    clock: FakeClock, throttles: int, opens: bool
) -> None:
    # Found by an adversarial review: the count was of the limit the 429s had just cut (8
    # down to 1 allows only 8), so a paced provider's first burst opened the circuit again.
    pool = AgentPool(max_concurrent=8, consecutive_failure_limit=2, clock=clock)
    adapter = ScriptedAdapter([*_throttled(throttles), "ok"])
    oma = OpenMultiAgent(
        pool,
        default_adapter=adapter,
        retry=RetryPolicy(
            max_attempts=30, initial_delay_s=0.01, multiplier=1.0, max_total_delay_s=60.0
        ),
        sleep=clock.sleep,
        clock=clock,
    )
    events: list[RunEvent] = []
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    oma.run_tasks([Task("a", agent="w")], team, on_event=events.append)
    assert _opened(events) is opens  # 16 (twice 8) are left out; the 17th and 18th open it


def _retrying_at_once(
    pool: AgentPool,
    adapter: ScriptedAdapter,
    clock: FakeClock,
    sleep: Callable[[float], None],
    async_sleep: Callable[[float], Awaitable[None]] | None = None,
) -> OpenMultiAgent:
    """A facade whose tasks retry after 0.01 s, up to 30 times: the circuit's waits show."""
    return OpenMultiAgent(
        pool,
        default_adapter=adapter,
        retry=RetryPolicy(max_attempts=30, initial_delay_s=0.01, multiplier=1.0),
        sleep=sleep,
        async_sleep=async_sleep or clock.async_sleep,
        clock=clock,
    )


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
@pytest.mark.parametrize(
    "retry_after_s", [None, 0.0, 0.05], ids=["no-retry-after", "retry-after-0", "retry-after"]
)
def test_a_circuit_429s_opened_is_probed_again_after_a_doubling_backoff(
    clock: FakeClock, use_async: bool, retry_after_s: float | None
) -> None:
    # Found by an adversarial review: a run that started inside a provider's short window of
    # 429s (a quota used up by another process) opened the circuit within 60 ms and then
    # stood still for the whole 30 s recovery timeout, although the window ended at 3 s.
    # One task, so the fake clock moves as one timeline (its waits are the only sleeps).
    def reply(_messages: Sequence[Message]) -> str:
        if len(adapter.calls) <= 14:
            raise RateLimitError("m", "429 quota exceeded", retry_after_s=retry_after_s)
        return "ok"

    adapter = ScriptedAdapter(reply)
    # 8 429s are taken as pacing, the next two open it (for 30 s, before); four probes fail.
    pool = AgentPool(max_concurrent=2, consecutive_failure_limit=2, clock=clock)
    shown: list[float] = []  # what get_status() says of the open circuit meanwhile

    def sleep(seconds: float) -> None:
        breaker = oma.get_status().endpoints[adapter.endpoint.key].breaker
        if breaker.state is CircuitState.OPEN:
            shown.append(breaker.retry_after_s)
        clock.sleep(seconds)

    async def async_sleep(seconds: float) -> None:
        sleep(seconds)

    oma = _retrying_at_once(pool, adapter, clock, sleep, async_sleep)
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    moves: list[tuple[CircuitState, float]] = []

    def on_event(event: RunEvent) -> None:
        if isinstance(event, CircuitStateChanged):
            moves.append((event.new, clock.now))

    tasks = [Task("a", agent="w")]
    if use_async:
        result = asyncio.run(oma.arun_tasks(tasks, team, on_event=on_event))
    else:
        result = oma.run_tasks(tasks, team, on_event=on_event)
    assert result.summary() == {"done": 1}, result["a"].error
    assert [state for state, _ in moves] == [
        *[CircuitState.OPEN, CircuitState.HALF_OPEN] * 5,  # each probe met a 429 but the last
        CircuitState.CLOSED,
    ]
    opened = [at for state, at in moves if state is CircuitState.OPEN]
    probed = [at for state, at in moves if state is CircuitState.HALF_OPEN]
    waits = [probe - opening for opening, probe in zip(opened, probed, strict=True)]
    # The retry's first wait doubled per opening in a row, or the Retry-After if longer (the
    # task's own waits may run a little past it); all of them together are less than the
    # one recovery timeout the circuit waited before.
    least = [max(0.01 * 2**n, retry_after_s or 0.0) for n in range(len(waits))]
    assert all(low - 1e-9 <= wait <= low + 0.011 for low, wait in zip(least, waits, strict=True))
    assert sum(waits) < 30.0
    assert shown
    assert max(shown) <= max(least) + 1e-9  # the early probe's time, not the breaker's 30 s


def test_an_operator_s_open_for_is_kept_on_a_circuit_429s_opened(clock: FakeClock) -> None:
    # Found by an adversarial review: open_for(60) on a circuit 429s had opened was cut
    # short by the early probe (0.5 s, then 1, 2, 4 s).
    def reply(_messages: Sequence[Message]) -> str:
        if len(adapter.calls) <= 10:
            raise RateLimitError("m", "429 quota exceeded")
        return "ok"

    adapter = ScriptedAdapter(reply)
    pool = AgentPool(max_concurrent=2, consecutive_failure_limit=2, clock=clock)
    breaker = pool.breaker(adapter.endpoint.key)

    def sleep(seconds: float) -> None:
        if breaker.state is CircuitState.OPEN and breaker.retry_after_s < 60.0:
            breaker.open_for(60.0)  # the operator, while the task waits
        clock.sleep(seconds)

    oma = _retrying_at_once(pool, adapter, clock, sleep)
    moves: list[tuple[CircuitState, float]] = []

    def on_event(event: RunEvent) -> None:
        if isinstance(event, CircuitStateChanged):
            moves.append((event.new, clock.now))

    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    result = oma.run_tasks([Task("a", agent="w")], team, on_event=on_event)
    assert result["a"].error_type == "CircuitWaitTooLongError"  # 60 s > max_delay_s 30
    assert [state for state, _ in moves] == [CircuitState.OPEN]  # no early probe


def test_a_late_answer_keeps_the_early_probe_of_a_circuit_429s_opened(clock: FakeClock) -> None:
    # Found by an adversarial review: a call sent before 429s opened the circuit answered
    # after it had; the answer dropped the early probe, and the circuit waited its whole
    # recovery timeout (31.3 s against 2.2 s). A pool counting 429s makes that easy to see.
    slow_may_answer = threading.Event()
    slow_answered = threading.Event()
    quick_calls: list[int] = []

    def reply(messages: Sequence[Message]) -> str:
        if "slow" in messages[-1].content:
            slow_may_answer.wait(timeout=10)
            return "slow ok"
        quick_calls.append(1)
        if len(quick_calls) <= 2:
            raise RateLimitError("m", "429 quota exceeded")
        return "ok"

    def sleep(seconds: float) -> None:
        if pool.breaker(adapter.endpoint.key).state is CircuitState.OPEN:
            slow_may_answer.set()  # the slow call answers now, the circuit open
            slow_answered.wait(timeout=10)
        clock.sleep(seconds)

    def on_event(event: RunEvent) -> None:
        if isinstance(event, TaskSucceeded) and event.task_id == "slow":
            slow_answered.set()

    adapter = ScriptedAdapter(reply)
    pool = AgentPool(
        max_concurrent=4,
        consecutive_failure_limit=2,
        is_failure=lambda exc: isinstance(exc, RateLimitError),
        clock=clock,
    )
    oma = _retrying_at_once(pool, adapter, clock, sleep)
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    tasks = [Task("slow", "slow", agent="w"), Task("quick", "quick", agent="w")]
    result = oma.run_tasks(tasks, team, on_event=on_event)
    assert result.summary() == {"done": 2}
    assert clock.now < 5.0  # probed soon, not after the 30 s recovery timeout (30.0 before)


@pytest.mark.parametrize(("recovery_timeout_s", "opens"), [(30.0, False), (0.0, True)])
def test_lone_429s_soon_after_an_answer_do_not_open_the_circuit(
    clock: FakeClock, recovery_timeout_s: float, opens: bool
) -> None:
    # Found by an adversarial review: a provider that answered a burst of 20 and then paced
    # at 1/s had its circuit opened by the 429s that followed (alone in flight once the
    # limit was cut), and the run stood still for the 30 s recovery timeout.
    pool = AgentPool(
        max_concurrent=4,
        consecutive_failure_limit=2,
        recovery_timeout_s=recovery_timeout_s,
        clock=clock,
    )
    adapter = ScriptedAdapter(["ok", *_throttled(20), "ok"])
    oma = OpenMultiAgent(
        pool,
        default_adapter=adapter,
        retry=RetryPolicy(
            max_attempts=30, initial_delay_s=0.01, multiplier=1.0, max_total_delay_s=60.0
        ),
        sleep=clock.sleep,
        clock=clock,
    )
    assert oma.run_agent(AgentConfig(name="w"), "first").output == "ok"
    clock.now += 0.5
    events: list[RunEvent] = []
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    oma.run_tasks([Task("a", agent="w")], team, on_event=events.append)
    assert _opened(events) is opens  # answered 0.5 s before: up, unless that is past the timeout


class _HeldThenTogether(ScriptedAdapter):
    """Refuses its first call with a 429 (Retry-After 0.2 s); answers the next ones only
    once *together* of them are in flight at once (else, after 5 s, a 503)."""

    def __init__(self, together: int) -> None:
        super().__init__(["unused"], name="held")
        self.together = together
        self.refused = threading.Event()
        self.barrier = threading.Barrier(together)
        self.arrived = 0
        self.all_in: asyncio.Event | None = None
        self._once = threading.Lock()

    def _first(self) -> bool:
        with self._once:
            first = not self.refused.is_set()
            self.refused.set()
        return first

    def chat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ChatResponse:
        if self._first():
            raise RateLimitError("held", "slow down", status_code=429, retry_after_s=0.2)
        try:
            self.barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            raise ProviderUnavailableError("held", "not together", status_code=503) from None
        return ChatResponse("ok")

    async def achat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ChatResponse:
        if self._first():
            raise RateLimitError("held", "slow down", status_code=429, retry_after_s=0.2)
        if self.all_in is None:
            self.all_in = asyncio.Event()
        self.arrived += 1
        if self.arrived == self.together:
            self.all_in.set()
        try:
            await asyncio.wait_for(self.all_in.wait(), 5)
        except TimeoutError:
            raise ProviderUnavailableError("held", "not together", status_code=503) from None
        return ChatResponse("ok")


class _Gate(ScriptedAdapter):
    """Answers once *opened* is set: what starts after it, starts while the endpoint waits."""

    def __init__(self, opened: threading.Event) -> None:
        super().__init__(["unused"], name="gate")
        self.opened = opened

    def chat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ChatResponse:
        self.opened.wait(timeout=5)
        return ChatResponse("open")

    async def achat(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> ChatResponse:
        await asyncio.to_thread(self.opened.wait, 5)
        return ChatResponse("open")


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
def test_after_a_retry_after_every_waiting_task_goes_not_one_probe_at_a_time(
    use_async: bool,
) -> None:
    # Task a draws a 429 asking for 0.2 s; b, c and d start during that hold. When it ends
    # all four go at once. The hold used to force the endpoint's circuit open, so it ended
    # half-open: one task went as its probe and the others waited for that call's answer —
    # seconds, for a model — though the provider had only asked for 0.2 s. Here the provider
    # answers only once all four are in flight together.
    provider = _HeldThenTogether(together=4)
    gate = _Gate(provider.refused)
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=8),
        retry=RetryPolicy(max_attempts=1, initial_delay_s=0.01),
    )
    team = OpenMultiAgent.create_team(
        "t", AgentConfig("held", adapter=provider), AgentConfig("gate", adapter=gate)
    )
    tasks = [
        Task("a", agent="held"),
        Task("gate", agent="gate"),
        *(Task(name, agent="held", depends_on=["gate"]) for name in "bcd"),
    ]
    result = asyncio.run(oma.arun_tasks(tasks, team)) if use_async else oma.run_tasks(tasks, team)
    assert {r.status for r in result.values()} == {TaskState.DONE}
    assert {result[name].output for name in "abcd"} == {"ok"}
    assert oma.get_status().endpoints[provider.endpoint.key].state == "closed"
