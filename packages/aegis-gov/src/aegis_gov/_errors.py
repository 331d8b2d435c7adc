"""The errors aegis-gov raises itself (adapters, graphs and breakers keep their own)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from aegis_adapters import RateLimitError
from aegis_breaker import BreakerError, CircuitOpenError

__all__ = [
    "AegisError",
    "CircuitWaitTooLongError",
    "DeadlineExceededError",
    "DuplicateAgentError",
    "EndpointBusyError",
    "IncompatibleResumeError",
    "RetryAfterTooLongError",
    "RunCancelledTaskError",
    "StreamInterruptedError",
    "ToolLoopError",
    "UnknownAgentError",
]


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
        has = f"has only {', '.join(map(repr, known))}" if known else "has no agents"
        super().__init__(f"task {task_id!r} asks for {wanted}, but team {team!r} {has}")
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


class CircuitWaitTooLongError(CircuitOpenError, AegisError):
    """A task stopped waiting for an endpoint's circuit: its retry budget cannot cover the wait.

    A :class:`~aegis_breaker.CircuitOpenError` (catch either); ``budget`` names the setting of
    :class:`~aegis_gov.RetryPolicy` that the wait would break.
    """

    def __init__(
        self, breaker_name: str | None, retry_after_s: float, state: str, budget: str
    ) -> None:
        """Record the breaker's answer and the budget it would break."""
        super().__init__(breaker_name, retry_after_s, state)
        self.budget = budget

    def __str__(self) -> str:
        """The breaker's words, then the budget that ran out."""
        return f"{super().__str__()}; gave up waiting: {self.budget}"

    def __reduce__(  # type: ignore[override]
        self,
    ) -> tuple[type[CircuitWaitTooLongError], tuple[str | None, float, str, str]]:
        """Pickle with the constructor arguments."""
        return (type(self), (self.breaker_name, self.retry_after_s, self.state, self.budget))


class RetryAfterTooLongError(RateLimitError, AegisError):
    """A task gave up on a 429 whose ``Retry-After`` is longer than it may wait.

    A :class:`~aegis_adapters.RateLimitError` (catch either), with the provider's words and
    ``retry_after_s``; ``max_delay_s`` is the :class:`~aegis_gov.RetryPolicy` setting the
    wait would exceed. (Other tasks of the endpoint wait out a hold of at most that long
    and try again: a provider may ask for more than it needs.)
    """

    def __init__(self, error: RateLimitError, max_delay_s: float) -> None:
        """The task's *error*, and the ``max_delay_s`` its ``Retry-After`` exceeds.

        Both are kept as floats (an int or a Fraction is converted).

        Raises:
            ValueError: *max_delay_s* is not a finite number > 0 (as ``RetryPolicy`` takes
                it), or the error's ``retry_after_s`` is not more than it (that Retry-After
                ended nothing), or either is too large for a float.
        """
        try:
            most = float(max_delay_s)
            after = None if error.retry_after_s is None else float(error.retry_after_s)
        except OverflowError as exc:
            raise ValueError(
                f"max_delay_s={max_delay_s!r} or retry_after_s={error.retry_after_s!r} "
                "is too large for a float"
            ) from exc
        if not (math.isfinite(most) and most > 0):  # as RetryPolicy takes it
            raise ValueError(f"max_delay_s must be a finite number > 0, got {max_delay_s!r}")
        if after is not None and not after > most:
            raise ValueError(
                f"retry_after_s={after!r} is not more than max_delay_s={most!r}: "
                "a task waits that out, it does not give up on it"
            )
        super().__init__(
            error.provider,
            error.provider_message,
            status_code=error.status_code,
            retry_after_s=after,
        )
        self.max_delay_s = most

    def __str__(self) -> str:
        """The provider's words, then why the task did not wait."""
        after, most = self.retry_after_s, self.max_delay_s
        if after is None:
            return f"{super().__str__()}; gave up: RetryPolicy.max_delay_s={most:g} was too short"
        shown, limit = _seconds(after), _seconds(most)
        if not float(shown) > float(limit):  # they read alike: a hair over, or both rounded
            shown, limit = repr(after), repr(most)
        return (
            f"{super().__str__()}; gave up: the provider asked to wait {shown} s, "
            f"more than RetryPolicy.max_delay_s={limit}"
        )


def _seconds(value: float) -> str:
    """*value* in seconds, readably.

    Whole seconds from a million up to 1e15 (123456789, not 1.23457e+08; beyond, the float's
    noise digits would show), else six significant digits.
    """
    if _WHOLE_FROM <= value < _WHOLE_UNTIL:
        return f"{value:.0f}"
    return f"{value:g}"


_WHOLE_FROM = 1e6  # seconds shown as a whole number from here on
_WHOLE_UNTIL = 1e15  # and up to here: beyond, the float's noise digits would show


class EndpointBusyError(BreakerError, AegisError):
    """An endpoint already has as many calls in flight as its adaptive limit allows.

    No request was made; a task waits (parked) and tries again. It reaches a caller only
    from the lower-level :class:`~aegis_gov._caller.EndpointCaller`.
    """

    def __init__(
        self, endpoint: str, limit: int, *, stalled_s: float = 0.0, queued: bool = False
    ) -> None:
        """Record the endpoint, its limit at the time and how long its calls made no progress.

        *stalled_s*: seconds since a call of the endpoint last started or ended. A task
        gives up (or falls back) once that exceeds its ``RetryPolicy.max_total_delay_s``.
        *queued*: whether the task was queued to be woken, first come first served, when a
        call of the endpoint ends (it then looks again only rarely, as a safety net).
        """
        stalled = f"; none started or ended in {stalled_s:.3g} s" if stalled_s >= 1.0 else ""
        super().__init__(f"endpoint {endpoint!r} has its {limit} call(s) in flight{stalled}")
        self.endpoint = endpoint
        self.limit = limit
        self.stalled_s = stalled_s
        self.queued = queued

    def __reduce__(self) -> tuple[Callable[..., EndpointBusyError], tuple[object, ...]]:
        """Pickle with the constructor arguments."""
        return (_busy, (type(self), self.endpoint, self.limit, self.stalled_s, self.queued))


def _busy(  # pickle passes the arguments by position
    cls: type[EndpointBusyError],
    endpoint: str,
    limit: int,
    stalled_s: float,
    queued: bool,  # noqa: FBT001
) -> EndpointBusyError:
    return cls(endpoint, limit, stalled_s=stalled_s, queued=queued)
