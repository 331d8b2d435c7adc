"""What a pipeline file may contain, written once: a JSON Schema and the typed dicts it yields.

:data:`PIPELINE_SCHEMA` says which fields each table has, their types and every bound (the
``MAX_*`` constants); :mod:`aegis_gov._pipeline_validate` checks parsed TOML against it and
words the errors, and the typed dicts below are what a document that passed is known to be.
Rules that relate fields to each other or to the rest of the file (declared agents, the task
graph, the tools) are checked by :mod:`aegis_gov._pipeline`.

Two conventions on top of JSON Schema Draft 2020-12: ``integer`` excludes ``true``/``false``
and ``2.0``, and ``number`` excludes NaN and the infinities (the validator's type checker says
so). An ``x-must`` annotation says in words what a field (or an array item) must be where its
type and bounds alone would say it badly; ``x-missing`` is the message when it is absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypedDict

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
    "PIPELINE_SCHEMA",
    "PROVIDERS",
    "SCRIPTED_ERRORS",
    "AgentDoc",
    "MCPServerDoc",
    "PipelineDoc",
    "ProviderDoc",
    "ReplyDoc",
    "Schema",
    "TaskDoc",
    "ToolCallDoc",
]

PROVIDERS: Final = ("anthropic", "openai", "ollama", "echo", "scripted", "auto")
"""The ``provider`` values an agent may name (``auto``: chosen from the environment)."""
SCRIPTED_ERRORS: Final = ("rate_limit", "unavailable", "auth", "not_found", "invalid")
"""The simulated provider errors a ``scripted`` reply may raise."""

MAX_PIPELINE_BYTES: Final = 1 << 20
"""The largest pipeline file :func:`~aegis_gov._pipeline.load_pipeline` reads: 1 MiB."""
MAX_CONCURRENT: Final = 1024
MAX_RATE: Final = 1e12
"""The largest rate, price or cost a file may declare."""
MAX_BUDGET_COUNT: Final = 10**12
"""The largest token or request budget a file may declare."""
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

Schema = dict[str, Any]
"""A JSON Schema document or subschema."""


# -- the schema --------------------------------------------------------------------------

_STRING: Final[Schema] = {"type": "string"}
_NAME: Final[Schema] = {"type": "string", "minLength": 1}  # an empty name is no name
_BOOLEAN: Final[Schema] = {"type": "boolean"}
_STRINGS: Final[Schema] = {"type": "array", "items": _STRING}
_STRING_TABLE: Final[Schema] = {
    "type": "object",
    "additionalProperties": _STRING,
    "x-must": "a table of strings",
}


def _integer(minimum: int, maximum: int) -> Schema:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def _number(maximum: float = MAX_SECONDS, *, zero_ok: bool) -> Schema:
    return {"type": "number", ("minimum" if zero_ok else "exclusiveMinimum"): 0, "maximum": maximum}


def _table(properties: Schema, *, required: Sequence[str] = (), **more: object) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "required": list(required),
        **more,
    }


def _tables(item: Schema, must: str, **more: object) -> Schema:
    return {"type": "array", "items": item, "x-must": must, **more}


_TOOL_CALL: Final = _table(
    {"name": _NAME, "arguments": {"type": "object"}}, required=["name"], **{"x-must": "a table"}
)
_REPLY: Final = {  # a string, or a table: object keywords do not apply to a string
    **_table(
        {
            "text": _STRING,
            "tool_calls": _tables(_TOOL_CALL, "a non-empty list of tables", minItems=1),
            "error": {"type": "string", "enum": list(SCRIPTED_ERRORS)},
            "message": _STRING,
            "retry_after_s": _number(zero_ok=True),
        }
    ),
    "type": ["string", "object"],
    "x-must": "a string or a table",
}
_PROVIDER_FIELDS: Final[Schema] = {
    "model": _STRING,
    "base_url": _STRING,
    "api_key_env": _STRING,
    "max_tokens": _integer(1, MAX_TOKENS),
    "temperature": _number(MAX_TEMPERATURE, zero_ok=True),
    "timeout_s": _number(zero_ok=False),
    "replies": {"type": "array", "items": _REPLY, "x-must": "a list of strings or tables"},
    "delay_s": _number(zero_ok=True),
}
# A fallback names its provider: "auto" (the run's default adapter) would mean nothing there.
_FALLBACK: Final = _table(
    {"provider": {"type": "string", "enum": list(PROVIDERS[:-1])}, **_PROVIDER_FIELDS},
    required=["provider"],
)
_AGENT: Final = _table(
    {
        "name": _NAME,
        "system_prompt": _STRING,
        "provider": {"type": "string", "enum": list(PROVIDERS)},
        **_PROVIDER_FIELDS,
        "tools": _STRINGS,
        "max_tool_rounds": _integer(1, MAX_TOOL_ROUNDS),
        "fallbacks": _tables(_FALLBACK, "a list of tables"),
        "fall_back_on_permanent_errors": _BOOLEAN,
        # A JSON Schema of the answer, checked when the agent is built.
        "output_schema": {"type": "object", "x-must": "a table (a JSON Schema)"},
        "output_retries": _integer(0, MAX_TOOL_ROUNDS),
    },
    required=["name"],
)
_TASK: Final = _table(
    {"id": _NAME, "description": _STRING, "agent": _STRING, "depends_on": _STRINGS},
    required=["id"],
)

PIPELINE_SCHEMA: Final[Schema] = _table(
    {
        "name": _STRING,
        "description": _STRING,
        "stop_on_failure": _BOOLEAN,
        "max_concurrent": _integer(1, MAX_CONCURRENT),
        "agents": _tables(
            _AGENT,
            "an array of tables ([[agents]])",
            minItems=1,
            **{"x-missing": "declares no agents (add at least one [[agents]] table)"},
        ),
        "tasks": _tables(
            _TASK,
            "an array of tables ([[tasks]])",
            minItems=1,
            **{"x-missing": "declares no tasks (add at least one [[tasks]] table)"},
        ),
        "retry": _table(
            {
                "max_attempts": _integer(1, MAX_ATTEMPTS),
                "initial_delay_s": _number(zero_ok=False),
                "multiplier": _number(MAX_MULTIPLIER, zero_ok=False),
                "max_delay_s": _number(zero_ok=False),
                "max_total_delay_s": _number(zero_ok=True),
            },
            **{"x-must": "a table ([retry])"},
        ),
        "breaker": _table(
            {
                "consecutive_failure_limit": _integer(1, MAX_FAILURE_LIMIT),
                "recovery_timeout_s": _number(zero_ok=False),
            },
            **{"x-must": "a table ([breaker])"},
        ),
        "tools": _table(
            {"root": _STRING, "shell_allowlist": _STRINGS, "allow_private_network": _BOOLEAN},
            **{"x-must": "a table ([tools])"},
        ),
        "mcp_servers": {
            "type": "object",
            "additionalProperties": _table(
                {
                    "command": _NAME,
                    "args": _STRINGS,
                    "env": _STRING_TABLE,
                    "cwd": _STRING,
                    "url": _NAME,
                    "headers": _STRING_TABLE,
                    "pass_env": _STRINGS,
                    "headers_env": _STRING_TABLE,
                    "prefix": _STRING,
                    "tools": _STRINGS,
                    "timeout_s": _number(zero_ok=False),
                    "connect_timeout_s": _number(zero_ok=False),
                },
                **{"x-must": "a table ([mcp_servers.NAME])"},
            ),
            "x-must": "a table of tables, one per MCP server ([mcp_servers.NAME])",
        },
        "limits": {
            "type": "object",
            "additionalProperties": _table(
                {
                    "requests_per_minute": _number(MAX_RATE, zero_ok=False),
                    "tokens_per_minute": _number(MAX_RATE, zero_ok=False),
                    "max_concurrent": _integer(1, MAX_CONCURRENT),
                    "burst": _number(MAX_RATE, zero_ok=False),
                },
                **{"x-must": 'a table ([limits."model"])'},
            ),
            "x-must": 'a table of tables, one per model ([limits."model"])',
        },
        "budget": _table(
            {
                "max_total_tokens": _integer(1, MAX_BUDGET_COUNT),
                "max_requests": _integer(1, MAX_BUDGET_COUNT),
                "max_cost_usd": _number(MAX_RATE, zero_ok=False),
                "prices": {
                    "type": "object",
                    "additionalProperties": _table(
                        {
                            "input_per_million_usd": _number(MAX_RATE, zero_ok=True),
                            "output_per_million_usd": _number(MAX_RATE, zero_ok=True),
                        },
                        required=["input_per_million_usd", "output_per_million_usd"],
                        **{"x-must": 'a table ([budget.prices."model"])'},
                    ),
                    "x-must": 'a table of tables, one per model ([budget.prices."model"])',
                },
            },
            **{"x-must": "a table ([budget])"},
        ),
    },
    required=["agents", "tasks"],
)
"""The pipeline file's structure as a JSON Schema (Draft 2020-12, with the conventions above)."""


