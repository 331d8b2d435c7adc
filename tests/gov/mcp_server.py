"""A small MCP server written with the SDK's server API, for the MCP tests.

Run as a script it serves over stdio (``--dotted`` adds a tool whose name has a dot); the
HTTP tests serve :func:`build`'s streamable-HTTP app on a loopback socket (:class:`HTTPServer`).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from typing import TYPE_CHECKING

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send


def build(*, dotted: bool = False) -> MCPServer:
    """The server: ``add``, ``shout``, ``fail``, ``hang``, ``crash``, ``env`` and ``where``."""
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
    def crash() -> str:
        """Ends the server's process at once, mid-call."""
        os._exit(3)

    @server.tool()
    def env(name: str) -> str:
        """The value of an environment variable of the server's process."""
        return os.environ.get(name, "(unset)")

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


class HTTPServer:
    """The test server's streamable-HTTP app, served by uvicorn on a loopback socket."""

    def __init__(self) -> None:
        import uvicorn  # noqa: PLC0415  # only the HTTP tests need it

        inner = build().streamable_http_app()
        self.headers: list[dict[bytes, bytes]] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                self.headers.append(dict(scope["headers"]))
            await inner(scope, receive, send)

        # Bound before the thread starts: connections wait in the backlog, no polling needed.
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen()
        port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.socket.close()


if __name__ == "__main__":
    build(dotted="--dotted" in sys.argv).run("stdio")
