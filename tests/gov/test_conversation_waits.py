"""The conversation's waits, driven by hand: no adapter, no clock, no sleeping."""

from __future__ import annotations

import random
from collections.abc import Generator, Iterable

import pytest
from aegis_adapters import ChatResponse, ProviderUnavailableError
from aegis_breaker import CircuitOpenError
from aegis_gov import RetryPolicy, RunEvent, TaskRetrying
from aegis_gov._conversation import ChatRequest, Command, Conversation, Sleep
from aegis_gov._errors import CircuitWaitTooLongError
from aegis_gov._outcome import Failure, Outcome, Raised
from aegis_gov._progress import describe_event


def _conversation(events: list[RunEvent]) -> Conversation:
    return Conversation(
        agent="a",
        prompt="hi",
        system=None,
        tools=(),
        retry=RetryPolicy(max_attempts=3, initial_delay_s=0.1, max_delay_s=30.0),
        rng=random.Random(0),
        emit=events.append,
        endpoint="e",
        task_id="t",
    )


def test_an_open_breaker_is_waited_out_as_long_as_it_says_and_is_not_an_attempt() -> None:
    events: list[RunEvent] = []
    conversation = _conversation(events)
    steps = conversation.steps()
    assert isinstance(next(steps), ChatRequest)
    # Two rejections in a row: each is waited out for the breaker's time, and neither
    # counts as an attempt, so both announce the same next attempt.
    for retry_after in (0.593, 0.02):
        command = steps.send(Raised(CircuitOpenError("e", retry_after)))
        assert isinstance(command, Sleep)
        assert command.seconds == max(retry_after, 0.1)
        assert isinstance(steps.send(None), ChatRequest)
    command = steps.send(Raised(ProviderUnavailableError("p", "down")))
    assert isinstance(command, Sleep)
    assert isinstance(steps.send(None), ChatRequest)
    with pytest.raises(StopIteration) as stop:
        steps.send(ChatResponse(text="ok"))
    assert stop.value.value.output == "ok"
    assert stop.value.value.attempts == 2

    retrying = [e for e in events if isinstance(e, TaskRetrying)]
    assert [(e.attempt, e.rejected) for e in retrying] == [(1, True), (1, True), (2, False)]
    lines = [describe_event(e) or "" for e in retrying]
    assert lines[0].startswith("t: waiting 0.59s before attempt 1, turned away without a request")
    assert "retry in 0.593 s" in lines[0]  # the breaker's own words agree with the wait
    assert lines[2].startswith("t: retrying in ")
    assert "(attempt 2 next) after: p: down" in lines[2]


def test_a_breaker_open_longer_than_the_policy_allows_fails_at_once() -> None:
    events: list[RunEvent] = []
    steps = _conversation(events).steps()
    next(steps)
    error = CircuitOpenError("e", 31.0)
    with pytest.raises(StopIteration) as stop:
        steps.send(Raised(error))
    failure = stop.value.value
    assert isinstance(failure, Failure)
    assert isinstance(failure.error, CircuitOpenError)  # still one, for those who catch it
    assert isinstance(failure.error, CircuitWaitTooLongError)
    assert "more than RetryPolicy.max_delay_s=30" in str(failure.error)
    assert failure.attempts == 0  # turned away: no request was made


def test_a_half_open_circuit_is_waited_for_at_the_backoff_cadence() -> None:
    # The probe's worst case (60 s here) is no reason to fail: look again soon, as often as
    # the total budget allows, then fail saying which budget ran out.
    events: list[RunEvent] = []
    conversation = _conversation(events)
    conversation.retry = RetryPolicy(initial_delay_s=0.1, max_delay_s=30.0, max_total_delay_s=2.0)
    steps = conversation.steps()
    next(steps)
    waited = 0.0
    while True:
        try:
            command = steps.send(Raised(CircuitOpenError("e", 60.0, "half_open")))
        except StopIteration as stop:
            failure = stop.value
            break
        assert isinstance(command, Sleep)
        assert 0.1 <= command.seconds <= 30.0
        waited += command.seconds
        assert isinstance(steps.send(None), ChatRequest)
    assert waited <= 2.0
    assert len([e for e in events if isinstance(e, TaskRetrying)]) >= 2
    assert isinstance(failure, Failure)
    assert "RetryPolicy.max_total_delay_s=2 would be exceeded" in str(failure.error)