# -- what a valid document is ------------------------------------------------------------


class _ToolCallName(TypedDict):
    name: str


class ToolCallDoc(_ToolCallName, total=False):
    """A scripted reply's tool call, as validated."""

    arguments: dict[str, object]


class ReplyDoc(TypedDict, total=False):
    """A scripted reply written as a table, as validated."""

    text: str
    tool_calls: list[ToolCallDoc]
    error: str
    message: str
    retry_after_s: float


class ProviderDoc(TypedDict, total=False):
    """An agent's provider settings, or one of its ``fallbacks``, as validated."""

    provider: str
    model: str
    base_url: str
    api_key_env: str
    max_tokens: int
    temperature: float
    timeout_s: float
    replies: list[str | ReplyDoc]
    delay_s: float


class _AgentName(TypedDict):
    name: str


class AgentDoc(_AgentName, ProviderDoc, total=False):
    """One ``[[agents]]`` table, as validated."""

    system_prompt: str
    tools: list[str]
    max_tool_rounds: int
    fallbacks: list[ProviderDoc]
    fall_back_on_permanent_errors: bool
    output_schema: dict[str, object]
    output_retries: int


class _TaskId(TypedDict):
    id: str


class TaskDoc(_TaskId, total=False):
    """One ``[[tasks]]`` table, as validated."""

    description: str
    agent: str
    depends_on: list[str]


