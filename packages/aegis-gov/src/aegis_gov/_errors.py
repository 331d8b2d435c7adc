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
        self.differences: tuple[str, ...] = tuple(differences)


class DeadlineExceededError(AegisError, TimeoutError):
    """A task ran past its ``task_timeout_s``, or was still running at the run's deadline."""

    def __init__(self, task_id: str, limit_s: float, *, scope: str) -> None:
        """Record the task, the limit in seconds and whether it was the task's or the run's."""
        super().__init__(f"task {task_id!r} exceeded the {scope} deadline of {limit_s:g} s")
        self.task_id = task_id
        self.limit_s = limit_s
        self.scope = scope


class StreamInterruptedError(AegisError):
    """A stream failed after chunks had already been handed out, so it cannot be retried.

    The provider's error is chained as ``__cause__``.
    """

    def __init__(self, agent: str, error: BaseException) -> None:
        """Record the agent and the provider's error."""
        super().__init__(f"agent {agent!r}: the stream broke after output was sent: {error}")
        self.agent = agent


class RunCancelledTaskError(AegisError):
    """A task was still running when its run was cancelled."""

    def __init__(self, task_id: str) -> None:
        """Record the task."""
        super().__init__(f"task {task_id!r} was still running when the run was cancelled")
        self.task_id = task_id


class ResultFormatError(AegisError, ValueError):
    """A run result given to :meth:`RunResult.from_json` (or ``from_dict``) is malformed.

    Attributes:
        field: Where the problem is, as a path into the JSON document (``"tasks[2].attempts"``),
            or ``None`` for the document as a whole.
        problem: What is wrong, in words.
    """

    def __init__(self, field: str | None, problem: str) -> None:
        """Record where the problem is and what it is."""
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem
