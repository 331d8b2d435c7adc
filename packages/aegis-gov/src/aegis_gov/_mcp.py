# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""MCP servers as tools: one connection per server, owned by the registry's event-loop thread.

The MCP SDK is asyncio-based and its session is bound to the task that opened it (anyio task
groups must be left by the task that entered them). So each server gets one long-lived task on
the registry's :class:`~aegis_gov._loop_thread.LoopThread`: it connects, lists the tools,
then waits to be told to close. Tool calls from any thread are coroutines sent to that loop,
where they share the session (MCP multiplexes requests on one connection).

The ``mcp`` package (the ``aegis-gov[mcp]`` extra) is imported only when a server is added.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from aegis_gov._errors import AegisError
from aegis_gov._tool import clip
from aegis_gov._tool_errors import ToolExecutionError, ToolTimeoutError

if TYPE_CHECKING:
    import asyncio

    from aegis_gov._loop_thread import LoopThread

__all__ = ["MCPConnection", "MCPConnectionError", "MCPServerSpec", "RemoteCall", "RemoteTool"]

logger = logging.getLogger(__name__)

SERVER_NAME_PATTERN: Final = re.compile(r"^[a-zA-Z0-9_-]{1,32}$")
_MAX_ERROR_CHARS = 2000


class MCPConnectionError(AegisError, ConnectionError):
    """An MCP server could not be started, reached or listed (or did not answer in time).

    Attributes:
        server: The server's name, as given to ``add_mcp_server``.
    """

    def __init__(self, server: str, reason: str) -> None:
        """Record the *server* and why it could not be used."""
        super().__init__(f"MCP server {server!r}: {reason}")
        self.server = server


def _check_server_name(_instance: object, _attribute: object, value: str) -> None:
    if not SERVER_NAME_PATTERN.match(str(value)):
        raise ValueError(
            f"an MCP server name must be 1 to 32 letters, digits, '_' or '-', not {value!r}"
        )


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


@attrs.frozen
class MCPServerSpec:
    """How to reach one MCP server: a command to start (stdio) or a URL (streamable HTTP).

    Raises:
        ValueError: the name is not 1-32 letters, digits, ``_`` or ``-``; both or neither of
            *command* and *url* are given; *headers* come with a command, or *args*, *env*
            or *cwd* with a URL; a timeout is not positive.
    """

    name: str = attrs.field(validator=_check_server_name)
    command: str | None = None
    args: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] | None = None
    timeout_s: float = attrs.field(default=60.0, validator=_positive)
    connect_timeout_s: float = attrs.field(default=30.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        """Reject a spec that names no transport, or two."""
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server {self.name!r}: give either a command or a url")
        if self.url is not None and (self.args or self.env is not None or self.cwd is not None):
            raise ValueError(f"MCP server {self.name!r}: args, env and cwd are for a command")
        if self.command is not None and self.headers is not None:
            raise ValueError(f"MCP server {self.name!r}: headers are for a url")


@attrs.frozen
class RemoteTool:
    """One tool a server lists: its own name, description and input schema."""

    name: str
    description: str
    input_schema: Mapping[str, object]


@attrs.frozen
class RemoteCall:
    """The ``fn`` of an MCP tool: its keyword arguments, sent to the server as the call's."""

    connection: MCPConnection
    tool_name: str
    remote_name: str

    def __call__(self, **arguments: object) -> str:
        """Call the tool on the server and return its text (see ``MCPConnection.call``)."""
        return self.connection.call(self.tool_name, self.remote_name, arguments)


class MCPConnection:
    """A connected MCP server: list its tools once, call them from any thread, close it."""

    def __init__(self, spec: MCPServerSpec, loop: LoopThread) -> None:
        """Prepare the connection to *spec* on *loop*; nothing is started until ``open``."""
        self.spec = spec
        self._loop = loop
        self._client: Any = None  # mcp.Client once connected, on the loop's thread only
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def open(self) -> list[RemoteTool]:
        """Start or reach the server, and list its tools.

        Raises:
            ImportError: the ``mcp`` package is not installed.
            MCPConnectionError: the server cannot be started or reached, fails the handshake
                or does not list its tools within ``connect_timeout_s``.
        """
        try:
            import mcp  # noqa: F401, PLC0415  # the optional extra
        except ImportError as exc:
            raise ImportError(
                "MCP servers need the mcp package, the aegis-gov[mcp] extra: from a checkout, "
                'pip install "./packages/aegis-gov[mcp]"'
            ) from exc
        return self._loop.run(self._aopen())

    def call(self, tool_name: str, remote_name: str, arguments: Mapping[str, object]) -> str:
        """Call *remote_name* on the server for the registry's tool *tool_name*; its text.

        Raises:
            ToolTimeoutError: no answer within ``timeout_s``.
            ToolExecutionError: the server reported an error, or the connection failed.
        """
        return self._loop.run(self._acall(tool_name, remote_name, dict(arguments)))

    def close(self) -> None:
        """End the session (and the server process of a stdio server); idempotent."""
        if self._task is not None:
            self._loop.run(self._aclose())

    # -- on the loop's thread ---------------------------------------------------------------

    async def _aopen(self) -> list[RemoteTool]:
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        ready: asyncio.Future[list[RemoteTool]] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._serve(ready), name=f"mcp:{self.spec.name}")
        try:
            return await asyncio.wait_for(asyncio.shield(ready), self.spec.connect_timeout_s)
        except asyncio.TimeoutError:
            await self._abandon()
            raise MCPConnectionError(
                self.spec.name, f"no answer within {self.spec.connect_timeout_s:g} s"
            ) from None
        except BaseException:
            await self._abandon()
            raise

    async def _abandon(self) -> None:
        """Stop a connection that never opened: cancel its task, whatever it is waiting on."""
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # its outcome is the cancellation: nothing to report

    async def _serve(self, ready: asyncio.Future[list[RemoteTool]]) -> None:
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        from mcp import Client  # noqa: PLC0415

        try:
            async with Client(self._target()) as client:
                tools = await _list_tools(client)
                self._client = client
                ready.set_result(tools)
                assert self._stop is not None  # noqa: S101  # set before this task starts
                await self._stop.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  # reported to open(), or logged
            if not ready.done():
                ready.set_exception(MCPConnectionError(self.spec.name, _describe(exc)))
            else:
                logger.warning("MCP server %r: the session ended: %s", self.spec.name, exc)
        finally:
            self._client = None

    def _target(self) -> Any:  # an mcp transport, typed by the SDK
        from mcp import StdioServerParameters, stdio_client  # noqa: PLC0415

        spec = self.spec
        if spec.command is not None:
            parameters = StdioServerParameters(
                command=spec.command,
                args=list(spec.args),
                env=None if spec.env is None else dict(spec.env),
                cwd=spec.cwd,
            )
            return stdio_client(parameters, errlog=_server_stderr())
        assert spec.url is not None  # noqa: S101  # MCPServerSpec holds one of the two
        return _http_transport(spec.url, dict(spec.headers or {}))

    async def _acall(self, tool_name: str, remote_name: str, arguments: dict[str, object]) -> str:
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        from mcp import MCPError  # noqa: PLC0415

        client = self._client
        server = self.spec.name
        if client is None:
            raise ToolExecutionError(f"MCP server {server!r} is not connected", tool_name=tool_name)
        try:
            result = await asyncio.wait_for(
                client.call_tool(remote_name, arguments), self.spec.timeout_s
            )
        except asyncio.TimeoutError:
            raise ToolTimeoutError(
                f"MCP server {server!r} did not answer within {self.spec.timeout_s:g} s",
                tool_name=tool_name,
                timeout_s=self.spec.timeout_s,
            ) from None
        except MCPError as exc:
            raise ToolExecutionError(
                f"MCP server {server!r}: {clip(exc.message, _MAX_ERROR_CHARS)}",
                tool_name=tool_name,
            ) from exc
        except Exception as exc:
            raise ToolExecutionError(
                f"the call to MCP server {server!r} failed: {clip(_describe(exc))}",
                tool_name=tool_name,
            ) from exc
        text = _result_text(result)
        if result.is_error:
            raise ToolExecutionError(
                f"failed: {clip(text, _MAX_ERROR_CHARS) or '(no message)'}", tool_name=tool_name
            )
        return text

    async def _aclose(self) -> None:
        import asyncio  # noqa: PLC0415  # asyncio loads with the async API

        task, self._task = self._task, None
        if task is None:
            return
        if self._stop is not None:
            self._stop.set()
        try:
            await asyncio.wait_for(task, self.spec.connect_timeout_s)
        except asyncio.TimeoutError:
            logger.warning("MCP server %r did not close in time; abandoned", self.spec.name)
        except Exception as exc:  # noqa: BLE001  # closing: report, do not raise
            logger.warning("MCP server %r: closing failed: %s", self.spec.name, exc)


