# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""``ToolRegistry``: the tools agents may call, by name, with validated arguments.

Over 400 lines because the registry is the one place every kind of tool (hand-written schema,
typed function, MCP server) meets the same validation and error rules; the kinds themselves
live in ``_tool``, ``_function_tool`` and ``_mcp``.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

import attrs
from aegis_adapters import ToolSpec

from aegis_gov._builtins import builtin_tools
from aegis_gov._function_tool import FunctionTool, function_tool
from aegis_gov._loop_thread import LoopThread
from aegis_gov._mcp import MCPConnection, MCPServerSpec, RemoteCall, RemoteTool
from aegis_gov._memory import ToolMemory
from aegis_gov._netguard import Resolver
from aegis_gov._sandbox import SandboxConfig
from aegis_gov._schema_refs import empty_registry
from aegis_gov._tool import Tool, ToolOutcome, clip, to_text
from aegis_gov._tool_errors import (
    DuplicateToolError,
    InvalidToolArgumentsError,
    ToolError,
    ToolExecutionError,
    UnknownToolError,
)

if TYPE_CHECKING:
    from typing import TypeAlias

    import jsonschema.protocols

    _JsonObject: TypeAlias = Mapping[str, Any]

__all__ = ["ToolRegistry"]

logger = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., object])


@attrs.frozen
class _Entry:
    tool: Tool
    validator: jsonschema.protocols.Validator | None  # None: a FunctionTool validates itself
    signature: inspect.Signature | None
    server: str | None = None  # the MCP server the tool comes from


def _shut_down(servers: dict[str, MCPConnection], loop: LoopThread) -> None:
    """Close and forget *servers*, then stop *loop* (``close``, or a registry's finalizer)."""
    connections = list(servers.values())
    servers.clear()
    for connection in connections:
        connection.close()
    loop.close()


def _chosen(
    server: str, remote: list[RemoteTool], wanted: Iterable[str] | None
) -> list[RemoteTool]:
    """The *wanted* tools of *remote* (all if None), in the order asked for."""
    if wanted is None:
        return remote
    listed = {tool.name: tool for tool in remote}
    for name in wanted:
        if name not in listed:
            raise ValueError(
                f"MCP server {server!r} lists no tool named {name!r}; "
                f"it lists {', '.join(map(repr, listed)) or 'none'}"
            )
    return [listed[name] for name in dict.fromkeys(wanted)]


