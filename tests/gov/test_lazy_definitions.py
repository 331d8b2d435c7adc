"""A result's definition digests are made when first read, and read as the dict they stand for."""

from __future__ import annotations

import copy
import pickle

from aegis_gov import AgentConfig, OpenMultiAgent, RunResult, ScriptedAdapter, Task
from aegis_gov._resume import definition


def _result() -> RunResult:
    oma = OpenMultiAgent(default_adapter=ScriptedAdapter(["ok"], cycle=True))
    team = oma.create_team("t", AgentConfig(name="w", system_prompt="be brief"))
    tasks = [
        Task(id="a", description="first", agent="w"),
        Task(id="b", description="second", agent="w", depends_on=["a"]),
    ]
    with oma:
        return oma.run_tasks(tasks, team)


def test_a_definition_reads_compares_and_prints_as_a_dict() -> None:
    result = _result()
    parts = result["b"].definition
    plain = dict(parts)
    assert set(plain) == {
        "description",
        "depends_on",
        "agent",
        "system_prompt",
        "model",
        "tools",
        "output",
    }
    assert plain["description"] == definition(Task(id="b", description="second"))["description"]
    assert parts == plain
    assert plain == parts
    assert repr(parts) == repr(plain)
    assert parts.get("nothing") is None
    assert pickle.loads(pickle.dumps(parts)) == plain
    assert type(pickle.loads(pickle.dumps(parts))) is dict
    assert copy.deepcopy(result)["b"].definition == plain


def test_a_result_with_lazy_definitions_round_trips_through_json() -> None:
    result = _result()
    again = RunResult.from_json(result.to_json())
    assert again == result
    assert {k: dict(v.definition) for k, v in again.items()} == {
        k: dict(v.definition) for k, v in result.items()
    }


def test_once_read_a_definition_lets_its_task_go() -> None:
    from aegis_gov._durable import _TaskDefinition  # noqa: PLC0415

    task = Task("a", description="a long prompt " * 1000, agent="w")
    definition = _TaskDefinition(task, {"agent": "w"})
    before = dict(definition)
    assert definition._task is None  # the description is no longer held
    assert dict(definition) == before  # and it still reads the same
