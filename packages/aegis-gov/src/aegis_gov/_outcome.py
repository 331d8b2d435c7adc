"""How an agent's work ends, as values: an :class:`AgentResult` or a :class:`Failure`.

An exception raised by an adapter or a tool is caught once, by the driver that carried out
the command, and handed on as a :class:`Raised` value; the conversation decides what it means
and ends, if it must, with a :class:`Failure`, which the run records. Nothing on the way
raises and catches it again.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs
from aegis_adapters import Usage

from aegis_gov._results import AgentResult, ToolCallRecord

__all__ = ["Failure", "Outcome", "Raised"]


@attrs.frozen
class Failure:
    """An agent's work ended without an answer: the error, and what it had done so far."""

    error: Exception
    attempts: int = 0
    usage: Usage = Usage()
    tool_calls: tuple[ToolCallRecord, ...] = ()


@attrs.frozen
class Raised:
    """A command's exception, handed to the conversation as a value.

    ``served``: for a 429, how many requests its endpoint had answered by then (None when
    unknown), and ``answering``: whether it answered one within its breaker's recovery
    timeout, so the conversation can tell a provider pacing from one refusing everyone.
    """

    error: Exception
    served: int | None = None
    answering: bool = False


Outcome: TypeAlias = AgentResult | Failure
"""The end of one agent's work: its answer or its failure."""
