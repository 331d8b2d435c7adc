"""The sans-I/O pieces on their own: the endpoint caller with a fake adapter and clock,
and RunState without any driver."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import pytest
from aegis_adapters import (
    ChatResponse,
    InvalidRequestError,
    Message,
    ProviderUnavailableError,
    RateLimitError,
    ScriptedAdapter,
    TextDelta,
    ToolSpec,
)
from aegis_breaker import AgentPool, CircuitState
from aegis_gov import AgentConfig, RetryPolicy, RunEvent, Team, ToolRegistry
from aegis_gov._caller import EndpointCaller, Route, Sink
from aegis_gov._conversation import ChatRequest
from aegis_gov._outcome import Failure
from aegis_gov._results import AgentResult, RunResult
from aegis_gov._run import RunState
from aegis_gov._slots import Slots
from aegis_graph import SkipReason, Task, TaskState

from tests.gov.conftest import FakeClock


def _caller(pool: AgentPool, clock: FakeClock, **retry: float) -> EndpointCaller:
    return EndpointCaller(
        pool,
        ToolRegistry,
        retry=RetryPolicy(**retry),  # type: ignore[arg-type]
        rng=random.Random(0),
        sleep=clock.sleep,
        clock=clock,
    )


def _route(adapter: ScriptedAdapter, agent: AgentConfig | None = None) -> Route:
    return Route.resolve(agent or AgentConfig(name="a"), adapter, ())


REQUEST = ChatRequest((Message.user("hi"),), None, ())


def test_a_bad_request_does_not_count_against_the_breaker(clock: FakeClock) -> None:
    pool = AgentPool(consecutive_failure_limit=1, clock=clock)
    adapter = ScriptedAdapter([InvalidRequestError("p", "bad")] * 3)
    caller = _caller(pool, clock)
    route = _route(adapter)
    for _ in range(3):
        with pytest.raises(InvalidRequestError):
            caller.chat(route, REQUEST)
    assert pool.breaker(route.key).state is CircuitState.CLOSED


def test_a_retry_after_holds_the_endpoint_in_its_pace_not_its_circuit(clock: FakeClock) -> None:
    pool = AgentPool(consecutive_failure_limit=5, clock=clock)
    adapter = ScriptedAdapter([RateLimitError("p", "slow", retry_after_s=7.0), "ok"])
    caller = _caller(pool, clock)
    route = _route(adapter)
    with pytest.raises(RateLimitError):
        caller.chat(route, REQUEST)
    # The endpoint is held in its pace, its circuit left closed: a circuit forced open ends
    # in a half-open probe that every other task would wait out, answer and all.
    assert pool.breaker(route.key).state is CircuitState.CLOSED
    assert caller._held_for(route.key) == pytest.approx(7.0)
    # The next request waits the hold out before it is sent.
    assert caller.chat(route, REQUEST).text == "ok"
    assert clock.sleeps == [pytest.approx(7.0)]
    assert caller._held_for(route.key) == 0.0


def test_a_pool_with_its_own_rule_decides_what_counts(clock: FakeClock) -> None:
    # A pool that counts bad requests too: its rule is honoured, not overridden.
    pool = AgentPool(consecutive_failure_limit=1, clock=clock, is_failure=lambda exc: True)
    caller = _caller(pool, clock)
    route = _route(ScriptedAdapter([InvalidRequestError("p", "bad")]))
    with pytest.raises(InvalidRequestError):
        caller.chat(route, REQUEST)
    assert pool.breaker(route.key).state is CircuitState.OPEN


def test_a_conversation_retries_on_the_fake_clock_and_ends_in_a_value(clock: FakeClock) -> None:
    events: list[RunEvent] = []
    pool = AgentPool(clock=clock)
    adapter = ScriptedAdapter([ProviderUnavailableError("p", "down"), "fine"])
    caller = _caller(pool, clock, initial_delay_s=2.0, multiplier=1.0, max_delay_s=2.0)
    outcome = caller.run(_route(adapter), "hi", events.append)
    assert isinstance(outcome, AgentResult)
    assert outcome.output == "fine"
    assert outcome.attempts == 2
    assert 0.0 <= clock.now <= 2.0  # the wait happened on the fake clock


def test_a_failed_conversation_is_a_failure_value_not_an_exception(clock: FakeClock) -> None:
    pool = AgentPool(clock=clock)
    adapter = ScriptedAdapter([ProviderUnavailableError("p", "down")] * 3)
    outcome = _caller(pool, clock, max_attempts=3).run(_route(adapter), "hi", lambda _e: None)
    assert isinstance(outcome, Failure)
    assert isinstance(outcome.error, ProviderUnavailableError)
    assert outcome.attempts == 3


class _BreaksAfterAChunk(ScriptedAdapter):
    """Streams one chunk of its first reply, then the connection drops."""

    def chat_stream(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> Iterator[TextDelta | ChatResponse]:
        if not self.calls:
            self.chat(messages, system=system, tools=tools)  # counted as a call
            yield TextDelta("partial ")
            raise ProviderUnavailableError("p", "dropped")
        yield from super().chat_stream(messages, system=system, tools=tools)


def test_a_stream_broken_after_output_cannot_restart_for_a_user(clock: FakeClock) -> None:
    chunks: list[str] = []
    caller = _caller(AgentPool(clock=clock), clock)
    sink = Sink(chunks.append, restartable=False)
    adapter = _BreaksAfterAChunk(["lost", "again"])
    outcome = caller.run(_route(adapter), "hi", lambda _e: None, sink=sink)
    assert isinstance(outcome, Failure)
    assert type(outcome.error).__name__ == "StreamInterruptedError"
    assert chunks == ["partial "]  # nothing after the break: the reader saw no seam


def _state(tasks: list[Task], clock: FakeClock) -> tuple[RunState, list[RunEvent]]:
    events: list[RunEvent] = []
    team = Team("t", [AgentConfig(name="w")])
    state = RunState.create(tasks, team, stop_on_failure=False, emit=events.append, clock=clock)
    return state, events


def test_run_state_records_outcomes_and_cascades_without_a_driver(clock: FakeClock) -> None:
    tasks = [
        Task("a", agent="w"),
        Task("b", agent="w", depends_on=["a"]),
        Task("c", agent="w"),
    ]
    state, _events = _state(tasks, clock)
    first = state.take_ready(10)
    assert [w.task.id for w in first] == ["a", "c"]
    clock.sleep(3.0)
    a, c = first
    state.finish(a, Failure(ProviderUnavailableError("p", "down"), attempts=2))
    state.finish(c, AgentResult(output="done", agent="w"))
    assert state.finished
    result = state.result()
    assert result["a"].status is TaskState.FAILED
    assert result["a"].duration_s == 3.0
    assert result["a"].error_type == "ProviderUnavailableError"
    assert result["b"].status is TaskState.SKIPPED
    assert result["b"].skip_reason == SkipReason.UPSTREAM_FAILED.value
    assert result["b"].blamed == "a"
    assert result["c"].output == "done"


def test_run_state_cancel_skips_what_is_pending(clock: FakeClock) -> None:
    state, _ = _state([Task("a", agent="w"), Task("b", agent="w", depends_on=["a"])], clock)
    (work,) = state.take_ready(1)
    state.cancel()
    assert state.take_ready(5) == []
    state.finish(work, AgentResult(output="late", agent="w"))
    result = state.result()
    assert result.cancelled
    assert result["a"].status is TaskState.DONE
    assert result["b"].skip_reason == "cancelled"


def test_a_result_worked_out_ahead_is_the_one_finish_works_out_itself(clock: FakeClock) -> None:
    tasks = [Task("a", "first", agent="w"), Task("b", "second", agent="w", depends_on=["a"])]
    results: dict[bool, RunResult] = {}
    for ahead in (False, True):
        state, _ = _state(tasks, clock)
        for _ in tasks:
            work = state.take_ready(1)
            if ahead:
                state.record_ahead(work)
            state.finish(work[0], AgentResult(output=f"out of {work[0].task.id}", agent="w"))
        results[ahead] = state.result()
    for task_id in ("a", "b"):
        itself, early = results[False][task_id], results[True][task_id]
        assert early == itself
        assert (early.fingerprint, early.input_digest) == (itself.fingerprint, itself.input_digest)
        assert dict(early.definition) == dict(itself.definition)
        assert early.input_digest is not None


def test_nothing_is_worked_out_ahead_for_a_task_that_is_not_running(clock: FakeClock) -> None:
    state, _ = _state([Task("a", agent="w"), Task("b", agent="w")], clock)
    a, b = state.take_ready(2)
    state.finish(a, Failure(ProviderUnavailableError("p", "down")))
    state.record_ahead([a, b])  # a has ended: only b is worked out
    assert list(state._records) == ["b"]  # what finish would pick up
    state.finish(b, AgentResult(output="done", agent="w"))
    assert not state._records  # taken by finish, none left behind
    assert state.result()["b"].input_digest is not None


def test_slots_claimed_in_a_batch_count_as_if_claimed_one_by_one() -> None:
    slots = Slots(3, max_parked=4, wake=lambda: None)
    first, second = slots.claim_many(2)
    assert first is not second
    assert (slots.active, slots.claimable()) == (2, 1)
    first.park()  # a parked task's slot goes to new work
    assert (slots.active, slots.parked, slots.claimable()) == (1, 1, 2)
    first.leave()
    second.leave()
    assert (slots.active, slots.parked, slots.claimable()) == (0, 0, 3)
    assert first.abandoned
    assert second.abandoned
    assert slots.claim_many(0) == []


def test_a_task_given_up_while_it_waits_for_its_slot_back_is_woken() -> None:
    # A parked task whose wait ended queues for a slot; given up then (a deadline, a
    # cancel), its thread waited for a grant that never came, for ever: pytest's process
    # could not exit, joining it (found when CI hung after the last test).
    slots = Slots(1, max_parked=4, wake=lambda: None)
    busy, waiting = slots.claim_many(2)
    waiting.park()
    woken: list[bool] = []
    assert not waiting._queue(lambda: woken.append(True))  # queued behind the busy slot
    waiting.leave()  # what unpark's thread waits on is granted
    assert woken == [True]
    assert waiting.abandoned
    busy.leave()
    assert (slots.active, slots.parked) == (0, 0)
