"""A pipeline file's agent may declare ``output_schema`` (a JSON Schema table): its answers
are checked against it, and a schema that is not one is refused naming the agent. Structured
answers in checkpoint stores and resumed runs."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest
from aegis_gov import AgentConfig, Checkpoint, OpenMultiAgent, ScriptedAdapter, Task, TaskState
from aegis_gov._pipeline import PipelineError, parse_pipeline

PIPELINE = """
[[agents]]
name = "grader"
provider = "scripted"
replies = ['{"grade": "A"}', '{"grade": 5}']
output_retries = 1

[agents.output_schema]
type = "object"
required = ["grade"]
properties.grade = { type = "integer", minimum = 0 }

[[tasks]]
id = "grade"
description = "Grade the essay."
agent = "grader"
"""


def test_an_agent_with_an_output_schema_returns_checked_json() -> None:
    pipeline = parse_pipeline(PIPELINE, path="p.toml")
    team = pipeline.team()
    agent = team["grader"]
    assert agent.output_retries == 1
    assert agent.output_schema is not None
    assert agent.output_schema.schema["required"] == ["grade"]

    run = OpenMultiAgent().run_tasks(pipeline.tasks, team)

    assert run["grade"].status is TaskState.DONE
    assert run["grade"].value == {"grade": 5}  # the first reply was sent back
    assert json.loads(run["grade"].output or "") == {"grade": 5}
    assert run["grade"].attempts == 2


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('output_schema = { type = "array" }', "must describe a JSON object"),
        ('output_schema = { type = "object", required = "grade" }', "not a valid JSON Schema"),
        ('output_schema = "grade"', "a table"),
        ("output_retries = -1", "output_retries"),
    ],
)
def test_a_bad_output_schema_names_the_agent(table: str, problem: str) -> None:
    text = '[[agents]]\nname = "g"\nprovider = "echo"\n' + table + '\n[[tasks]]\nid = "t"\n'
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text, path="p.toml")
    assert info.value.entry is not None
    assert "'g'" in info.value.entry or "agents[0]" in info.value.entry
    assert problem in str(info.value)


class Grade(pydantic.BaseModel):
    grade: int


def test_a_checkpointed_structured_answer_resumes_as_json_data(tmp_path: Path) -> None:
    """The value is committed as JSON data; a resumed run keeps it and hands it on as JSON."""
    grader = AgentConfig("grader", output_type=Grade)
    writer = AgentConfig("writer")
    tasks = [
        Task("grade", "Grade.", agent="grader"),
        Task("say", "Say it.", agent="writer", depends_on=["grade"]),
    ]
    team = OpenMultiAgent.create_team("t", grader, writer)
    first = ScriptedAdapter(['{"grade": 4}', RuntimeError("crash")])
    with Checkpoint(tmp_path / "runs.db") as store:
        run = OpenMultiAgent(default_adapter=first).run_tasks(tasks, team, checkpoint=store)
        assert run["grade"].value == Grade(grade=4)
        assert run["say"].status is TaskState.FAILED
        stored = store.load(run.run_id or "")
    assert stored["grade"].value == {"grade": 4}

    second = ScriptedAdapter(["Four."])
    again = OpenMultiAgent(default_adapter=second).run_tasks(tasks, team, resume=stored)

    assert again["grade"].value == {"grade": 4}  # kept, as read back
    assert again["say"].output == "Four."
    assert second.calls[0].prompt.endswith('--- grade ---\n{"grade": 4}')
