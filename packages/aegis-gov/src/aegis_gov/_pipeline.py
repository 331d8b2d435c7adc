"""Pipeline files: a team of agents and a task graph declared in TOML, validated up front.

A pipeline file is what ``aegis run`` and ``aegis graph`` read::

    name = "article"            # the team's name (default: the file's stem)
    stop_on_failure = false
    max_concurrent = 4

    [[agents]]
    name = "researcher"
    system_prompt = "Research topics thoroughly."
    provider = "anthropic"      # anthropic | openai | ollama | echo | scripted | auto
    model = "claude-haiku-4-5-20251001"

    [[tasks]]
    id = "research"
    description = "Research AI trends"
    agent = "researcher"
    depends_on = []

Every mistake is reported as one :class:`PipelineError` naming the file, the entry and the
problem, before anything runs. Every number is bounded (see the ``MAX_*`` constants), and a
file is read only if it is a regular file of at most :data:`MAX_PIPELINE_BYTES`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import os
import reprlib
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final, cast

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
    RetryableError,
    ScriptedAdapter,
    ToolCall,
    make_adapter,
)
from aegis_breaker import AgentPool
from aegis_graph import (
    CyclicDependencyError,
    DuplicateTaskError,
    GraphError,
    InvalidTaskError,
    Task,
    TaskQueue,
    UnknownDependencyError,
)

from aegis_gov._agents import AgentConfig, Team
from aegis_gov._errors import AegisError
from aegis_gov._files import read_regular_file
from aegis_gov._retry import RetryPolicy
from aegis_gov._tools import ToolRegistry

__all__ = [
    "MAX_ARGUMENT_DEPTH",
    "MAX_ATTEMPTS",
    "MAX_CONCURRENT",
    "MAX_FAILURE_LIMIT",
    "MAX_MULTIPLIER",
    "MAX_PIPELINE_BYTES",
    "MAX_SECONDS",
    "MAX_TEMPERATURE",
    "MAX_TOKENS",
    "MAX_TOOL_ROUNDS",
    "PROVIDERS",
    "AgentSpec",
    "Pipeline",
    "PipelineError",
    "ProviderSpec",
    "ScriptedReply",
    "load_pipeline",
    "parse_pipeline",
]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover  # only 3.11 runs here; tomli is the same parser, backported
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]  # dep on 3.10

PROVIDERS: Final = ("anthropic", "openai", "ollama", "echo", "scripted", "auto")
"""The ``provider`` values an agent may name (``auto``: chosen from the environment)."""
_FALLBACK_PROVIDERS: Final = PROVIDERS[:-1]  # a fallback names its provider: no "auto"

MAX_PIPELINE_BYTES: Final = 1 << 20
"""The largest pipeline file :func:`load_pipeline` reads: 1 MiB."""
MAX_CONCURRENT: Final = 1024
"""The most tasks in flight at once a pipeline (or ``aegis run --max-concurrent``) may ask for."""
MAX_SECONDS: Final = 86_400.0
"""The longest duration, in seconds, any ``*_s`` setting may have: one day."""
MAX_ATTEMPTS: Final = 100
"""The most requests ``[retry] max_attempts`` may allow per task."""
MAX_MULTIPLIER: Final = 100.0
"""The largest ``[retry] multiplier``."""
MAX_FAILURE_LIMIT: Final = 10_000
"""The largest ``[breaker] consecutive_failure_limit``."""
MAX_TOKENS: Final = 1_000_000
"""The largest ``max_tokens`` an agent may ask for."""
MAX_TEMPERATURE: Final = 2.0
"""The largest ``temperature`` (the widest range any supported provider accepts is 0 to 2)."""
MAX_TOOL_ROUNDS: Final = 1000
"""The largest ``max_tool_rounds``."""
MAX_ARGUMENT_DEPTH: Final = 32
"""How deeply a scripted tool call's ``arguments`` may nest arrays and tables."""
_INT64: Final = 1 << 63

