"""Agents and teams: who does the work, with which model and tools."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Generic

import attrs
from aegis_adapters import LLMAdapter, OutputSchema
from typing_extensions import TypeVar

from aegis_gov._errors import DuplicateAgentError
from aegis_gov._output import OutputSpec, output_spec

__all__ = ["AgentConfig", "OutputT_co", "Team", "output_checks"]

OutputT_co = TypeVar("OutputT_co", covariant=True, default=object)
"""The type of an agent's answer: its ``output_type``; ``object`` when it has none (the
answer is then the text, ``str``) or when it is a JSON Schema dict (a ``dict``)."""


def _non_empty(_instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _tool_names(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        # A bare string would silently become one tool per character.
        raise TypeError(f"tools must be a sequence of tool names, not the string {value!r}")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"tool names must be strings, got {name!r}")
    return names


def _positive_count(_instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value!r}")


def _adapter(_instance: object, _attribute: object, value: LLMAdapter | None) -> None:
    if value is not None and not isinstance(value, LLMAdapter):
        raise TypeError(
            f"adapter must be an adapter (with generate and stream) or None, got {value!r:.80}"
        )


def _fallbacks(value: Iterable[LLMAdapter]) -> tuple[LLMAdapter, ...]:
    if isinstance(value, LLMAdapter):
        raise TypeError("fallbacks must be a sequence of adapters, not one adapter")
    adapters = tuple(value)
    for adapter in adapters:
        if not isinstance(adapter, LLMAdapter):
            raise TypeError(f"fallbacks must be adapters, got {adapter!r:.80}")
    return adapters


def _count(_instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class AgentConfig(Generic[OutputT_co]):
    """One agent: a name, a system prompt, an optional adapter and the tools it may call.

    ``adapter=None`` means the run's default adapter. ``tools`` names tools of the
    :class:`~aegis_gov.ToolRegistry` the agent is offered, and the only ones it can run: a
    call to any other tool is refused (:class:`~aegis_gov.ToolNotOfferedError`) and the
    model is told. The conversation ends with an error after ``max_tool_rounds`` rounds of
    tool calls. One reply may ask for at most ``max_tool_calls_per_reply`` calls, and the
    tools' results fed back to the model add up to at most ``max_tool_output_chars``
    characters over the conversation; calls past either limit are refused
    (:class:`~aegis_gov.ToolCallLimitError`) without running, and the model is told.

    ``fallbacks`` are adapters tried in order when the agent's own is out: its retry budget
    spent on retryable errors, or its circuit open. Each gets a fresh retry budget; a
    :class:`~aegis_gov.FellBack` event says when a task moves on, and the result's
    ``endpoint`` names the one that answered. A permanent error (400, 401, 404) ends the task
    instead, unless ``fall_back_on_permanent_errors``.

    ``output_type`` makes the answer a validated object (see the docs' "Structured output"
    page): a pydantic model, a dataclass, a TypedDict, or a JSON Schema dict (whose answers
    are ``dict``, typed ``object``). Providers that can be asked for a JSON Schema get it
    natively (OpenAI ``response_format``, Ollama ``format``, Anthropic a forced tool call);
    others get it in the prompt. An answer that does not validate is sent back with what was
    wrong, up to ``output_retries`` times, then the task fails with
    :class:`~aegis_gov.OutputValidationError`. The result's ``value`` is the object, typed:
    ``run_agent`` on an ``AgentConfig(..., output_type=Report)`` returns an
    ``AgentResult[Report]``.
    """

    name: str = attrs.field(validator=_non_empty)
    system_prompt: str = ""
    adapter: LLMAdapter | None = attrs.field(default=None, eq=False, validator=_adapter)
    tools: tuple[str, ...] = attrs.field(default=(), converter=_tool_names)
    fallbacks: tuple[LLMAdapter, ...] = attrs.field(default=(), converter=_fallbacks, eq=False)
    fall_back_on_permanent_errors: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool)
    )
    max_tool_rounds: int = attrs.field(default=8, validator=_positive_count)
    max_tool_calls_per_reply: int = attrs.field(default=16, validator=_positive_count)
    max_tool_output_chars: int = attrs.field(default=256_000, validator=_positive_count)
    output_type: type[OutputT_co] | Mapping[str, object] | None = attrs.field(
        default=None,
        kw_only=True,
        hash=False,  # a JSON Schema dict cannot be hashed
    )
    output_retries: int = attrs.field(default=2, kw_only=True, validator=_count)
    _output: OutputSpec | None = attrs.field(init=False, default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        """Make the output type's JSON Schema now, so a bad ``output_type`` fails here."""
        if self.output_type is not None:
            object.__setattr__(self, "_output", output_spec(self.output_type))

    @property
    def output_schema(self) -> OutputSchema | None:
        """The JSON Schema answers must match, as providers are sent it (None: plain text)."""
        return None if self._output is None else self._output.request


def output_checks(agent: AgentConfig) -> OutputSpec | None:
    """How *agent*'s answers are checked and turned to JSON (None: plain text answers)."""
    return agent._output  # noqa: SLF001  # made once, with the agent


def _agents(value: Iterable[AgentConfig]) -> tuple[AgentConfig, ...]:
    return tuple(value)


@attrs.frozen
class Team(Mapping[str, AgentConfig]):
    """A named set of agents with distinct names, looked up by name."""

    name: str = attrs.field(validator=_non_empty)
    agents: tuple[AgentConfig, ...] = attrs.field(converter=_agents)
    _by_name: dict[str, AgentConfig] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        """Index the agents, rejecting a repeated name."""
        by_name: dict[str, AgentConfig] = {}
        for agent in self.agents:
            if not isinstance(agent, AgentConfig):
                raise TypeError(f"team {self.name!r}: expected AgentConfig, got {agent!r}")
            if agent.name in by_name:
                raise DuplicateAgentError(self.name, agent.name)
            by_name[agent.name] = agent
        object.__setattr__(self, "_by_name", by_name)

    def __getitem__(self, name: str) -> AgentConfig:
        """The agent called ``name``; ``KeyError`` if there is none."""
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        """Agent names, in the order they were given."""
        return iter(self._by_name)

    def __len__(self) -> int:
        """How many agents the team has."""
        return len(self._by_name)
