"""What a pipeline file becomes: its agents' provider settings, its agents and the pipeline.

These are plain values; :mod:`aegis_gov._pipeline` builds them from a validated file. Nothing
is contacted until :meth:`Pipeline.team` makes the adapters, through aegis-adapters'
:func:`~aegis_adapters.make_adapter` for real providers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import attrs
from aegis_adapters import (
    AuthenticationError,
    ChatResponse,
    EchoAdapter,
    InvalidRequestError,
    LLMAdapter,
    LLMError,
    Message,
    ModelNotFoundError,
    ProviderUnavailableError,
    RateLimitError,
    ScriptedAdapter,
    ToolCall,
    make_adapter,
)
from aegis_breaker import AgentPool
from aegis_graph import Task, TaskQueue

from aegis_gov._agents import AgentConfig, Team
from aegis_gov._budget import OFFLINE_PROVIDERS, Budget, Price
from aegis_gov._errors import AegisError
from aegis_gov._limits import Limits
from aegis_gov._mcp import MCPServerSpec
from aegis_gov._pipeline_schema import PROVIDERS
from aegis_gov._pipeline_validate import PipelineError, one_of
from aegis_gov._retry import RetryPolicy
from aegis_gov._tool_errors import ToolError
from aegis_gov._tools import ToolRegistry

__all__ = ["AgentSpec", "MCPServerDecl", "Pipeline", "ProviderSpec", "ScriptedReply"]

# Simulated provider errors a scripted reply may raise, by the name a pipeline file uses.
_SCRIPTED_ERRORS: Final[dict[str, tuple[type[LLMError], int]]] = {
    "rate_limit": (RateLimitError, 429),
    "unavailable": (ProviderUnavailableError, 503),
    "auth": (AuthenticationError, 401),
    "not_found": (ModelNotFoundError, 404),
    "invalid": (InvalidRequestError, 400),
}


@attrs.frozen
class ScriptedReply:
    """One reply of a ``scripted`` agent: text and tool calls, or a simulated provider error."""

    text: str = ""
    error: str | None = None
    message: str = ""
    retry_after_s: float | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    def build(self, provider: str) -> str | ChatResponse | Exception:
        """The reply as :class:`~aegis_adapters.ScriptedAdapter` takes it."""
        if self.tool_calls:
            return ChatResponse(self.text, tool_calls=self.tool_calls, stop_reason="tool_use")
        if self.error is None:
            return self.text
        cls, status = _SCRIPTED_ERRORS[self.error]
        message = self.message or f"simulated {self.error} error"
        if cls is RateLimitError:
            return RateLimitError(
                provider, message, status_code=status, retry_after_s=self.retry_after_s
            )
        return cls(provider, message, status_code=status)


@attrs.frozen
class ProviderSpec:
    """Where a model runs: an agent's own provider settings, or one of its ``fallbacks``."""

    provider: str = "auto"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    timeout_s: float | None = None
    replies: tuple[ScriptedReply, ...] = ()
    delay_s: float = 0.0

    def adapter(self, agent: str, *, entry: str, offline_name: str) -> LLMAdapter | None:
        """A new adapter (``None`` for ``auto``); nothing is contacted.

        ``offline_name`` names an ``echo``/``scripted`` endpoint when ``model`` is not set.

        Raises:
            PipelineError: when ``api_key_env`` names an unset environment variable.
        """
        if self.provider == "auto":
            return None
        if self.provider in OFFLINE_PROVIDERS:
            # Each offline model is its own endpoint: one agent's scripted 429 holds back no other.
            name = self.model or offline_name
            if self.provider == "echo":
                return EchoAdapter(name=name, delay_s=self.delay_s)
            if not self.replies:
                return ScriptedAdapter(_canned_reply(agent), name=name, delay_s=self.delay_s)
            replies = [reply.build("scripted") for reply in self.replies]
            return ScriptedAdapter(replies, name=name, delay_s=self.delay_s)
        # Options left None take the adapter's own defaults (1024 tokens, 60 s; Ollama 300 s).
        return make_adapter(
            self.provider,
            self.model,
            base_url=self.base_url,
            api_key=self._api_key(entry),
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            timeout_s=self.timeout_s,
        )

    def _api_key(self, entry: str) -> str | None:
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env)
        if not value:
            raise PipelineError(
                "<pipeline>",
                entry,
                f"api_key_env names {self.api_key_env!r}, which is not set in the environment",
            )
        return value


