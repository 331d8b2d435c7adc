"""Agents and teams: who does the work, with which model and tools."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import attrs
from aegis_adapters import LLMAdapter

from aegis_gov._errors import DuplicateAgentError

__all__ = ["AgentConfig", "Team"]


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


@attrs.frozen
class AgentConfig:
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