def _signature(fn: Callable[..., object]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no introspectable signature
        return None


def _message(exc: BaseException) -> str:
    """An exception's message, even when its ``__str__`` raises."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001  # a tool's own exception class: say so instead
        return "(its message could not be read)"


def _without_values(error: jsonschema.exceptions.ValidationError) -> str:
    """What a schema check found, naming keys and what the schema wants, never the values.

    jsonschema's own messages quote the offending value (``'s3cret' is not of type
    'integer'``); arguments can hold a user's data, and this text goes to logs, events and
    checkpoints as well as back to the model.
    """
    keyword = str(error.validator)
    if keyword == "required":
        return error.message  # "'name' is a required property": the name is the schema's
    if keyword == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        extra = sorted(str(k) for k in error.instance if k not in allowed)
        return f"unexpected properties: {', '.join(map(repr, extra[:10]))}"
    wanted = json.dumps(error.validator_value, default=str, ensure_ascii=False)
    return f"does not satisfy {keyword!r} {clip(wanted, 160)}"


def _json_path(path: Iterable[object]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class ToolRegistry:
    """The tools agents may call, by name, with arguments validated against each tool's schema.

    Five safe built-ins are registered unless ``builtins=False``: ``file_read`` (``{"path"}``,
    confined to ``root``), ``http_get`` (``{"url"}``, global addresses only unless
    ``allow_private_network``), ``shell`` (``{"command"}``, disabled until ``shell_allowlist``
    names executables, then run inside a bubblewrap sandbox), ``memory_store``
    (``{"key", "value"}``) and ``memory_retrieve`` (``{"key"}``), the last two backed by
    ``memory``.

    Tools come from a hand-written schema (:meth:`define_tool`), from a typed function
    (:meth:`tool`, :meth:`add_function`) or from an MCP server (:meth:`add_mcp_server`); all
    are validated, called and reported the same way. Coroutines (``async def`` tools, MCP
    sessions) run on one event-loop thread the registry owns, started on first use: call
    :meth:`close`, or use the registry in a ``with`` block, to end the sessions and the thread.

    Thread-safe: tools may be defined, removed and called from several threads; the lock is never
    held while a tool runs. Every error leaves the registry usable.

    Args:
        root: Directory ``file_read`` is confined to and ``shell`` runs in (default: the
            current directory at construction).
        shell_allowlist: Executable names (no paths) ``shell`` may run; empty disables ``shell``.
        allow_private_network: Let ``http_get`` reach loopback, private, link-local... addresses.
            Cloud metadata endpoints stay blocked.
        http_timeout_s: One deadline for a whole ``http_get`` call: resolving, connecting,
            headers, body and redirects.
        shell_timeout_s: How long a ``shell`` command may run before it is killed (with every
            process it started).
        shell_sandbox: ``"bwrap"`` (the default) runs every command inside a bubblewrap sandbox
            and refuses with ``SandboxUnavailableError`` where none works.
            ``"none-UNSAFE"`` runs commands directly on the host, where the allowlist is the only
            barrier; never use it with a model you do not fully trust.
        shell_allow_network: Give sandboxed commands the host's network (default: none).
        max_output_bytes: Cap on a file read, a response body and a command's output.
        memory_max_entries: Entries the shared memory holds before evicting the LRU one.
        memory_max_value_bytes: Largest value ``memory_store`` accepts (UTF-8 bytes).
        builtins: Register the five built-ins.
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike[str] | None = None,
        shell_allowlist: Iterable[str] = (),
        allow_private_network: bool = False,
        http_timeout_s: float = 10.0,
        shell_timeout_s: float = 30.0,
        shell_sandbox: Literal["bwrap", "none-UNSAFE"] = "bwrap",
        shell_allow_network: bool = False,
        max_output_bytes: int = 64_000,
        memory_max_entries: int = 1000,
        memory_max_value_bytes: int = 64_000,
        builtins: bool = True,
        _resolver: Resolver | None = None,
        _trusted_addresses: Iterable[str] = (),
    ) -> None:
        """Build the registry; see the class docstring for the arguments.

        Raises:
            ValueError: a limit or timeout is not positive, an allowlist entry is not a bare
                executable name, *shell_sandbox* is unknown, or *root* is not a directory.
        """
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._loop = LoopThread(f"aegis-tools-{id(self):x}")
        self._servers: dict[str, MCPConnection] = {}
        # A registry dropped (or still open at exit) without close() ends its servers too.
        weakref.finalize(self, _shut_down, self._servers, self._loop)
        self.memory: ToolMemory = ToolMemory(
            max_entries=memory_max_entries, max_value_bytes=memory_max_value_bytes
        )
        self._config = SandboxConfig.build(
            root=Path.cwd() if root is None else Path(root),
            shell_allowlist=shell_allowlist,
            allow_private_network=allow_private_network,
            http_timeout_s=http_timeout_s,
            shell_timeout_s=shell_timeout_s,
            shell_sandbox=shell_sandbox,
            shell_allow_network=shell_allow_network,
            max_output_bytes=max_output_bytes,
            resolver=_resolver,
            trusted_addresses=_trusted_addresses,
        )
        if builtins:
            for tool in builtin_tools(self._config, self.memory):
                self.register(tool)

    @property
    def root(self) -> Path:
        """The resolved root directory of ``file_read`` and ``shell``."""
        return self._config.root

    def define_tool(
        self,
        name: str,
        description: str,
        fn: Callable[..., object],
        schema: Mapping[str, object],
    ) -> Tool:
        """Define and register a tool; ``fn`` receives the validated arguments as keywords.

        Raises:
            InvalidToolNameError: *name* breaks ``^[a-zA-Z0-9_-]{1,64}$``.
            InvalidToolSchemaError: *schema* is not a valid JSON Schema with ``"type": "object"``.
            DuplicateToolError: a tool named *name* is already registered.
        """
        return self.register(Tool(name=name, description=description, fn=fn, input_schema=schema))

    @overload
    def tool(self, fn: _F, /) -> _F: ...
    @overload
    def tool(
        self, *, name: str | None = None, description: str | None = None
    ) -> Callable[[_F], _F]: ...
    def tool(
        self,
        fn: Callable[..., object] | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> object:
        """Register the decorated function as a tool (see :meth:`add_function`); return it as is.

        Use it bare (``@registry.tool``) or with options (``@registry.tool(name="x")``).

        Raises:
            The errors of :meth:`add_function`, when the function is decorated.
        """

        def decorate(function: Callable[..., object]) -> Callable[..., object]:
            self.add_function(function, name=name, description=description)
            return function

        return decorate if fn is None else decorate(fn)

    def add_function(
        self,
        fn: Callable[..., object],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> Tool:
        """Register a typed function as a tool; its signature and docstring make the schema.

        Each parameter is an argument: its annotation gives the JSON Schema (through pydantic,
        so models, dataclasses, TypedDicts, enums, ``Literal`` and ``Optional`` work), a default
        makes it optional, and its description comes from the docstring's Google, NumPy or
        Sphinx parameter section (or ``Annotated[..., Field(description=...)]``). The tool's
        description is the rest of the docstring unless *description* is given; its name is
        the function's unless *name* is.

        Arguments are validated (and converted: a nested model arrives as that model) by the
        same pydantic model; what fails is sent back to the model as the tool's error result.
        An ``async def`` function runs on the registry's event-loop thread. The result is
        text: a ``str`` as is, ``None`` as ``""``, anything else as JSON.

        Raises:
            InvalidToolNameError: the name breaks ``^[a-zA-Z0-9_-]{1,64}$``.
            InvalidToolSchemaError: a parameter is ``*args``, ``**kwargs`` or positional-only,
                or its type has no JSON Schema.
            DuplicateToolError: a tool of that name is already registered.
        """
        return self.register(function_tool(fn, name=name, description=description))

    def register(self, tool: Tool) -> Tool:
        """Register an existing *tool* and return it.

        Raises:
            DuplicateToolError: a tool of the same name is already registered.
        """
        return self._add(tool)

    def add_mcp_server(
        self,
        name: str,
        *,
        command: str | None = None,
        args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        prefix: str | None = None,
        tools: Iterable[str] | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 30.0,
    ) -> list[Tool]:
        """Connect to a Model Context Protocol server and register its tools.

        Give *command* (and *args*, *env*, *cwd*) to start the server as a subprocess spoken to
        over stdio, or *url* (and *headers*) for a server speaking streamable HTTP. The child
        gets the SDK's minimal environment (``PATH``, ``HOME``...) plus *env*: your other
        variables are not passed on.

        Each tool the server lists is registered as *prefix* + its own name, *prefix*
        defaulting to ``"<name>_"`` (``""`` keeps the server's names); *tools* keeps only the
        listed ones (the server's own names). Agents name them in ``AgentConfig.tools`` like
        any other tool, and their arguments are validated against the server's schema first.
        A call that takes longer than *timeout_s* fails with ``ToolTimeoutError``; an error
        the server reports reaches the model as the tool's error result.

        The session lives until :meth:`close` (or the end of a ``with`` block).

        Returns:
            The tools registered, in the server's order.

        Raises:
            ValueError: *name* is not 1-32 letters, digits, ``_`` or ``-``, a server of that
                name was already added, both or neither of *command* and *url* are given, a
                timeout is not positive, or *tools* names a tool the server does not list.
            ImportError: the ``mcp`` package is missing (the ``aegis-gov[mcp]`` extra).
            MCPConnectionError: the server cannot be started or reached, or does not list its
                tools within *connect_timeout_s*.
            InvalidToolNameError: a prefixed name breaks ``^[a-zA-Z0-9_-]{1,64}$`` (leave that
                tool out with *tools*).
            InvalidToolSchemaError: a tool's input schema is not a JSON Schema object schema.
            DuplicateToolError: a prefixed name is already registered.
        """
        spec = MCPServerSpec(
            name=name,
            command=command,
            args=tuple(args),
            env=None if env is None else dict(env),
            cwd=None if cwd is None else os.fspath(cwd),
            url=url,
            headers=None if headers is None else dict(headers),
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
        )
        connection = MCPConnection(spec, self._loop)
        with self._lock:  # the name is taken from here on, so two threads cannot both add it
            if name in self._servers:
                raise ValueError(f"an MCP server named {name!r} was already added")
            self._servers[name] = connection
        try:
            chosen = _chosen(name, connection.open(), tools)
            return self._add_remote(connection, chosen, f"{name}_" if prefix is None else prefix)
        except BaseException:
            with self._lock:
                if self._servers.get(name) is connection:
                    del self._servers[name]
            connection.close()
            raise

    def close(self) -> None:
        """Close every MCP session (their tools are removed) and stop the event-loop thread.

        The registry stays usable for its other tools; an async tool starts a new loop.
        Idempotent.
        """
        with self._lock:
            servers = dict(self._servers)
            self._servers.clear()
            for name in [n for n, e in self._entries.items() if e.server is not None]:
                del self._entries[name]
        _shut_down(servers, self._loop)

    def __enter__(self) -> ToolRegistry:  # noqa: PYI034  # typing.Self is 3.11+
        """Use the registry in a ``with`` block that :meth:`close` s it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """:meth:`close` the registry."""
        self.close()

    def remove(self, name: str) -> None:
        """Unregister the tool *name* (built-ins included).

        Raises:
            UnknownToolError: no such tool.
        """
        with self._lock:
            if self._entries.pop(name, None) is None:
                raise UnknownToolError("no tool of this name is registered", tool_name=name)

    def get(self, name: str) -> Tool:
        """Return the tool *name*.

        Raises:
            UnknownToolError: no such tool.
        """
        return self._entry(name).tool

    def names(self) -> list[str]:
        """The registered tool names, in registration order."""
        with self._lock:
            return list(self._entries)

    def specs(self, names: Iterable[str] | None = None) -> list[ToolSpec]:
        """The specs of *names* (each once, in the order given), or of every tool if None.

        Raises:
            UnknownToolError: a name is not registered (the first such name is reported).
        """
        with self._lock:
            if names is None:
                return [entry.tool.spec for entry in self._entries.values()]
            wanted = list(dict.fromkeys(names))
            return [self._entry(name).tool.spec for name in wanted]

    def call(self, name: str, arguments: Mapping[str, object] | str) -> str:
        """Validate *arguments* against the tool's schema, call the tool and return its text.

        *arguments* may be a mapping or a JSON object as text (as OpenAI sends tool calls).

        Raises:
            UnknownToolError: no such tool.
            InvalidToolArgumentsError: the arguments break the schema (the tool is not called).
            ToolRefusedError: a sandbox rule refused the call (subclasses say which).
            ToolExecutionError: the tool failed; the original exception is ``__cause__``.
        """
        entry = self._entry(name)
        kwargs = self._validated(entry, arguments)
        try:
            result = entry.tool.fn(**kwargs)
            if inspect.isawaitable(result):  # an async tool: run it on the registry's loop
                result = self._loop.run(result)
            # Turning the result into text can fail too (bytes that are not UTF-8, a cycle,
            # a __str__ that raises): that is the tool's failure, told to the model.
            if isinstance(entry.tool, FunctionTool):
                return entry.tool.render(result)
            return to_text(result)
        except ToolError:
            raise
        except Exception as exc:
            raise ToolExecutionError(
                f"failed with {type(exc).__name__}: {clip(_message(exc))}", tool_name=name
            ) from exc

    def try_call(self, name: str, arguments: Mapping[str, object] | str) -> ToolOutcome:
        """Like ``call`` but return a ``ToolError`` as an outcome: the body of a tool-calling loop.

        Other exceptions (bugs, ``KeyboardInterrupt``) still propagate.
        """
        try:
            return ToolOutcome(tool_name=name, output=self.call(name, arguments))
        except ToolError as exc:
            logger.info("%s", exc)
            return ToolOutcome(tool_name=name, output=str(exc), error=exc)

    def __contains__(self, name: object) -> bool:
        """Whether a tool named *name* is registered."""
        with self._lock:
            return name in self._entries

    def __len__(self) -> int:
        """How many tools are registered."""
        with self._lock:
            return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        """Iterate over a snapshot of the tool names, in registration order."""
        return iter(self.names())

    def __repr__(self) -> str:
        """Show the root and the tool names."""
        return f"ToolRegistry(root={str(self.root)!r}, tools={self.names()!r})"

    # ----------------------------------------------------------------- internals

    def _add(self, tool: Tool, server: str | None = None) -> Tool:
        function = isinstance(tool, FunctionTool)
        import jsonschema  # noqa: PLC0415  # lazy: imported with the first tool, not the package

        entry = _Entry(
            tool=tool,
            validator=None
            if function
            else jsonschema.Draft202012Validator(tool.input_schema, registry=empty_registry()),
            signature=None if function else _signature(tool.fn),
            server=server,
        )
        with self._lock:
            if tool.name in self._entries:
                raise DuplicateToolError(
                    "a tool of this name is already registered", tool_name=tool.name
                )
            self._entries[tool.name] = entry
        return tool

    def _add_remote(
        self, connection: MCPConnection, remote: Iterable[RemoteTool], prefix: str
    ) -> list[Tool]:
        """Register *remote* tools as one batch: all of them, or (on an error) none."""
        server = connection.spec.name
        built = [
            Tool(
                name=prefix + tool.name,
                description=tool.description,
                fn=RemoteCall(connection, prefix + tool.name, tool.name),
                input_schema=tool.input_schema,
            )
            for tool in remote
        ]
        added: list[Tool] = []
        try:
            for tool in built:
                added.append(self._add(tool, server))  # noqa: PERF401  # kept on failure
        except DuplicateToolError:
            with self._lock:
                for tool in added:
                    del self._entries[tool.name]
            raise
        return added

    def _entry(self, name: str) -> _Entry:
        with self._lock:
            entry = self._entries.get(name)
        if entry is None:
            raise UnknownToolError(
                "no tool of this name is registered", tool_name=clip(str(name), 64)
            )
        return entry

    @staticmethod
    def _validated(entry: _Entry, arguments: Mapping[str, object] | str) -> dict[str, object]:
        name = entry.tool.name
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise InvalidToolArgumentsError(
                    f"arguments are not valid JSON: {exc.msg} at position {exc.pos}",
                    tool_name=name,
                    path="$",
                    validator=None,
                ) from exc
        if not isinstance(arguments, Mapping):
            raise InvalidToolArgumentsError(
                f"arguments must be a JSON object, not {type(arguments).__name__}",
                tool_name=name,
                path="$",
                validator="type",
            )
        kwargs = dict(arguments)
        if entry.validator is None:
            return cast("FunctionTool", entry.tool).validate(kwargs)
        import jsonschema.exceptions  # noqa: PLC0415  # already imported by _add

        error = jsonschema.exceptions.best_match(
            entry.validator.iter_errors(cast("_JsonObject", kwargs))
        )
        if error is not None:
            path = _json_path(error.absolute_path)
            raise InvalidToolArgumentsError(
                f"invalid arguments at {path}: {clip(_without_values(error))}",
                tool_name=name,
                path=path,
                validator=str(error.validator),
            )
        if entry.signature is not None:
            try:
                entry.signature.bind(**kwargs)
            except TypeError as exc:
                raise InvalidToolArgumentsError(
                    f"arguments do not fit the tool's function: {clip(str(exc))}",
                    tool_name=name,
                    path="$",
                    validator=None,
                ) from exc
        return kwargs
