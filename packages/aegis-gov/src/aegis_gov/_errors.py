"""The errors aegis-gov raises itself (adapters, graphs and breakers keep their own)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aegis_gov._results import RunResult


class AegisError(Exception):
    """Base class of every error raised by aegis-gov itself."""


class DuplicateAgentError(AegisError, ValueError):
    """Two agents of one team share a name."""

    def __init__(self, team: str, agent: str) -> None:
        """Record the team and the repeated agent name."""
        super().__init__(f"team {team!r} has more than one agent named {agent!r}")
        self.team = team
        self.agent = agent


class UnknownAgentError(AegisError, ValueError):
    """A task names an agent that its team does not have."""

    def __init__(self, task_id: str, agent: str | None, team: str, known: Sequence[str]) -> None:
        """Record the task, the agent it asked for and the agents the team has."""
        wanted = "no agent" if agent is None else f"agent {agent!r}"
        super().__init__(
            f"task {task_id!r} asks for {wanted}, but team {team!r} has only "
            f"{', '.join(map(repr, known)) or 'no agents'}"
        )
        self.task_id = task_id
        self.agent = agent
        self.team = team


class ToolLoopError(AegisError):
    """An agent kept calling tools for more than its ``max_tool_rounds``."""

    def __init__(self, agent: str, max_tool_rounds: int) -> None:
        """Record the agent and the limit it reached."""
        super().__init__(
            f"agent {agent!r} was still calling tools after {max_tool_rounds} rounds "
            "(raise AgentConfig.max_tool_rounds if this is expected)"
        )
        self.agent = agent
        self.max_tool_rounds = max_tool_rounds


class RunCancelledError(AegisError):
    """A run was cancelled; ``result`` holds everything that finished before it stopped."""

    def __init__(self, result: RunResult) -> None:
        """Attach the partial result."""
        summary = result.summary()
        super().__init__(f"run cancelled; partial result: {summary}")
        self.result = result


class IncompatibleResumeError(AegisError, ValueError):
    """A previous result cannot be resumed because the task graph changed."""

    def __init__(self, differences: Sequence[str]) -> None:
        """Record every difference found."""
        super().__init__("cannot resume: " + "; ".join(differences))
        self.differences = tuple(differences)