@attrs.frozen
class AgentSpec:
    """One ``[[agents]]`` entry: who the agent is and which provider and model it uses."""

    name: str
    system_prompt: str = ""
    provider: str = "auto"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    tools: tuple[str, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    timeout_s: float | None = None
    replies: tuple[ScriptedReply, ...] = ()
    delay_s: float = 0.0
    max_tool_rounds: int = 8
    fallbacks: tuple[ProviderSpec, ...] = ()
    fall_back_on_permanent_errors: bool = False
    output_schema: Mapping[str, object] | None = attrs.field(default=None, hash=False)
    output_retries: int = 2

    def adapter(self) -> LLMAdapter | None:
        """A new adapter for this agent (``None`` for ``auto``); nothing is contacted.

        Raises:
            PipelineError: when ``api_key_env`` names an unset environment variable.
        """
        own = ProviderSpec(
            provider=self.provider,
            model=self.model,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            timeout_s=self.timeout_s,
            replies=self.replies,
            delay_s=self.delay_s,
        )
        return own.adapter(self.name, entry=f"agent {self.name!r}", offline_name=self.name)

    def fallback_adapters(self) -> tuple[LLMAdapter, ...]:
        """New adapters for the ``fallbacks``, in order.

        An offline fallback without ``model`` is the endpoint ``<agent>-fallback-<n>``, so it
        never shares the agent's own breaker.

        Raises:
            PipelineError: when a fallback's ``api_key_env`` names an unset variable.
        """
        adapters: list[LLMAdapter] = []
        for i, spec in enumerate(self.fallbacks):
            adapter = spec.adapter(
                self.name,
                entry=f"agent {self.name!r}, fallbacks[{i}]",
                offline_name=f"{self.name}-fallback-{i + 1}",
            )
            if adapter is not None:  # the reader refuses "auto" here; None cannot happen
                adapters.append(adapter)
        return tuple(adapters)

    def config(self) -> AgentConfig:
        """The :class:`AgentConfig` of this agent, with new adapters."""
        return AgentConfig(
            name=self.name,
            system_prompt=self.system_prompt,
            adapter=self.adapter(),
            tools=self.tools,
            fallbacks=self.fallback_adapters(),
            fall_back_on_permanent_errors=self.fall_back_on_permanent_errors,
            max_tool_rounds=self.max_tool_rounds,
            output_type=self.output_schema,
            output_retries=self.output_retries,
        )


@attrs.frozen
class MCPServerDecl:
    """One ``[mcp_servers.NAME]`` table: how to reach the server and which names its tools get."""

    spec: MCPServerSpec
    prefix: str | None = None
    tools: tuple[str, ...] | None = None
    pass_env: tuple[str, ...] = ()
    """Variables of aegis's environment a stdio server also gets (its secrets, say)."""
    headers_env: Mapping[str, str] = attrs.field(factory=dict)
    """HTTP headers whose values are read from these variables (never written in the file)."""

    @property
    def tool_prefix(self) -> str:
        """What the server's tool names are prefixed with (``NAME_`` unless ``prefix`` says)."""
        return f"{self.spec.name}_" if self.prefix is None else self.prefix

    def may_offer(self, tool: str) -> bool:
        """Whether *tool* can be one of this server's, before the server is asked."""
        if not tool.startswith(self.tool_prefix):
            return False
        return self.tools is None or tool.removeprefix(self.tool_prefix) in self.tools

    def add_to(self, registry: ToolRegistry) -> None:
        """Connect to the server and register its tools in *registry*.

        Raises:
            ValueError: a variable ``pass_env`` or ``headers_env`` names is not set.
            The errors of :meth:`ToolRegistry.add_mcp_server`.
        """
        spec = self.spec
        env, headers = spec.env, spec.headers
        if self.pass_env:
            env = {**{name: _variable(name) for name in self.pass_env}, **(env or {})}
        if self.headers_env:
            from_env = {header: _variable(name) for header, name in self.headers_env.items()}
            headers = {**(headers or {}), **from_env}
        registry.add_mcp_server(
            spec.name,
            command=spec.command,
            args=spec.args,
            env=env,
            cwd=spec.cwd,
            url=spec.url,
            headers=headers,
            prefix=self.prefix,
            tools=self.tools,
            timeout_s=spec.timeout_s,
            connect_timeout_s=spec.connect_timeout_s,
        )


def _variable(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise ValueError(f"the environment variable {name!r} is not set")
    return value


def _canned_reply(agent: str) -> Callable[[Sequence[Message]], str | ChatResponse]:
    def reply(messages: Sequence[Message]) -> str:
        prompt = messages[-1].content if messages else ""
        first = prompt.strip().splitlines()[0] if prompt.strip() else "(nothing)"
        return f"{agent} finished: {first}"

    return reply


@attrs.frozen
class Pipeline:
    """A validated pipeline file: settings, agents and tasks.

    Build one with :func:`load_pipeline` or :func:`parse_pipeline`; the graph is known to be
    acyclic, every dependency exists, and every task's agent is declared.
    """

    name: str
    agents: tuple[AgentSpec, ...]
    tasks: tuple[Task, ...]
    path: str = "<pipeline>"
    description: str = ""
    stop_on_failure: bool = False
    max_concurrent: int = 4
    retry: RetryPolicy = RetryPolicy()
    consecutive_failure_limit: int = 5
    recovery_timeout_s: float = 30.0
    tools_root: str | None = None
    shell_allowlist: tuple[str, ...] = ()
    allow_private_network: bool = False
    limits: dict[str, Limits] = attrs.field(factory=dict)
    """``[limits."model"]`` tables: what each model's account allows."""
    budget: Budget | None = None
    """The ``[budget]`` table: the most a run may spend."""
    mcp_servers: tuple[MCPServerDecl, ...] = ()
    """The ``[mcp_servers.NAME]`` tables: servers whose tools the agents may name."""

    def queue(self) -> TaskQueue:
        """A fresh :class:`~aegis_graph.TaskQueue` of the tasks."""
        return TaskQueue(self.tasks, stop_on_failure=self.stop_on_failure)

    def team(self) -> Team:
        """The team, each agent with a new adapter.

        Raises:
            PipelineError: when an agent's ``api_key_env`` is not set.
        """
        try:
            return Team(self.name, [spec.config() for spec in self.agents])
        except PipelineError as exc:
            raise PipelineError(self.path, exc.entry, exc.problem) from None

    def tool_registry(self) -> ToolRegistry:
        """The tool registry the ``[tools]`` table describes, connected to the MCP servers.

        Close it (``close()`` or ``with``) to end the servers' sessions.

        Raises:
            PipelineError: an MCP server cannot be used, or does not offer a tool an agent
                lists.
        """
        registry = ToolRegistry(
            root=self.tools_root,
            shell_allowlist=self.shell_allowlist,
            allow_private_network=self.allow_private_network,
        )
        try:
            self._connect(registry)
        except BaseException:
            registry.close()
            raise
        return registry

    def _connect(self, registry: ToolRegistry) -> None:
        """Add the MCP servers to *registry*; check every agent's tools are there."""
        for server in self.mcp_servers:
            try:
                server.add_to(registry)
            except (AegisError, ToolError, ValueError, ImportError) as exc:  # noqa: PERF203
                entry = f"[mcp_servers.{server.spec.name}]"
                raise PipelineError(self.path, entry, str(exc)) from exc
        for agent in self.agents:
            for tool in agent.tools:
                if tool not in registry:
                    raise PipelineError(
                        self.path,
                        f"agent {agent.name!r}",
                        f"'tools' lists {tool!r}, which no MCP server offers",
                    )

    def pool(self, *, max_concurrent: int | None = None) -> AgentPool:
        """A pool with the file's limits, counting failures by the facade's default rule."""
        from aegis_gov._caller import counts_against_breaker  # noqa: PLC0415  # loads with runs

        return AgentPool(
            max_concurrent=max_concurrent if max_concurrent is not None else self.max_concurrent,
            consecutive_failure_limit=self.consecutive_failure_limit,
            recovery_timeout_s=self.recovery_timeout_s,
            is_failure=counts_against_breaker,
        )

    def with_provider(self, provider: str, model: str | None = None) -> Pipeline:
        """The same pipeline with every agent on ``provider`` (and ``model``, if given).

        Provider-specific settings (base URL, key variable, scripted replies) and the
        ``fallbacks`` are dropped. On ``echo`` or ``scripted`` (a dry run) every agent's
        offline endpoint is priced at nothing, so a ``[budget]`` with ``max_cost_usd`` runs.

        Raises:
            PipelineError: for an unknown provider.
        """
        if provider not in PROVIDERS:
            raise PipelineError(
                self.path, None, f"unknown provider {provider!r}{one_of(PROVIDERS)}"
            )
        agents = tuple(
            attrs.evolve(
                agent,
                provider=provider,
                model=model,
                base_url=None,
                api_key_env=None,
                replies=(),
                fallbacks=(),
            )
            for agent in self.agents
        )
        budget = self.budget
        if budget is not None and provider in OFFLINE_PROVIDERS:
            # A dry run costs nothing: its offline endpoints are free, so a cost budget runs
            # (and shows $0) instead of asking for a price of each agent's stand-in model.
            free = Price(0.0, 0.0)
            names = {model} if model is not None else {agent.name for agent in self.agents}
            prices = {f"{provider}:{name}": free for name in names}
            budget = attrs.evolve(budget, prices={**prices, **budget.prices})
        return attrs.evolve(self, agents=agents, budget=budget)