_TOP_FIELDS: Final = frozenset(
    {"name", "description", "stop_on_failure", "max_concurrent", "agents", "tasks", "retry"}
    | {"breaker", "tools"}
)
_PROVIDER_FIELDS: Final = frozenset(
    {"provider", "model", "base_url", "api_key_env", "max_tokens", "temperature", "timeout_s"}
    | {"replies", "delay_s"}
)
_AGENT_FIELDS: Final = _PROVIDER_FIELDS | frozenset(
    {"name", "system_prompt", "tools", "max_tool_rounds", "fallbacks"}
    | {"fall_back_on_permanent_errors"}
)
# Tools that reach the file system: an agent offered one needs an explicit [tools] root.
_ROOTED_TOOLS: Final = ("file_read", "shell")
_TASK_FIELDS: Final = frozenset({"id", "description", "agent", "depends_on"})
_RETRY_FIELDS: Final = frozenset(
    {"max_attempts", "initial_delay_s", "multiplier", "max_delay_s", "max_total_delay_s"}
)
_BREAKER_FIELDS: Final = frozenset({"consecutive_failure_limit", "recovery_timeout_s"})
_TOOLS_FIELDS: Final = frozenset({"root", "shell_allowlist", "allow_private_network"})
_REPLY_FIELDS: Final = frozenset({"text", "tool_calls", "error", "message", "retry_after_s"})
_TOOL_CALL_FIELDS: Final = frozenset({"name", "arguments"})

# Simulated provider errors a scripted reply may raise, by the name a pipeline file uses.
_SCRIPTED_ERRORS: Final[dict[str, tuple[type[LLMError], int]]] = {
    "rate_limit": (RateLimitError, 429),
    "unavailable": (ProviderUnavailableError, 503),
    "auth": (AuthenticationError, 401),
    "not_found": (ModelNotFoundError, 404),
    "invalid": (InvalidRequestError, 400),
}


class PipelineError(AegisError, ValueError):
    """A pipeline file cannot be used; the message names the file, the entry and the problem.

    Attributes:
        path: The file (as given).
        entry: What is wrong inside it (``"task 'draft'"``, ``"agents[2]"``), or ``None`` for
            the file as a whole.
        problem: What is wrong, in words.
    """

    def __init__(self, path: str, entry: str | None, problem: str) -> None:
        """Record where the problem is and what it is."""
        where = f"{path}: {entry}" if entry else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.entry = entry
        self.problem = problem


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
        if self.provider in {"echo", "scripted"}:
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
        )


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
        """The tool registry the ``[tools]`` table describes."""
        return ToolRegistry(
            root=self.tools_root,
            shell_allowlist=self.shell_allowlist,
            allow_private_network=self.allow_private_network,
        )

    def pool(self, *, max_concurrent: int | None = None) -> AgentPool:
        """A pool with the file's limits; only retryable errors count against a breaker."""
        return AgentPool(
            max_concurrent=max_concurrent if max_concurrent is not None else self.max_concurrent,
            consecutive_failure_limit=self.consecutive_failure_limit,
            recovery_timeout_s=self.recovery_timeout_s,
            is_failure=_is_retryable,
        )

    def with_provider(self, provider: str, model: str | None = None) -> Pipeline:
        """The same pipeline with every agent on ``provider`` (and ``model``, if given).

        Provider-specific settings (base URL, key variable, scripted replies) and the
        ``fallbacks`` are dropped.

        Raises:
            PipelineError: for an unknown provider.
        """
        if provider not in PROVIDERS:
            raise PipelineError(
                self.path, None, f"unknown provider {provider!r}{_one_of(PROVIDERS)}"
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
        return attrs.evolve(self, agents=agents)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, RetryableError)


