"""Tools from typed functions, as a strict user sees them (checked, never executed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_type

from aegis_gov import MCPConnectionError, Tool, ToolRegistry

registry = ToolRegistry()


@registry.tool
def add(a: int, b: int = 1) -> int:
    """Add two integers."""
    return a + b


@registry.tool(name="search_notes", description="Search the notes")
async def search(query: str, *, limit: int = 10) -> list[str]:
    return [query] * limit


async def check_the_decorator_keeps_each_signature() -> None:
    assert_type(add(1), int)
    assert_type(add(1, b=2), int)
    add("1")  # type: ignore[arg-type]  # unused (an error) if the decorator lost the types
    assert_type(await search("x"), list[str])
    assert_type(await search("x", limit=2), list[str])
    await search("x", 2)  # type: ignore[call-arg]  # limit stays keyword-only
    plain: Callable[[int, int], int] = add
    assert_type(plain(1, 2), int)


def check_add_function_and_mcp() -> None:
    assert_type(registry.add_function(add, name="add2"), Tool)
    tools = registry.add_mcp_server("docs", command="python", args=["server.py"], prefix="")
    assert_type(tools, list[Tool])
    assert_type(registry.add_mcp_server("web", url="http://127.0.0.1:8000/mcp"), list[Tool])
    with ToolRegistry() as scoped:
        assert_type(scoped, ToolRegistry)
    registry.close()
    error = MCPConnectionError("docs", "refused")
    assert_type(error.server, str)
