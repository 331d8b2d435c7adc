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
problem, before anything runs. The file's structure and every bound (see the ``MAX_*``
constants) are the JSON Schema of :mod:`aegis_gov._pipeline_schema`; what relates fields to
each other (declared agents, the task graph, the tools an agent may call) is checked here. A
file is read only if it is a regular file of at most :data:`MAX_PIPELINE_BYTES`.

A little over 400 lines: the cross-field checks of every table (agents, tasks, tools, limits,
fallbacks, budget) read one validated file in one pass, and split apart they would each need
the whole file again.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import attrs
from aegis_adapters import ToolCall
from aegis_graph import (
    CyclicDependencyError,
    DuplicateTaskError,
    GraphError,
    InvalidTaskError,
    Task,
    TaskQueue,
    UnknownDependencyError,
)

from aegis_gov._budget import Budget, Price
from aegis_gov._files import read_regular_file
from aegis_gov._limits import Limits
from aegis_gov._mcp import MCPServerSpec
from aegis_gov._output import output_spec
from aegis_gov._pipeline_schema import (
    MAX_ARGUMENT_DEPTH,
    MAX_ATTEMPTS,
    MAX_CONCURRENT,
    MAX_FAILURE_LIMIT,
    MAX_MULTIPLIER,
    MAX_PIPELINE_BYTES,
    MAX_SECONDS,
    MAX_TEMPERATURE,
    MAX_TOKENS,
    MAX_TOOL_ROUNDS,
    PROVIDERS,
    AgentDoc,
    PipelineDoc,
    ProviderDoc,
    ReplyDoc,
    TaskDoc,
)
from aegis_gov._pipeline_specs import (
    AgentSpec,
    MCPServerDecl,
    Pipeline,
    ProviderSpec,
    ScriptedReply,
)
from aegis_gov._pipeline_validate import PipelineError, one_of, show, suggest, validate_document
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

_INT64: Final = 1 << 63
# Tools that reach the file system: an agent offered one needs an explicit [tools] root.
_ROOTED_TOOLS: Final = ("file_read", "shell")


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
    return _Builder(path).pipeline(validate_document(raw, path), default_name, base_dir)


