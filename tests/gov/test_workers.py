"""A facade keeps its worker threads between runs, lends them to one run at a time, and
lets them go on close(); a run that gives up on a thread retires the pool."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from aegis_gov import AgentConfig, AgentPool, Message, OpenMultiAgent, ScriptedAdapter, Task
from aegis_gov._run import Workers

TASKS = [Task(id="a", agent="w"), Task(id="b", agent="w", depends_on=["a"])]


def _threads_seen() -> tuple[list[str], ScriptedAdapter]:
    seen: list[str] = []

    def reply(messages: Sequence[Message]) -> str:
        seen.append(threading.current_thread().name)
        return "ok"

    return seen, ScriptedAdapter(reply)


def _aegis_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("aegis_")}


def test_runs_reuse_the_facades_threads_and_close_lets_them_go() -> None:
    seen, adapter = _threads_seen()
    before = _aegis_threads()
    with OpenMultiAgent(AgentPool(max_concurrent=2), default_adapter=adapter) as oma:
        team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
        for _ in range(5):
            assert oma.run_tasks(TASKS, team).ok
        workers = _aegis_threads() - before
        assert set(seen) <= {t.name for t in workers}  # the same pool served every run
        assert 1 <= len(workers) <= 2  # a chain needs one thread at a time; none leaked
    for thread in workers:
        thread.join(timeout=10)
        assert not thread.is_alive()
    # Closed, the facade still runs: on threads of the run's own.
    assert oma.run_tasks(TASKS, team).ok


def test_a_second_run_at_the_same_time_gets_its_own_pool() -> None:
    both_in = threading.Barrier(2)

    def reply(messages: Sequence[Message]) -> str:
        both_in.wait(timeout=10)  # each run is inside a call when the other one is
        return threading.current_thread().name

    oma = OpenMultiAgent(default_adapter=ScriptedAdapter(reply))
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    outputs: list[str] = []

    def run() -> None:
        outputs.append(oma.run_tasks(TASKS[:1], team)["a"].output or "")

    runners = [threading.Thread(target=run) for _ in range(2)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout=20)
    assert len(outputs) == 2
    oma.close()


def test_a_pool_that_gave_up_on_a_thread_is_not_lent_again() -> None:
    workers = Workers(2)
    with workers.borrow() as (first, retire):
        retire()
    with workers.borrow() as (second, _retire):
        assert second is not first
    with workers.borrow() as (third, _retire):
        assert third is second  # kept: nothing was given up
    workers.close()
    with workers.borrow() as (fourth, _retire):
        assert fourth is not third
    with pytest.raises(RuntimeError):  # closed pools are shut down after their run
        fourth.submit(print)


def test_a_task_past_its_deadline_retires_the_pool() -> None:
    release = threading.Event()

    def reply(messages: Sequence[Message]) -> str:
        if messages[-1].content == "slow":
            release.wait(timeout=10)
        return "ok"

    oma = OpenMultiAgent(default_adapter=ScriptedAdapter(reply))
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    result = oma.run_tasks([Task(id="s", description="slow", agent="w")], team, task_timeout_s=0.05)
    assert result["s"].error_type == "DeadlineExceededError"
    release.set()
    assert oma.run_tasks(TASKS, team).ok  # a fresh pool: the stuck thread is not waited on
    oma.close()
