"""OpenMultiAgent runs over task graphs, against offline adapters and fake time."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence

import pytest
from aegis_gov import (
    AgentConfig,
    AgentPool,
    ChatResponse,
    CircuitOpenError,
    CircuitStateChanged,
    CyclicDependencyError,
    DuplicateAgentError,
    InvalidRequestError,
    Message,
    OpenMultiAgent,
    ProviderUnavailableError,
    RateLimitError,
    RetryPolicy,
    RunEvent,
    RunResult,
    ScriptedAdapter,
    Task,
    TaskOutputDelta,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    TaskState,
    TaskSucceeded,
    Team,
    UnknownAgentError,
    Usage,
)

from tests.gov.conftest import FakeClock


def _last_user(messages: Sequence[Message]) -> str:
    return next(m.content for m in reversed(messages) if m.role == "user")


def _pipeline_team() -> tuple[list[Task], Team]:
    team = OpenMultiAgent.create_team(
        "pipeline",
        AgentConfig(name="researcher", system_prompt="Research topics thoroughly."),
        AgentConfig(name="writer", system_prompt="Write clear reports."),
        AgentConfig(name="translator", system_prompt="Translate to Japanese."),
        AgentConfig(name="publisher", system_prompt="Format output as Markdown."),
    )
    tasks = [
        Task(id="research", description="Research AI trends", agent="researcher"),
        Task(
            id="draft", description="Write a report draft", agent="writer", depends_on=["research"]
        ),
        Task(
            id="translate",
            description="Translate to Japanese",
            agent="translator",
            depends_on=["draft"],
        ),
        Task(
            id="publish", description="Format as Markdown", agent="publisher", depends_on=["draft"]
        ),
    ]
    return tasks, team


def _oma(clock: FakeClock, adapter: object, **pool_kwargs: object) -> OpenMultiAgent:
    pool = AgentPool(clock=clock, **pool_kwargs)  # type: ignore[arg-type]
    return OpenMultiAgent(
        pool,
        default_adapter=adapter,  # type: ignore[arg-type]
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        clock=clock,
        seed=7,
    )


def test_pipeline_runs_in_order_with_parallel_branches_and_upstream_outputs(
    clock: FakeClock,
) -> None:
    both_in_flight = threading.Barrier(2, timeout=10)
    prompts: dict[str, str] = {}

    def reply(messages: Sequence[Message]) -> str:
        prompt = _last_user(messages)
        first_line = prompt.splitlines()[0]
        prompts[first_line] = prompt
        if first_line in {"Translate to Japanese", "Format as Markdown"}:
            # Both branches must be running at the same time to get past this barrier.
            both_in_flight.wait()
        return f"<{first_line} done>"

    tasks, team = _pipeline_team()
    adapter = ScriptedAdapter(reply)
    result = _oma(clock, adapter).run_tasks(tasks, team=team)

    assert result.summary() == {"done": 4}
    assert list(result) == ["research", "draft", "translate", "publish"]
    assert result["draft"].output == "<Write a report draft done>"
    # The writer sees the researcher's findings, labelled by task id.
    assert "research" in prompts["Write a report draft"]
    assert "<Research AI trends done>" in prompts["Write a report draft"]
    assert "<Write a report draft done>" in prompts["Translate to Japanese"]
    assert "<Research AI trends done>" not in prompts["Translate to Japanese"]
    systems = {c.system for c in adapter.calls}
    assert "Translate to Japanese." in systems


def test_failure_skips_dependents_and_independent_branch_finishes(clock: FakeClock) -> None:
    def reply(messages: Sequence[Message]) -> str:
        if _last_user(messages).startswith("fetch"):
            raise InvalidRequestError("scripted", "bad request", status_code=400)
        return "ok"

    adapter = ScriptedAdapter(reply)
    team = OpenMultiAgent.create_team("t", AgentConfig(name="a"))
    tasks = [
        Task(id="fetch", description="fetch", agent="a"),
        Task(id="process", description="process", agent="a", depends_on=["fetch"]),
        Task(id="report", description="report", agent="a", depends_on=["process"]),
        Task(id="other", description="other", agent="a"),
    ]
    events: list[RunEvent] = []
    result = _oma(clock, adapter).run_tasks(tasks, team, on_event=events.append)

    assert result.summary() == {"failed": 1, "skipped": 2, "done": 1}
    assert result["fetch"].error_type == "InvalidRequestError"
    assert result["fetch"].attempts == 1  # a permanent error is never retried
    assert result["report"].blamed == "fetch"
    assert result["report"].skip_reason == "upstream_failed"
    assert result["other"].status is TaskState.DONE
    skipped = [e.task_id for e in events if isinstance(e, TaskSkipped)]
    assert skipped == ["process", "report"]
    assert clock.sleeps == []


def test_stop_on_failure_skips_everything_pending(clock: FakeClock) -> None:
    adapter = ScriptedAdapter(
        lambda m: (
            (_ for _ in ()).throw(InvalidRequestError("s", "no", status_code=400))
            if _last_user(m) == "a"
            else "ok"
        )
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="x"))
    tasks = [
        Task(id="a", description="a", agent="x"),
        Task(id="b", description="b", agent="x", depends_on=["a"]),
        Task(id="c", description="c", agent="x", depends_on=["b"]),
    ]
    oma = _oma(clock, adapter, max_concurrent=1)
    result = oma.run_tasks(tasks, team, stop_on_failure=True)
    assert result.summary() == {"failed": 1, "skipped": 2}


def test_retry_honours_retry_after_and_counts_attempts(clock: FakeClock) -> None:
    adapter = ScriptedAdapter(
        [
            RateLimitError("scripted", "slow down", status_code=429, retry_after_s=7.0),
            ProviderUnavailableError("scripted", "down", status_code=503),
            "finally",
        ]
    )
    events: list[RunEvent] = []
    oma = _oma(clock, adapter)
    oma.retry = RetryPolicy(max_attempts=3, initial_delay_s=0.1, max_delay_s=30.0)
    team = OpenMultiAgent.create_team("t", AgentConfig(name="a"))
    result = oma.run_tasks(
        [Task(id="t1", description="go", agent="a")], team, on_event=events.append
    )

    assert result["t1"].status is TaskState.DONE
    assert result["t1"].output == "finally"
    assert result["t1"].attempts == 3
    retries = [e for e in events if isinstance(e, TaskRetrying)]
    assert len(retries) == 2  # after the 429, after the 503
    assert retries[0].delay_s >= 7.0  # never earlier than the provider asked
    assert clock.sleeps[0] >= 7.0
    assert sum(clock.sleeps) <= oma.retry.max_total_delay_s
    # The 429 held the endpoint in its pace; one 503 (of five allowed) opened no circuit.
    assert not [e for e in events if isinstance(e, CircuitStateChanged)]
    assert oma.get_status()["pool_state"] == "closed"


def test_retries_stop_at_max_attempts(clock: FakeClock) -> None:
    down = ProviderUnavailableError("scripted", "down", status_code=503)
    adapter = ScriptedAdapter([down, down, down, "never"])
    oma = _oma(clock, adapter)
    oma.retry = RetryPolicy(max_attempts=2)
    agent = AgentConfig(name="a")
    with pytest.raises(ProviderUnavailableError):
        oma.run_agent(agent, "hello")
    assert len(adapter.calls) == 2


def test_retry_after_longer_than_max_delay_fails_at_once(clock: FakeClock) -> None:
    adapter = ScriptedAdapter(
        [RateLimitError("s", "later", status_code=429, retry_after_s=3600.0), "x"]
    )
    oma = _oma(clock, adapter)
    with pytest.raises(RateLimitError):
        oma.run_agent(AgentConfig(name="a"), "hello")
    assert len(adapter.calls) == 1
    assert clock.sleeps == []


def test_open_circuit_with_long_retry_after_fails_task_without_request(clock: FakeClock) -> None:
    adapter = ScriptedAdapter(["unused"])
    oma = _oma(clock, adapter)
    oma.pool.breaker(adapter.endpoint.key).open_for(3600.0)
    with pytest.raises(CircuitOpenError) as info:
        oma.run_agent(AgentConfig(name="a"), "hello")
    assert info.value.retry_after_s > oma.retry.max_delay_s
    assert adapter.calls == []


def test_one_failing_endpoint_does_not_stop_another(clock: FakeClock) -> None:
    down = ProviderUnavailableError("bad", "down", status_code=503)
    bad = ScriptedAdapter(lambda m: (_ for _ in ()).throw(down), name="bad")
    good = ScriptedAdapter(lambda m: "fine", name="good")
    team = OpenMultiAgent.create_team(
        "t", AgentConfig(name="flaky", adapter=bad), AgentConfig(name="solid", adapter=good)
    )
    tasks = [Task(id=f"bad{i}", description="x", agent="flaky") for i in range(4)]
    tasks += [Task(id=f"good{i}", description="y", agent="solid") for i in range(4)]
    oma = _oma(clock, None, max_concurrent=1, consecutive_failure_limit=2)
    oma.retry = RetryPolicy(max_attempts=2, max_delay_s=1.0, max_total_delay_s=1.5)
    result = oma.run_tasks(tasks, team)

    assert all(result[f"good{i}"].status is TaskState.DONE for i in range(4))
    assert all(result[f"bad{i}"].status is TaskState.FAILED for i in range(4))
    status = oma.get_status()
    endpoints = status["endpoints"]
    assert isinstance(endpoints, dict)
    assert endpoints[bad.endpoint.key]["state"] == "open"
    assert endpoints[good.endpoint.key]["state"] == "closed"
    assert status["pool_state"] == "open"
    # Once open, the bad endpoint's later tasks were rejected without requests.
    assert len(bad.calls) < 4 * 2


def test_everything_is_validated_before_any_call(clock: FakeClock) -> None:
    adapter = ScriptedAdapter(["never"])
    oma = _oma(clock, adapter)
    team = OpenMultiAgent.create_team("t", AgentConfig(name="a"))
    with pytest.raises(UnknownAgentError, match="'ghost'"):
        oma.run_tasks(
            [Task(id="ok", agent="a"), Task(id="bad", agent="ghost", depends_on=["ok"])], team
        )
    with pytest.raises(CyclicDependencyError):
        oma.run_tasks(
            [Task(id="x", agent="a", depends_on=["y"]), Task(id="y", agent="a", depends_on=["x"])],
            team,
        )
    with pytest.raises(UnknownAgentError, match="no agent"):
        oma.run_tasks([Task(id="anon")], team)
    assert adapter.calls == []


def test_duplicate_agent_names_are_rejected() -> None:
    with pytest.raises(DuplicateAgentError, match="'twin'"):
        OpenMultiAgent.create_team("t", AgentConfig(name="twin"), AgentConfig(name="twin"))


def test_events_tell_the_story_of_a_run(clock: FakeClock) -> None:
    adapter = ScriptedAdapter(
        [ChatResponse(text="r1", usage=Usage(input_tokens=3, output_tokens=5))]
    )
    events: list[RunEvent] = []
    team = OpenMultiAgent.create_team("t", AgentConfig(name="a"))
    result = _oma(clock, adapter).run_tasks(
        [Task(id="only", description="d", agent="a")], team, on_event=events.append
    )
    kinds = [type(e) for e in events if not isinstance(e, TaskOutputDelta)]
    assert kinds == [TaskStarted, TaskSucceeded]
    # With on_event given, answers stream: the chunks add up to the recorded output.
    deltas = [e for e in events if isinstance(e, TaskOutputDelta)]
    assert deltas
    assert all(d.task_id == "only" for d in deltas)
    assert "".join(d.text for d in deltas) == result["only"].output == "r1"
    succeeded = events[-1]
    assert isinstance(succeeded, TaskSucceeded)
    assert succeeded.usage == Usage(input_tokens=3, output_tokens=5)
    assert result.usage == Usage(input_tokens=3, output_tokens=5)


def test_a_raising_event_handler_does_not_break_the_run(clock: FakeClock) -> None:
    def handler(event: RunEvent) -> None:
        raise RuntimeError("display crashed")

    team = OpenMultiAgent.create_team("t", AgentConfig(name="a"))
    result = _oma(clock, ScriptedAdapter(["x"])).run_tasks(
        [Task(id="t", agent="a")], team, on_event=handler
    )
    assert result.summary() == {"done": 1}


def test_run_result_json_round_trip(clock: FakeClock) -> None:
    def reply(messages: Sequence[Message]) -> str:
        if _last_user(messages).startswith("b"):
            raise InvalidRequestError("s", "nope", status_code=422)
        return "out-" + _last_user(messages)[:1]

    team = OpenMultiAgent.create_team("t", AgentConfig(name="a"))
    tasks = [
        Task(id="a", description="a", agent="a"),
        Task(id="b", description="b", agent="a"),
        Task(id="c", description="c", agent="a", depends_on=["b"]),
    ]
    result = _oma(clock, ScriptedAdapter(reply)).run_tasks(tasks, team)
    text = result.to_json()
    assert json.loads(text)["summary"] == {"done": 1, "failed": 1, "skipped": 1}
    again = RunResult.from_json(text)
    assert again == result
    with pytest.raises(ValueError, match="not valid JSON"):
        RunResult.from_json("{")
    with pytest.raises(ValueError, match="format"):
        RunResult.from_json('{"format": 99}')


def test_resume_keeps_done_outputs_and_reruns_the_rest(clock: FakeClock) -> None:
    outage = {"on": True}

    def reply(messages: Sequence[Message]) -> str:
        prompt = _last_user(messages)
        if prompt.startswith("draft") and outage["on"]:
            raise InvalidRequestError("s", "outage", status_code=400)
        return "out:" + prompt.splitlines()[0]

    adapter = ScriptedAdapter(reply)
    tasks, _ = _pipeline_team()
    tasks = [Task(id=t.id, description=t.id, agent="a", depends_on=t.depends_on) for t in tasks]
    team = OpenMultiAgent.create_team("t", AgentConfig(name="a"))
    oma = _oma(clock, adapter)
    first = oma.run_tasks(tasks, team)
    assert first.summary() == {"done": 1, "failed": 1, "skipped": 2}

    outage["on"] = False
    calls_before = len(adapter.calls)
    second = oma.run_tasks(tasks, team, resume=RunResult.from_json(first.to_json()))
    assert second.summary() == {"done": 4}
    assert second["research"].output == first["research"].output
    assert len(adapter.calls) - calls_before == 3  # research was not asked again

    # An edited task runs again, and so does what depends on it; nothing is refused.
    changed = [Task(id="research", description="something else", agent="a"), *tasks[1:]]
    plan = oma.plan_resume(changed, team, second)
    assert plan.kept == ()
    assert plan.rerun["research"] == "its description changed"
    calls_before = len(adapter.calls)
    third = oma.run_tasks(changed, team, resume=plan)
    assert third.summary() == {"done": 4}
    assert third["research"].output == "out:something else"
    # draft's prompt changed with research's output, so it ran; its own output came out the
    # same ("out:draft"), so what depends on it was kept without a call (early cutoff).
    assert len(adapter.calls) - calls_before == 2
    assert {t: third[t].output for t in ("translate", "publish")} == {
        t: second[t].output for t in ("translate", "publish")
    }


def test_run_agent_returns_answer_usage_and_attempts(clock: FakeClock) -> None:
    adapter = ScriptedAdapter(
        [
            ProviderUnavailableError("s", "blip", status_code=502),
            ChatResponse(text="answer", usage=Usage(input_tokens=10, output_tokens=2)),
        ]
    )
    result = _oma(clock, adapter).run_agent(AgentConfig(name="a", system_prompt="sys"), "q")
    assert str(result) == "answer"
    assert result.attempts == 2
    assert result.usage == Usage(input_tokens=10, output_tokens=2)
    assert adapter.calls[0].system == "sys"


def test_get_status_has_the_article_keys(clock: FakeClock) -> None:
    pool = AgentPool(max_concurrent=4, consecutive_failure_limit=5, recovery_timeout_s=30.0)
    oma = OpenMultiAgent(pool=pool)
    status = oma.get_status()
    assert status["pool_state"] == "closed"
    assert status["pool_consecutive_failures"] == 0
    assert status["pool_active"] == 0
    assert status["pool_max_concurrent"] == 4
    assert status["endpoints"] == {}


def test_async_run_matches_sync_run(clock: FakeClock) -> None:
    def reply(messages: Sequence[Message]) -> str:
        prompt = _last_user(messages)
        if prompt.startswith("draft"):
            raise InvalidRequestError("s", "x", status_code=400)
        return "out:" + prompt.splitlines()[0]

    tasks, _ = _pipeline_team()
    tasks = [Task(id=t.id, description=t.id, agent="a", depends_on=t.depends_on) for t in tasks]
    team = OpenMultiAgent.create_team("t", AgentConfig(name="a"))
    sync_result = _oma(clock, ScriptedAdapter(reply)).run_tasks(tasks, team)
    async_result = asyncio.run(_oma(clock, ScriptedAdapter(reply)).arun_tasks(tasks, team))

    def strip(r: RunResult) -> dict[str, tuple[TaskState, str | None, str | None]]:
        return {k: (v.status, v.output, v.blamed) for k, v in r.items()}

    assert strip(sync_result) == strip(async_result)