async def _list_tools(client: Any) -> list[RemoteTool]:  # mcp.Client
    tools: list[RemoteTool] = []
    cursor: str | None = None
    for _ in range(100):  # a server that pages forever cannot hang the connection
        page = await client.list_tools(cursor=cursor)
        tools.extend(
            RemoteTool(tool.name, tool.description or "", dict(tool.input_schema))
            for tool in page.tools
        )
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


@contextlib.asynccontextmanager
async def _http_transport(url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    """Streamable HTTP with *headers* on every request; the HTTP client is closed after."""
    import httpx2  # noqa: PLC0415  # mcp's own HTTP client
    from mcp.client.streamable_http import streamable_http_client  # noqa: PLC0415

    # The SDK's defaults: 30 s to connect, write or get a connection; 300 s between reads of
    # a stream the server holds open. A call's own limit is timeout_s.
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


def _server_stderr() -> Any:  # a file the child's stderr goes to
    """The process's real stderr for a stdio server's messages, or nowhere.

    ``sys.stderr`` may be a stand-in without a file descriptor (pytest's capture, Jupyter),
    which a child process cannot write to.
    """
    stream = sys.__stderr__
    try:
        if stream is not None:
            stream.fileno()
            return stream
    except (OSError, ValueError):
        pass
    return subprocess.DEVNULL


def _result_text(result: Any) -> str:  # mcp_types.CallToolResult
    """The text of a call's content blocks; the structured content when there is no text."""
    parts: list[str] = []
    for block in result.content:
        if block.type == "text":
            parts.append(block.text)
        elif block.type in {"image", "audio"}:
            parts.append(f"[{block.type}: {block.mime_type}, not shown]")
        else:
            parts.append(f"[{block.type} content, not shown]")
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False, default=str)
    return "\n".join(parts)


def _describe(exc: BaseException) -> str:
    """The innermost useful message of *exc*, looking inside exception groups."""
    inner = getattr(exc, "exceptions", None)  # an exception group (a backport on 3.10)
    while isinstance(inner, tuple) and inner and isinstance(inner[0], BaseException):
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{type(exc).__name__}: {exc.strerror or exc} ({os.fsdecode(exc.filename)})"
    return clip(f"{type(exc).__name__}: {exc}", _MAX_ERROR_CHARS)
