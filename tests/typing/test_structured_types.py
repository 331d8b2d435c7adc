"""Checked by mypy --strict and pyright, never run for behaviour: structured output as a strict
user sees it. The answer's type follows the agent's ``output_type``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pydantic
from aegis_gov import (
    AgentConfig,
    AgentResult,
    OpenMultiAgent,
    OutputSchema,
    OutputValidationError,
    RunResult,
    Team,
)
from typing_extensions import TypedDict, assert_type


class Report(pydantic.BaseModel):
    title: str
    score: int


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Person(TypedDict):
    name: str


async def structured(oma: OpenMultiAgent, run: RunResult) -> None:
    report = AgentConfig("writer", output_type=Report)
    assert_type(report, AgentConfig[Report])
    result = oma.run_agent(report, "Write it.")
    assert_type(result, AgentResult[Report])
    assert_type(result.value, Report)
    assert_type(result.value.score, int)
    assert_type(result.output, str)  # the answer's JSON text
    assert_type((await oma.arun_agent(report, "Again.")).value, Report)

    assert_type(oma.run_agent(AgentConfig("p", output_type=Point), "x").value, Point)
    assert_type(oma.run_agent(AgentConfig("q", output_type=Person), "x").value, Person)

    # A JSON Schema dict, or no output_type: the value is not narrowed (use .output for text).
    schema = AgentConfig("s", output_type={"type": "object"})
    assert_type(oma.run_agent(schema, "x").value, object)
    assert_type(oma.run_agent(AgentConfig("plain"), "x").value, object)
    assert_type(oma.run_agent(AgentConfig("plain"), "x").output, str)

    # Existing annotations keep working: agents of any output type are AgentConfigs.
    any_agent: AgentConfig = report
    assert_type(oma.run_agent(widened(any_agent), "x").value, object)
    team: Team = OpenMultiAgent.create_team("t", report, AgentConfig("plain"), schema)
    assert_type(team["writer"], AgentConfig)
    assert_type(run["task"].value, object)
    assert_type(report.output_schema, OutputSchema | None)
    assert_type(report.output_retries, int)


def widened(agent: AgentConfig) -> AgentConfig:
    return agent


if TYPE_CHECKING:

    def failed(error: OutputValidationError) -> None:
        assert_type(error.problem, str)
        assert_type(error.answers, int)
        assert_type(error.answer, str)
        assert_type(error.agent, str)