def test_a_half_open_circuit_that_closes_lets_the_task_through() -> None:
    steps = _conversation([]).steps()
    next(steps)
    assert isinstance(steps.send(Raised(CircuitOpenError("e", 60.0, "half_open"))), Sleep)
    assert isinstance(steps.send(None), ChatRequest)
    with pytest.raises(StopIteration) as stop:
        steps.send(ChatResponse(text="recovered"))
    assert stop.value.value.output == "recovered"


def _throttle(
    steps: Generator[Command, object, Outcome], served: Iterable[int | None]
) -> tuple[Outcome, float]:
    """Answer each request with a 429 carrying the next *served*; (the outcome, the waits)."""
    from aegis_adapters import RateLimitError  # noqa: PLC0415

    waited = 0.0
    try:
        for count in served:
            command = steps.send(Raised(RateLimitError("e", "429"), count))
            assert isinstance(command, Sleep)
            waited += command.seconds
            assert isinstance(steps.send(None), ChatRequest)
    except StopIteration as stop:
        return stop.value, waited
    raise AssertionError("the conversation never ended")


def test_429s_cost_no_attempt_while_the_endpoint_serves_others_but_spend_the_wait_budget() -> None:
    from aegis_adapters import RateLimitError  # noqa: PLC0415

    conversation = _conversation([])
    conversation.retry = RetryPolicy(max_attempts=1, initial_delay_s=0.5, max_total_delay_s=10.0)
    steps = conversation.steps()
    assert isinstance(next(steps), ChatRequest)
    # Others were answered between this task's 429s (the count grows by 5 each time).
    failure, waited = _throttle(steps, range(5, 5000, 5))
    assert isinstance(failure, Failure)
    assert isinstance(failure.error, RateLimitError)
    assert waited <= 10.0  # max_total_delay_s bounds it, not max_attempts=1
    assert failure.attempts > 3


@pytest.mark.parametrize(
    ("served", "requests"),
    [
        ((None, None, None), 3),  # the endpoint's count unknown: as any failure
        ((7, 7, 7, 7), 4),  # the first is pacing; then nobody was answered: they count
        ((7, 9, 9, 9, 9), 5),  # others answered before the second: it is free
    ],
)
def test_429s_count_when_the_endpoint_answered_nobody_since_the_last(
    served: tuple[int | None, ...], requests: int
) -> None:
    steps = _conversation([]).steps()  # max_attempts=3
    next(steps)
    outcome, _ = _throttle(steps, served)
    assert isinstance(outcome, Failure)
    assert outcome.attempts == requests


def test_429s_count_while_a_fallback_is_left() -> None:
    from aegis_adapters import RateLimitError  # noqa: PLC0415

    conversation = _conversation([])
    conversation.fallbacks = ("backup",)
    steps = conversation.steps()
    next(steps)
    for served in (1, 2):  # others were served: still counted, with somewhere else to go
        assert isinstance(steps.send(Raised(RateLimitError("e", "429"), served)), Sleep)
        assert isinstance(steps.send(None), ChatRequest)
    request = steps.send(Raised(RateLimitError("e", "429"), 3))
    assert isinstance(request, ChatRequest)
    assert request.endpoint == 1  # the third 429 moved the task to its fallback


def test_a_task_s_free_429s_are_capped_against_tiny_delays() -> None:
    # Found by an adversarial review: with tiny delays (initial 1 ms, multiplier 1) and others
    # answered between its 429s, one task sent 10,000 requests within its wait budget.
    conversation = _conversation([])
    conversation.retry = RetryPolicy(
        max_attempts=2, initial_delay_s=0.001, multiplier=1.0, max_total_delay_s=60.0
    )
    steps = conversation.steps()
    next(steps)
    outcome, waited = _throttle(steps, range(1, 10_000))
    assert isinstance(outcome, Failure)
    assert outcome.attempts == 22  # 20 free (ten per allowed attempt), then the two counted
    assert waited < 1.0


def test_429s_from_an_endpoint_that_answered_lately_are_free_though_nobody_was_served() -> None:
    # Found by an adversarial review: a provider serving 0.2 requests a second answers less
    # often than a task retries, so a task's second 429 saw nobody served since its first
    # and counted: half the tasks failed. Answering within the recovery timeout counts too.
    from aegis_adapters import RateLimitError  # noqa: PLC0415

    steps = _conversation([]).steps()  # max_attempts=3
    next(steps)
    for _ in range(6):  # the endpoint's count stays at 7: nobody served in between
        assert isinstance(steps.send(Raised(RateLimitError("e", "429"), 7, answering=True)), Sleep)
        assert isinstance(steps.send(None), ChatRequest)
    with pytest.raises(StopIteration) as stop:
        steps.send(ChatResponse(text="ok"))
    assert stop.value.value.attempts == 7
