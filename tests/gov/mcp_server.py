"""A small MCP server written with the SDK's server API, for the MCP tests.

Run as a script it serves over stdio (``--dotted`` adds a tool whose name has a dot); the
HTTP tests import :func:`build` and serve its streamable-HTTP app on a loopback socket.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError


def build(*, dotted: bool = False) -> MCPServer:
    """The server: ``add``, ``shout``, ``fail``, ``hang`` (never answers) and ``where``."""
    server = MCPServer("aegis-test", log_level="ERROR")

    @server.tool()
    def add(a: int, b: int) -> str:
        """Add two integers."""
        return str(a + b)

    @server.tool()
    def shout(text: str, times: int = 1) -> str:
        """Upper-case a text, repeated."""
        return " ".join([text.upper()] * times)

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails, with the reason given."""
        raise ToolError(f"failed on purpose: {reason}")

    @server.tool()
    async def hang() -> str:
        """Never answers (for timeouts)."""
        await anyio.Event().wait()
        return "unreachable"

    @server.tool()
    def where() -> str:
        """The server's process id and argv, to tell a subprocess from the test's process."""
        return f"{os.getpid()} {' '.join(sys.argv[1:]) or '(in process)'}"

    if dotted:

        @server.tool(name="notes.search")
        def search(query: str) -> str:
            """A tool whose name the providers refuse."""
            return query

    return server


if __name__ == "__main__":
    build(dotted="--dotted" in sys.argv).run("stdio")