def load_pipeline(path: str | os.PathLike[str]) -> Pipeline:
    """Read and validate a pipeline file.

    Raises:
        PipelineError: the file cannot be read, is not TOML, or declares something invalid;
            the message names the file, the entry and the problem.
    """
    shown = os.fspath(path)
    try:
        data = read_regular_file(path, max_bytes=MAX_PIPELINE_BYTES)
    except OSError as exc:
        raise PipelineError(shown, None, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PipelineError(shown, None, f"not UTF-8 text: {exc.reason}") from None
    base = Path(path).parent
    return parse_pipeline(text, path=shown, default_name=Path(path).stem, base_dir=base)


def parse_pipeline(
    text: str,
    *,
    path: str = "<pipeline>",
    default_name: str = "pipeline",
    base_dir: str | os.PathLike[str] | None = None,
) -> Pipeline:
    """Validate the TOML ``text`` of a pipeline; ``path`` only names it in errors.

    ``base_dir`` is what a relative ``[tools] root`` is relative to.

    Raises:
        PipelineError: as :func:`load_pipeline`.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PipelineError(path, None, f"invalid TOML: {exc}") from None
    except RecursionError:
        # The TOML parser recurses once per nesting level: a few hundred brackets exhaust it.
        raise PipelineError(
            path, None, "invalid TOML: arrays or tables nested too deeply"
        ) from None
    return _Reader(path).pipeline(raw, default_name, base_dir)


class _Reader:
    """Turns parsed TOML into a :class:`Pipeline`, naming the culprit of every mistake."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, entry: str | None, problem: str) -> PipelineError:
        return PipelineError(self.path, entry, problem)

    def pipeline(
        self, raw: Mapping[str, object], default_name: str, base_dir: str | os.PathLike[str] | None
    ) -> Pipeline:
        self.check_fields(raw, _TOP_FIELDS, None)
        agents_raw = self.tables(raw, "agents")
        tasks_raw = self.tables(raw, "tasks")
        if not agents_raw:
            raise self.error(None, "declares no agents (add at least one [[agents]] table)")
        if not tasks_raw:
            raise self.error(None, "declares no tasks (add at least one [[tasks]] table)")
        agents = [self.agent(i, table) for i, table in enumerate(agents_raw)]
        names = [agent.name for agent in agents]
        seen: set[str] = set()
        for agent in agents:
            if agent.name in seen:
                raise self.error(
                    f"agent {agent.name!r}", "this name is used by more than one agent"
                )
            seen.add(agent.name)
        tasks = [self.task(i, table, names) for i, table in enumerate(tasks_raw)]
        self.check_graph(tasks)
        retry, breaker, tools = (
            self.table(raw, key, fields)
            for key, fields in (
                ("retry", _RETRY_FIELDS),
                ("breaker", _BREAKER_FIELDS),
                ("tools", _TOOLS_FIELDS),
            )
        )
        root = self.opt_str(tools, "root", "[tools]")
        if root is None:
            for agent in agents:
                rooted = " and ".join(repr(t) for t in agent.tools if t in _ROOTED_TOOLS)
                if rooted:
                    raise self.error(
                        f"agent {agent.name!r}",
                        f"'tools' lists {rooted}, but [tools] has no 'root': set [tools] root "
                        "to the directory they may use (relative to this file)",
                    )
        elif base_dir is not None:
            root = os.fspath(Path(base_dir) / root)
        name = self.opt_str(raw, "name", None) or default_name
        return Pipeline(
            name=name,
            agents=tuple(agents),
            tasks=tuple(tasks),
            path=self.path,
            description=self.opt_str(raw, "description", None) or "",
            stop_on_failure=self.opt_bool(raw, "stop_on_failure", None, default=False),
            max_concurrent=self.opt_int(
                raw, "max_concurrent", None, default=4, minimum=1, maximum=MAX_CONCURRENT
            ),
            retry=self.retry(retry),
            consecutive_failure_limit=self.opt_int(
                breaker,
                "consecutive_failure_limit",
                "[breaker]",
                default=5,
                minimum=1,
                maximum=MAX_FAILURE_LIMIT,
            ),
            recovery_timeout_s=self.opt_float(
                breaker, "recovery_timeout_s", "[breaker]", default=30.0
            ),
            tools_root=root,
            shell_allowlist=self.str_list(tools, "shell_allowlist", "[tools]"),
            allow_private_network=self.opt_bool(
                tools, "allow_private_network", "[tools]", default=False
            ),
        )

    # -- entries -------------------------------------------------------------------------

    def agent(self, index: int, table: Mapping[str, object]) -> AgentSpec:
        entry = f"agents[{index}]"
        name = self.opt_str(table, "name", entry)
        if not name:
            raise self.error(entry, "has no 'name'")
        entry = f"agent {name!r}"
        self.check_fields(table, _AGENT_FIELDS, entry)
        tools = self.str_list(table, "tools", entry)
        own = self.provider_spec(table, entry, tools, PROVIDERS)
        known_tools = ToolRegistry(builtins=True).names()
        for tool in tools:
            if tool not in known_tools:
                raise self.error(
                    entry,
                    f"unknown tool {tool!r}{_suggest(tool, known_tools)}{_one_of(known_tools)}",
                )
        fallbacks_raw = table.get("fallbacks", [])
        if not isinstance(fallbacks_raw, list) or not all(
            isinstance(item, dict) for item in fallbacks_raw
        ):
            raise self.error(
                entry, f"'fallbacks' must be a list of tables, got {_show(fallbacks_raw)}"
            )
        fallbacks = []
        for i, item in enumerate(cast("list[Mapping[str, object]]", fallbacks_raw)):
            where = f"{entry}, fallbacks[{i}]"
            self.check_fields(item, _PROVIDER_FIELDS, where)
            fallbacks.append(self.provider_spec(item, where, tools, _FALLBACK_PROVIDERS))
        return AgentSpec(
            name=name,
            system_prompt=self.opt_str(table, "system_prompt", entry) or "",
            provider=own.provider,
            model=own.model,
            base_url=own.base_url,
            api_key_env=own.api_key_env,
            tools=tools,
            max_tokens=own.max_tokens,
            temperature=own.temperature,
            timeout_s=own.timeout_s,
            replies=own.replies,
            delay_s=own.delay_s,
            max_tool_rounds=self.opt_int(
                table, "max_tool_rounds", entry, default=8, minimum=1, maximum=MAX_TOOL_ROUNDS
            ),
            fallbacks=tuple(fallbacks),
            fall_back_on_permanent_errors=self.opt_bool(
                table, "fall_back_on_permanent_errors", entry, default=False
            ),
        )

    def provider_spec(
        self,
        table: Mapping[str, object],
        entry: str,
        tools: Sequence[str],
        providers: Sequence[str],
    ) -> ProviderSpec:
        """An agent's own provider settings, or one of its fallbacks: the same fields."""
        provider = self.opt_str(table, "provider", entry) or "auto"
        if "provider" not in table and "auto" not in providers:
            raise self.error(entry, f"has no 'provider'{_one_of(providers)}")
        if provider not in providers:
            raise self.error(entry, f"unknown provider {provider!r}{_one_of(providers)}")
        replies = self.replies(table, entry)
        if replies and provider != "scripted":
            raise self.error(entry, "'replies' is only for provider = \"scripted\"")
        for i, reply in enumerate(replies):
            for call in reply.tool_calls:
                if call.name not in tools:
                    raise self.error(
                        f"{entry}, replies[{i}]",
                        f"calls tool {call.name!r}, which the agent does not list in 'tools'"
                        f"{_suggest(call.name, tools)}",
                    )
        max_tokens = self.opt_int(
            table, "max_tokens", entry, default=0, minimum=1, maximum=MAX_TOKENS
        )
        timeout_s = self.opt_float(table, "timeout_s", entry, default=0.0)
        return ProviderSpec(
            provider=provider,
            model=self.opt_str(table, "model", entry),
            base_url=self.opt_str(table, "base_url", entry),
            api_key_env=self.opt_str(table, "api_key_env", entry),
            max_tokens=max_tokens or None,
            temperature=self.opt_number(
                table, "temperature", entry, allow_zero=True, maximum=MAX_TEMPERATURE
            ),
            timeout_s=timeout_s or None,
            replies=replies,
            delay_s=self.opt_float(table, "delay_s", entry, default=0.0, allow_zero=True),
        )

    def replies(self, table: Mapping[str, object], entry: str) -> tuple[ScriptedReply, ...]:
        value = table.get("replies")
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(entry, "'replies' must be a list of strings or tables")
        out: list[ScriptedReply] = []
        for i, item in enumerate(cast("list[object]", value)):
            where = f"{entry}, replies[{i}]"
            if isinstance(item, str):
                out.append(ScriptedReply(text=item))
                continue
            if not isinstance(item, dict):
                raise self.error(where, f"must be a string or a table, got {_show(item)}")
            reply = cast("dict[str, object]", item)
            self.check_fields(reply, _REPLY_FIELDS, where)
            error = self.opt_str(reply, "error", where)
            if error is not None and error not in _SCRIPTED_ERRORS:
                raise self.error(where, f"unknown error {error!r}{_one_of(_SCRIPTED_ERRORS)}")
            text = self.opt_str(reply, "text", where)
            tool_calls = self.tool_calls(reply, where, i)
            if error is not None and (text is not None or tool_calls):
                raise self.error(where, "'error' cannot be combined with 'text' or 'tool_calls'")
            if error is None and text is None and not tool_calls:
                raise self.error(where, "needs 'text', 'tool_calls' or 'error'")
            retry_after = self.opt_number(
                reply, "retry_after_s", where, allow_zero=True, maximum=MAX_SECONDS
            )
            out.append(
                ScriptedReply(
                    text=text or "",
                    error=error,
                    message=self.opt_str(reply, "message", where) or "",
                    retry_after_s=retry_after,
                    tool_calls=tool_calls,
                )
            )
        return tuple(out)

    def tool_calls(
        self, reply: Mapping[str, object], where: str, index: int
    ) -> tuple[ToolCall, ...]:
        """The reply's ``tool_calls``, each ``{ name = "...", arguments = { ... } }``."""
        value = reply.get("tool_calls")
        if value is None:
            return ()
        if not isinstance(value, list) or not value:
            raise self.error(where, "'tool_calls' must be a non-empty list of tables")
        calls: list[ToolCall] = []
        for k, item in enumerate(cast("list[object]", value)):
            at = f"{where}, tool_calls[{k}]"
            if not isinstance(item, dict):
                raise self.error(at, f"must be a table, got {_show(item)}")
            call = cast("dict[str, object]", item)
            self.check_fields(call, _TOOL_CALL_FIELDS, at)
            name = self.opt_str(call, "name", at)
            if not name:
                raise self.error(at, "has no 'name'")
            arguments = call.get("arguments", {})
            if not isinstance(arguments, dict):
                raise self.error(at, f"'arguments' must be a table, got {_show(arguments)}")
            problem = _json_problem(arguments)
            if problem is not None:
                raise self.error(at, f"'arguments': {problem}")
            calls.append(ToolCall(f"call_{index}_{k}", name, cast("dict[str, object]", arguments)))
        return tuple(calls)

    def task(self, index: int, table: Mapping[str, object], agents: Sequence[str]) -> Task:
        entry = f"tasks[{index}]"
        task_id = self.opt_str(table, "id", entry)
        if not task_id:
            raise self.error(entry, "has no 'id'")
        entry = f"task {task_id!r}"
        self.check_fields(table, _TASK_FIELDS, entry)
        agent = self.opt_str(table, "agent", entry)
        if agent is None:
            if len(agents) != 1:
                raise self.error(entry, f"has no 'agent'{_one_of(agents)}")
            agent = agents[0]
        if agent not in agents:
            raise self.error(
                entry, f"agent {agent!r} is not declared{_suggest(agent, agents)}{_one_of(agents)}"
            )
        depends_on = self.str_list(table, "depends_on", entry)
        try:
            return Task(
                id=task_id,
                description=self.opt_str(table, "description", entry) or "",
                agent=agent,
                depends_on=depends_on,
            )
        except InvalidTaskError as exc:
            problem = str(exc).removeprefix(f"task {task_id!r} ")
            raise self.error(entry, problem) from None

    def check_graph(self, tasks: Sequence[Task]) -> None:
        ids = [task.id for task in tasks]
        known = set(ids)
        # Name unknown dependencies here, in file order, before the graph is built: the
        # graph's own check is for callers of TaskQueue, this one is for the file's author.
        for task in tasks:
            for dependency in task.depends_on:
                if dependency not in known:
                    raise self.error(
                        f"task {task.id!r}",
                        f"depends on unknown task {dependency!r}{_suggest(dependency, ids)}",
                    )
        try:
            TaskQueue(tasks)
        except DuplicateTaskError as exc:
            raise self.error(
                f"task {exc.task_id!r}", "this id is used by more than one task"
            ) from None
        except UnknownDependencyError as exc:
            raise self.error(
                f"task {exc.task_id!r}",
                f"depends on unknown task {exc.dependency!r}{_suggest(exc.dependency, ids)}",
            ) from None
        except CyclicDependencyError as exc:
            cycle = " -> ".join(exc.cycle)
            raise self.error(
                f"task {exc.cycle[0]!r}",
                f"dependency cycle: {cycle} (each task depends on the next)",
            ) from None
        except GraphError as exc:  # pragma: no cover  # Task() already caught the rest
            raise self.error("tasks", str(exc)) from None

    def retry(self, table: Mapping[str, object]) -> RetryPolicy:
        entry = "[retry]"
        max_attempts = self.opt_int(
            table, "max_attempts", entry, default=3, minimum=1, maximum=MAX_ATTEMPTS
        )
        values: dict[str, float] = {}
        for key, allow_zero, maximum in (
            ("initial_delay_s", False, MAX_SECONDS),
            ("multiplier", False, MAX_MULTIPLIER),
            ("max_delay_s", False, MAX_SECONDS),
            ("max_total_delay_s", True, MAX_SECONDS),
        ):
            number = self.opt_number(table, key, entry, allow_zero=allow_zero, maximum=maximum)
            if number is not None:
                values[key] = number
        try:
            return RetryPolicy(max_attempts=max_attempts, **values)
        except (TypeError, ValueError) as exc:  # pragma: no cover  # the bounds above hold
            raise self.error(entry, str(exc)) from None

    # -- field helpers -------------------------------------------------------------------

    def check_fields(
        self, table: Mapping[str, object], allowed: frozenset[str], entry: str | None
    ) -> None:
        for key in table:
            if key not in allowed:
                raise self.error(
                    entry, f"unknown field {_show(key)}{_suggest(key, sorted(allowed))}"
                )

    def tables(self, raw: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(None, f"'{key}' must be an array of tables ([[{key}]])")
        return cast("list[Mapping[str, object]]", value)

    def table(
        self, raw: Mapping[str, object], key: str, fields: frozenset[str]
    ) -> Mapping[str, object]:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise self.error(None, f"'{key}' must be a table ([{key}])")
        table = cast("Mapping[str, object]", value)
        self.check_fields(table, fields, f"[{key}]")
        return table

    def opt_str(self, table: Mapping[str, object], key: str, entry: str | None) -> str | None:
        value = table.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self.error(entry, f"'{key}' must be a string, got {_show(value)}")

    def opt_bool(
        self, table: Mapping[str, object], key: str, entry: str | None, *, default: bool
    ) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(entry, f"'{key}' must be true or false, got {_show(value)}")
        return value

    def opt_int(
        self,
        table: Mapping[str, object],
        key: str,
        entry: str | None,
        *,
        default: int,
        minimum: int,
        maximum: int,
    ) -> int:
        value = table.get(key)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            raise self.error(
                entry,
                f"'{key}' must be an integer >= {minimum} and <= {maximum}, got {_show(value)}",
            )
        return value

    def opt_float(
        self,
        table: Mapping[str, object],
        key: str,
        entry: str | None,
        *,
        default: float,
        allow_zero: bool = False,
    ) -> float:
        """A duration in seconds: finite, positive (or zero) and at most :data:`MAX_SECONDS`."""
        number = self.opt_number(table, key, entry, allow_zero=allow_zero, maximum=MAX_SECONDS)
        return default if number is None else number

    def opt_number(
        self,
        table: Mapping[str, object],
        key: str,
        entry: str | None,
        *,
        allow_zero: bool,
        maximum: float,
    ) -> float | None:
        """A finite number in ``(0, maximum]`` (``[0, maximum]`` with ``allow_zero``)."""
        value = table.get(key)
        if value is None:
            return None
        number = math.nan
        if _is_number(value):
            try:
                number = float(cast("float", value))
            except OverflowError:  # an integer too large for a float
                number = math.inf
        low_ok = number >= 0 if allow_zero else number > 0
        if not (math.isfinite(number) and low_ok and number <= maximum):
            bound = ">= 0" if allow_zero else "> 0"
            raise self.error(
                entry, f"'{key}' must be a number {bound} and <= {maximum:g}, got {_show(value)}"
            )
        return number

    def str_list(self, table: Mapping[str, object], key: str, entry: str | None) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(entry, f"'{key}' must be a list of strings, got {_show(value)}")
        return tuple(cast("list[str]", value))


_SHOW: Final = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 60


def _show(value: object) -> str:
    """``repr(value)`` cut short, so one huge or deeply nested value cannot flood the message."""
    return _SHOW.repr(value)


def _json_problem(arguments: Mapping[str, object]) -> str | None:
    """Why ``arguments`` has no faithful JSON form, or ``None`` if it has one.

    Walks the value without recursion, so nesting depth is checked before it can hurt.
    """
    stack: list[tuple[object, int]] = [(arguments, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_ARGUMENT_DEPTH:
            return f"nested more than {MAX_ARGUMENT_DEPTH} levels deep"
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in cast("dict[str, object]", value).values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in cast("list[object]", value))
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{value!r} is not a JSON number"
        elif (
            isinstance(value, int)
            and not isinstance(value, bool)
            and not (-_INT64 <= value < _INT64)
        ):
            return f"the integer {_show(value)} does not fit in 64 bits"
        elif isinstance(value, (dt.date, dt.time)):
            return (
                f"the TOML date/time {value.isoformat()} has no JSON form; "
                "write it as a string in quotes"
            )
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_of(choices: Iterable[str]) -> str:
    names = ", ".join(repr(c) for c in choices)
    return f"; expected one of {names}" if names else ""