@attrs.frozen
class _Builder:
    """Turns a document that matches the schema into a :class:`Pipeline`.

    It checks what the schema cannot: names that refer to each other, the task graph, the
    tools each agent lists and their root.
    """

    path: str
    known_tools: tuple[str, ...] = attrs.field(factory=lambda: ToolRegistry(builtins=True).names())

    def error(self, entry: str | None, problem: str) -> PipelineError:
        return PipelineError(self.path, entry, problem)

    def pipeline(
        self, doc: PipelineDoc, default_name: str, base_dir: str | os.PathLike[str] | None
    ) -> Pipeline:
        servers = self.mcp_servers(doc, base_dir)
        agents = [self.agent(agent, servers) for agent in doc["agents"]]
        names = [agent.name for agent in agents]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise self.error(f"agent {name!r}", "this name is used by more than one agent")
        tasks = [self.task(task, names) for task in doc["tasks"]]
        self.check_graph(tasks)
        tools, breaker = doc.get("tools", {}), doc.get("breaker", {})
        root = tools.get("root")
        for agent in agents if root is None else ():
            rooted = " and ".join(repr(t) for t in agent.tools if t in _ROOTED_TOOLS)
            if rooted:
                raise self.error(
                    f"agent {agent.name!r}",
                    f"'tools' lists {rooted}, but [tools] has no 'root': set [tools] root "
                    "to the directory they may use (relative to this file)",
                )
        if root is not None and base_dir is not None:
            root = os.fspath(Path(base_dir) / root)
        try:
            retry = RetryPolicy(**doc.get("retry", {}))  # the [retry] fields are its own
        except (TypeError, ValueError) as exc:  # pragma: no cover  # the schema's bounds hold
            raise self.error("[retry]", str(exc)) from None
        return Pipeline(
            name=doc.get("name") or default_name,
            agents=tuple(agents),
            tasks=tuple(tasks),
            path=self.path,
            description=doc.get("description", ""),
            stop_on_failure=doc.get("stop_on_failure", False),
            max_concurrent=doc.get("max_concurrent", 4),
            retry=retry,
            consecutive_failure_limit=breaker.get("consecutive_failure_limit", 5),
            recovery_timeout_s=float(breaker.get("recovery_timeout_s", 30.0)),
            tools_root=root,
            shell_allowlist=tuple(tools.get("shell_allowlist", ())),
            allow_private_network=tools.get("allow_private_network", False),
            limits=self.limits(doc),
            budget=_budget(doc),
            mcp_servers=servers,
        )

    def mcp_servers(
        self, doc: PipelineDoc, base_dir: str | os.PathLike[str] | None
    ) -> tuple[MCPServerDecl, ...]:
        """The ``[mcp_servers.NAME]`` tables; a server's ``cwd`` is relative to the file."""
        servers = []
        for name, table in doc.get("mcp_servers", {}).items():
            cwd = table.get("cwd")
            if table.get("command") is not None and base_dir is not None:
                cwd = os.fspath(Path(base_dir) / (cwd or "."))  # never where aegis started
            tools = table.get("tools")
            try:
                spec = MCPServerSpec(
                    name=name,
                    command=table.get("command"),
                    args=tuple(table.get("args", ())),
                    env=table.get("env"),
                    cwd=cwd,
                    url=table.get("url"),
                    headers=table.get("headers"),
                    timeout_s=float(table.get("timeout_s", 60.0)),
                    connect_timeout_s=float(table.get("connect_timeout_s", 30.0)),
                )
            except ValueError as exc:  # the first bad table ends the loop
                raise self.error(f"[mcp_servers.{name}]", str(exc)) from None
            if spec.command is None and "pass_env" in table:
                raise self.error(f"[mcp_servers.{name}]", "pass_env is for a command")
            if spec.url is None and "headers_env" in table:
                raise self.error(f"[mcp_servers.{name}]", "headers_env is for a url")
            servers.append(
                MCPServerDecl(
                    spec,
                    table.get("prefix"),
                    None if tools is None else tuple(tools),
                    pass_env=tuple(table.get("pass_env", ())),
                    headers_env=table.get("headers_env", {}),
                )
            )
        return tuple(servers)

    def limits(self, doc: PipelineDoc) -> dict[str, Limits]:
        """The ``[limits."model"]`` tables (the schema checked their types and bounds)."""
        limits: dict[str, Limits] = {}
        for name, table in doc.get("limits", {}).items():
            try:
                limits[name] = Limits(**table)
            except ValueError as exc:  # noqa: PERF203  # the first bad table ends the loop
                raise self.error(f'[limits."{name}"]', str(exc)) from None
        return limits

    def agent(self, doc: AgentDoc, servers: Sequence[MCPServerDecl] = ()) -> AgentSpec:
        entry = f"agent {doc['name']!r}"
        tools = tuple(doc.get("tools", ()))
        for tool in tools:
            # An MCP server's tools are known once it is running: its prefix is checked here.
            if tool not in self.known_tools and not any(s.may_offer(tool) for s in servers):
                known = self.known_tools
                raise self.error(
                    entry, f"unknown tool {tool!r}{suggest(tool, known)}{one_of(known)}"
                )
        own = self.provider(doc, entry, tools)
        fallbacks = doc.get("fallbacks", ())
        return AgentSpec(
            name=doc["name"],
            system_prompt=doc.get("system_prompt", ""),
            tools=tools,
            max_tool_rounds=doc.get("max_tool_rounds", 8),
            fallbacks=tuple(
                self.provider(fallback, f"{entry}, fallbacks[{i}]", tools)
                for i, fallback in enumerate(fallbacks)
            ),
            fall_back_on_permanent_errors=doc.get("fall_back_on_permanent_errors", False),
            output_schema=self.output_schema(doc, entry),
            output_retries=doc.get("output_retries", 2),
            **attrs.asdict(own, recurse=False),  # the provider fields, by the same names
        )

    def output_schema(self, doc: AgentDoc, entry: str) -> dict[str, object] | None:
        """The agent's ``output_schema``, refused here unless it is a JSON Schema of an object."""
        schema = doc.get("output_schema")
        if schema is not None:
            try:
                output_spec(schema)
            except ValueError as exc:
                raise self.error(f"{entry}, output_schema", str(exc)) from None
        return schema

    def provider(self, doc: ProviderDoc, entry: str, tools: Sequence[str]) -> ProviderSpec:
        """An agent's own provider settings, or one of its fallbacks: the same fields."""
        provider = doc.get("provider", "auto")
        replies = tuple(
            self.reply(reply, f"{entry}, replies[{i}]", i, tools)
            for i, reply in enumerate(doc.get("replies", ()))
        )
        if replies and provider != "scripted":
            raise self.error(entry, "'replies' is only for provider = \"scripted\"")
        temperature = doc.get("temperature")
        return ProviderSpec(
            provider=provider,
            model=doc.get("model"),
            base_url=doc.get("base_url"),
            api_key_env=doc.get("api_key_env"),
            max_tokens=doc.get("max_tokens"),
            temperature=None if temperature is None else float(temperature),
            timeout_s=float(doc["timeout_s"]) if "timeout_s" in doc else None,
            replies=replies,
            delay_s=float(doc.get("delay_s", 0.0)),
        )

    def reply(
        self, doc: str | ReplyDoc, where: str, index: int, tools: Sequence[str]
    ) -> ScriptedReply:
        if isinstance(doc, str):
            return ScriptedReply(text=doc)
        error, text = doc.get("error"), doc.get("text")
        calls = doc.get("tool_calls", ())
        if error is not None and (text is not None or calls):
            raise self.error(where, "'error' cannot be combined with 'text' or 'tool_calls'")
        if error is None and text is None and not calls:
            raise self.error(where, "needs 'text', 'tool_calls' or 'error'")
        tool_calls = []
        for k, call in enumerate(calls):
            arguments = call.get("arguments", {})
            problem = _json_problem(arguments)
            if problem is not None:
                raise self.error(f"{where}, tool_calls[{k}]", f"'arguments': {problem}")
            tool_calls.append(ToolCall(f"call_{index}_{k}", call["name"], arguments))
        for name in (tool_call.name for tool_call in tool_calls):
            if name not in tools:
                raise self.error(
                    where,
                    f"calls tool {name!r}, which the agent does not list in 'tools'"
                    f"{suggest(name, tools)}",
                )
        retry_after_s = doc.get("retry_after_s")
        return ScriptedReply(
            text=text or "",
            error=error,
            message=doc.get("message", ""),
            retry_after_s=None if retry_after_s is None else float(retry_after_s),
            tool_calls=tuple(tool_calls),
        )

    def task(self, doc: TaskDoc, agents: Sequence[str]) -> Task:
        task_id = doc["id"]
        entry = f"task {task_id!r}"
        agent = doc.get("agent")
        if agent is None:
            if len(agents) != 1:
                raise self.error(entry, f"has no 'agent'{one_of(agents)}")
            agent = agents[0]
        if agent not in agents:
            raise self.error(
                entry, f"agent {agent!r} is not declared{suggest(agent, agents)}{one_of(agents)}"
            )
        try:
            return Task(
                id=task_id,
                description=doc.get("description", ""),
                agent=agent,
                depends_on=doc.get("depends_on", ()),
            )
        except InvalidTaskError as exc:
            raise self.error(entry, str(exc).removeprefix(f"{entry} ")) from None

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
                        f"depends on unknown task {dependency!r}{suggest(dependency, ids)}",
                    )
        try:
            TaskQueue(tasks)
        except DuplicateTaskError as exc:
            raise self.error(
                f"task {exc.task_id!r}", "this id is used by more than one task"
            ) from None
        except CyclicDependencyError as exc:
            cycle = " -> ".join(exc.cycle)
            raise self.error(
                f"task {exc.cycle[0]!r}",
                f"dependency cycle: {cycle} (each task depends on the next)",
            ) from None
        except (UnknownDependencyError, GraphError) as exc:  # pragma: no cover  # checked above
            raise self.error("tasks", str(exc)) from None


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
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{value!r} is not a JSON number"
        elif (
            isinstance(value, int)
            and not isinstance(value, bool)
            and not (-_INT64 <= value < _INT64)
        ):
            return f"the integer {show(value)} does not fit in 64 bits"
        elif isinstance(value, (dt.date, dt.time)):
            return (
                f"the TOML date/time {value.isoformat()} has no JSON form; "
                "write it as a string in quotes"
            )
    return None


def _budget(doc: PipelineDoc) -> Budget | None:
    """The ``[budget]`` table as a :class:`Budget` (its bounds were checked by the schema)."""
    table = doc.get("budget")
    if table is None:
        return None
    prices = {
        name: Price(p["input_per_million_usd"], p["output_per_million_usd"])
        for name, p in table.get("prices", {}).items()
    }
    return Budget(
        max_total_tokens=table.get("max_total_tokens"),
        max_requests=table.get("max_requests"),
        max_cost_usd=table.get("max_cost_usd"),
        prices=prices,
    )
