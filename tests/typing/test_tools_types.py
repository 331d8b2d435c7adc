"""The tool registry's public types, as a strict user sees them (checked, never executed)."""

from __future__ import annotations

from pathlib import Path
from typing import assert_type

from aegis_adapters import ToolSpec
from aegis_gov import (
    BlockedAddressError,
    InvalidToolArgumentsError,
    Tool,
    ToolError,
    ToolMemory,
    ToolOutcome,
    ToolRegistry,
)


def search(query: str) -> str:
    return query


def check_registry() -> None:
    registry = ToolRegistry(root=Path(), shell_allowlist=["ls"], allow_private_network=False)
    tool = registry.define_tool(
        name="search_web",
        description="Search the web for recent information",
        fn=search,
        schema={
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    )
    assert_type(tool, Tool)
    assert_type(tool.spec, ToolSpec)
    assert_type(registry.call("search_web", {"query": "x"}), str)
    assert_type(registry.call("search_web", '{"query": "x"}'), str)
    outcome = registry.try_call("search_web", {"query": "x"})
    assert_type(outcome, ToolOutcome)
    assert_type(outcome.error, ToolError | None)
    assert_type(outcome.is_error, bool)
    assert_type(registry.specs(), list[ToolSpec])
    assert_type(registry.specs(["search_web"]), list[ToolSpec])
    assert_type(registry.names(), list[str])
    assert_type(registry.get("search_web"), Tool)
    assert_type(list(registry), list[str])
    assert_type(registry.memory, ToolMemory)
    assert_type(registry.memory.retrieve("k"), str)
    assert_type(registry.root, Path)
    registry.remove("search_web")


def check_errors(error: ToolError) -> None:
    assert_type(error.tool_name, str)
    if isinstance(error, InvalidToolArgumentsError):
        assert_type(error.path, str)
        assert_type(error.validator, str | None)
    if isinstance(error, BlockedAddressError):
        assert_type(error.address, str)
