"""Fallbacks: an agent moves to its next adapter when its own is out."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aegis_gov import (
    AgentConfig,
    AgentPool,
    FellBack,
    InvalidRequestError,
    Message,
    OpenMultiAgent,
    ProviderUnavailableError,
    RetryPolicy,
    RunEvent,
    ScriptedAdapter,
    Task,
    TaskState,
)

from tests.gov.conftest import FakeClock


def _down(_messages: Sequence[Message]) -> str:
    raise ProviderUnavailableError("primary", "HTTP 503")


def _oma(clock: FakeClock, **pool: object) -> OpenMultiAgent:
    return OpenMultiAgent(
        AgentPool(clock=clock, **pool),  # type: ignore[arg-type]
        retry=RetryPolicy(max_attempts=2, initial_delay_s=0.1),
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        clock=clock,
    )


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
def test_a_spent_retry_budget_moves_the_task_to_the_fallback(
    clock: FakeClock, use_async: bool
) -> None:
    primary = ScriptedAdapter(_down, name="primary")
    backup = ScriptedAdapter(["from the backup"], name="backup")
    agent = AgentConfig(name="w", adapter=primary, fallbacks=[backup])
    team = OpenMultiAgent.create_team("t", agent)
    events: list[RunEvent] = []
    oma = _oma(clock, consecutive_failure_limit=100)
    tasks = [Task("t", agent="w")]
    if use_async:
        result = asyncio.run(oma.arun_tasks(tasks, team, on_event=events.append, stream=False))
    else:
        result = oma.run_tasks(tasks, team, on_event=events.append, stream=False)
    assert result["t"].status is TaskState.DONE
    assert result["t"].output == "from the backup"
    assert result["t"].attempts == 3  # two on the primary, one on the backup
    assert result["t"].endpoint == backup.endpoint.key
    (fell,) = [e for e in events if isinstance(e, FellBack)]
    assert fell.from_endpoint == primary.endpoint.key
    assert fell.to_endpoint == backup.endpoint.key
    assert "HTTP 503" in fell.error


def test_the_answer_names_the_endpoint_that_gave_it(clock: FakeClock) -> None:
    primary = ScriptedAdapter(_down, name="primary")
    backup = ScriptedAdapter(["ok"], name="backup")
    answer = _oma(clock).run_agent(AgentConfig(name="w", adapter=primary, fallbacks=[backup]), "hi")
    assert answer.endpoint == backup.endpoint.key


def test_an_open_circuit_moves_on_at_once(clock: FakeClock) -> None:
    primary = ScriptedAdapter(["unused"], name="primary")
    backup = ScriptedAdapter(["ok"], name="backup")
    oma = _oma(clock)
    oma.pool.breaker(primary.endpoint.key).open_for(600.0)
    answer = oma.run_agent(AgentConfig(name="w", adapter=primary, fallbacks=[backup]), "hi")
    assert answer.output == "ok"
    assert primary.calls == []
    assert clock.now == 0.0  # no wait for the circuit


def test_a_permanent_error_does_not_fall_over_unless_asked(clock: FakeClock) -> None:
    def bad(_messages: Sequence[Message]) -> str:
        raise InvalidRequestError("primary", "bad request")

    backup = ScriptedAdapter(["ok"], name="backup")
    strict = AgentConfig(name="w", adapter=ScriptedAdapter(bad), fallbacks=[backup])
    with pytest.raises(InvalidRequestError):
        _oma(clock).run_agent(strict, "hi")
    assert backup.calls == []
    lenient = AgentConfig(
        name="w",
        adapter=ScriptedAdapter(bad),
        fallbacks=[backup],
        fall_back_on_permanent_errors=True,
    )
    assert _oma(clock).run_agent(lenient, "hi").output == "ok"


def test_when_every_endpoint_is_out_the_last_error_is_reported(clock: FakeClock) -> None:
    agent = AgentConfig(
        name="w",
        adapter=ScriptedAdapter(_down, name="a"),
        fallbacks=[ScriptedAdapter(_down, name="b")],
    )
    with pytest.raises(ProviderUnavailableError):
        _oma(clock, consecutive_failure_limit=100).run_agent(agent, "hi")


def test_fallbacks_are_checked() -> None:
    with pytest.raises(TypeError, match="not one adapter"):
        AgentConfig(name="w", fallbacks=ScriptedAdapter(["x"]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fallbacks must be adapters"):
        AgentConfig(name="w", fallbacks=["openai"])  # type: ignore[list-item]


def _held_run(
    retry_after_s: float, use_async: bool
) -> tuple[dict[str, str | None], list[FellBack], int]:
    """Eight tasks on a primary whose first answer is a 429 asking for *retry_after_s*, with
    a fallback; returns (endpoint that answered each task, FellBack events, primary calls)."""
    from aegis_gov import RateLimitError  # noqa: PLC0415

    calls = 0

    def primary_reply(_messages: Sequence[Message]) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RateLimitError("p", "slow down", status_code=429, retry_after_s=retry_after_s)
        return "primary"

    primary = ScriptedAdapter(primary_reply, name="primary")
    backup = ScriptedAdapter(lambda _messages: "backup", name="backup")
    events: list[RunEvent] = []
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=1),
        retry=RetryPolicy(max_attempts=3, initial_delay_s=0.1, max_delay_s=5.0),
    )
    team = OpenMultiAgent.create_team("t", AgentConfig("w", adapter=primary, fallbacks=[backup]))
    tasks = [Task(f"t{i}", agent="w") for i in range(8)]
    if use_async:
        result = asyncio.run(oma.arun_tasks(tasks, team, on_event=events.append))
    else:
        result = oma.run_tasks(tasks, team, on_event=events.append)
    assert {r.status for r in result.values()} == {TaskState.DONE}
    answered = {task_id: r.endpoint for task_id, r in result.items()}
    return answered, [e for e in events if isinstance(e, FellBack)], calls


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
def test_tasks_with_a_fallback_move_on_from_an_endpoint_held_by_a_long_retry_after(
    use_async: bool,
) -> None:
    # The primary asks for 2 s (longer than a retry's first wait, 0.1 s): the tasks that
    # meet it held move to the fallback at once, as from an open circuit, instead of
    # queueing behind the hold (each 429 renewing it: 12 such tasks took 115 s).
    answered, fell, _calls = _held_run(2.0, use_async)
    by_backup = [t for t, endpoint in answered.items() if endpoint and "backup" in endpoint]
    assert len(by_backup) >= 7  # all but (at most) the one that drew the 429
    assert fell
    assert any("held" in e.error and "Retry-After" in e.error for e in fell)


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
def test_a_short_hold_is_waited_out_not_fallen_over(use_async: bool) -> None:
    # 0.05 s is less than a retry's first wait: not worth sending tasks to the fallback.
    answered, fell, calls = _held_run(0.05, use_async)
    assert fell == []
    assert all(endpoint and "primary" in endpoint for endpoint in answered.values())
    assert calls == 9  # the 429, then one answer per task