class _RetryDoc(TypedDict, total=False):
    max_attempts: int
    initial_delay_s: float
    multiplier: float
    max_delay_s: float
    max_total_delay_s: float


class _BreakerDoc(TypedDict, total=False):
    consecutive_failure_limit: int
    recovery_timeout_s: float


class _ToolsDoc(TypedDict, total=False):
    root: str
    shell_allowlist: list[str]
    allow_private_network: bool


class MCPServerDoc(TypedDict, total=False):
    """One ``[mcp_servers.NAME]`` table, as validated."""

    command: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    url: str
    headers: dict[str, str]
    pass_env: list[str]
    headers_env: dict[str, str]
    prefix: str
    tools: list[str]
    timeout_s: float
    connect_timeout_s: float


class _LimitsDoc(TypedDict, total=False):
    requests_per_minute: float
    tokens_per_minute: float
    max_concurrent: int
    burst: float


class _PriceDoc(TypedDict):
    input_per_million_usd: float
    output_per_million_usd: float


class _BudgetDoc(TypedDict, total=False):
    max_total_tokens: int
    max_requests: int
    max_cost_usd: float
    prices: dict[str, _PriceDoc]


class _Declared(TypedDict):
    agents: list[AgentDoc]
    tasks: list[TaskDoc]


class PipelineDoc(_Declared, total=False):
    """A whole pipeline file, as validated."""

    name: str
    description: str
    stop_on_failure: bool
    max_concurrent: int
    retry: _RetryDoc
    breaker: _BreakerDoc
    tools: _ToolsDoc
    mcp_servers: dict[str, MCPServerDoc]
    limits: dict[str, _LimitsDoc]
    budget: _BudgetDoc
