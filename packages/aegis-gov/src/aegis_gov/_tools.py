# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""Tools agents may call: the ``Tool`` value, its errors, the shared memory and ``ToolRegistry``."""

from __future__ import annotations

import collections
import copy
import inspect
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import attrs
import jsonschema
import jsonschema.exceptions
from aegis_adapters import ToolSpec

if TYPE_CHECKING:
    import os
    from typing import TypeAlias

    from aegis_gov._netguard import Resolver

    _JsonObject: TypeAlias = Mapping[str, Any]

__all__ = [
    "BlockedAddressError",
    "CommandFailedError",
    "CommandNotAllowedError",
    "DuplicateToolError",
    "ForbiddenShellSyntaxError",
    "HTTPStatusError",
    "InvalidToolArgumentsError",
    "InvalidToolNameError",
    "InvalidToolSchemaError",
    "MemoryKeyNotFoundError",
    "OutputTooLargeError",
    "PathOutsideRootError",
    "SandboxUnavailableError",
    "ShellDisabledError",
    "Tool",
    "ToolCallLimitError",
    "ToolError",
    "ToolExecutionError",
    "ToolMemory",
    "ToolNotOfferedError",
    "ToolOutcome",
    "ToolRefusedError",
    "ToolRegistry",
    "ToolTimeoutError",
    "URLNotAllowedError",
    "UnknownToolError",
    "ValueTooLargeError",
]

logger = logging.getLogger(__name__)

TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MAX_DETAIL_CHARS = 200


def _clip(text: str, limit: int = _MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- errors


class ToolError(Exception):
    """Base of every tool error; ``str(error)`` starts with the tool's name.

    Attributes:
        tool_name: The tool the error is about.
        reason: The message without the ``tool 'name':`` prefix.
    """

    def __init__(self, reason: str, *, tool_name: str) -> None:
        """Build the error for *tool_name* with the human-readable *reason*."""
        super().__init__(f"tool {tool_name!r}: {reason}")
        self.tool_name: str = tool_name
        self.reason: str = reason


class InvalidToolNameError(ToolError, ValueError):
    """A tool name does not match ``^[a-zA-Z0-9_-]{1,64}$`` (the providers' rule)."""


class DuplicateToolError(ToolError, ValueError):
    """A tool with this name is already registered."""


class InvalidToolSchemaError(ToolError, ValueError):
    """A tool's schema is not a valid JSON Schema (Draft 2020-12) for an object."""


class UnknownToolError(ToolError, LookupError):
    """No tool of this name is registered."""


class InvalidToolArgumentsError(ToolError, ValueError):
    """The arguments do not match the tool's schema; nothing was called.

    Attributes:
        path: JSON path of the failing part of the arguments, ``$`` for the whole object.
        validator: The failing JSON Schema keyword (``"type"``, ``"required"``...) or None.
    """

    def __init__(self, reason: str, *, tool_name: str, path: str, validator: str | None) -> None:
        """Build the error; *reason* must not contain the whole argument value."""
        super().__init__(reason, tool_name=tool_name)
        self.path: str = path
        self.validator: str | None = validator


class ToolRefusedError(ToolError):
    """A sandbox rule refused the call. The message never contains the refused content."""


class PathOutsideRootError(ToolRefusedError):
    """``file_read`` was asked for a path that resolves outside the registry's root.

    Attributes:
        path: The path as requested (the resolved target is not disclosed).
    """

    def __init__(self, reason: str, *, tool_name: str, path: str) -> None:
        """Build the error for the requested *path*."""
        super().__init__(reason, tool_name=tool_name)
        self.path: str = path


class URLNotAllowedError(ToolRefusedError):
    """``http_get`` was given a URL it will not fetch (scheme, credentials, malformed host)."""


class BlockedAddressError(ToolRefusedError):
    """``http_get`` refused a host that is or resolves to a blocked address.

    Attributes:
        host: The host from the URL (or from a redirect).
        address: The blocked address, as text.
    """

    def __init__(self, reason: str, *, tool_name: str, host: str, address: str) -> None:
        """Build the error for *host* resolving to *address*."""
        super().__init__(reason, tool_name=tool_name)
        self.host: str = host
        self.address: str = address


class ShellDisabledError(ToolRefusedError):
    """``shell`` was called on a registry built without a ``shell_allowlist``."""


class SandboxUnavailableError(ToolRefusedError):
    """``shell`` refused to run: no working OS sandbox (bubblewrap) is available.

    The message says why (not installed, or it cannot create namespaces here) and how to get one.
    """


class CommandNotAllowedError(ToolRefusedError):
    """``shell`` was asked to run an executable outside the allowlist.

    Attributes:
        executable: The executable as written in the command.
    """

    def __init__(self, reason: str, *, tool_name: str, executable: str) -> None:
        """Build the error for *executable*."""
        super().__init__(reason, tool_name=tool_name)
        self.executable: str = executable


class ForbiddenShellSyntaxError(ToolRefusedError):
    """``shell`` was given shell metacharacters or a command that does not parse.

    Attributes:
        characters: The forbidden characters found, sorted (empty when the command did not parse).
    """

    def __init__(self, reason: str, *, tool_name: str, characters: str) -> None:
        """Build the error listing the forbidden *characters*."""
        super().__init__(reason, tool_name=tool_name)
        self.characters: str = characters


class ToolNotOfferedError(ToolRefusedError):
    """The model asked for a tool its agent was not given (``AgentConfig.tools``).

    The tool is never run, whether or not the registry has it; the model is told.
    """

    def __init__(self, reason: str, *, tool_name: str, agent: str) -> None:
        """Record the refused tool and the agent that asked for it."""
        super().__init__(reason, tool_name=tool_name)
        self.agent = agent


class ToolCallLimitError(ToolRefusedError):
    """A reply asked for more tool calls, or more tool output, than the agent's limits allow.

    ``limit`` names the setting that was reached (``max_tool_calls_per_reply`` or
    ``max_tool_output_chars``); the call is not run and the model is told.
    """

    def __init__(self, reason: str, *, tool_name: str, limit: str) -> None:
        """Record the refused tool and the limit it ran into."""
        super().__init__(reason, tool_name=tool_name)
        self.limit = limit


class OutputTooLargeError(ToolRefusedError):
    """A file, response body or command output exceeded the size cap; none of it is returned.

    Attributes:
        limit_bytes: The cap that was exceeded.
    """

    def __init__(self, reason: str, *, tool_name: str, limit_bytes: int) -> None:
        """Build the error for the exceeded *limit_bytes*."""
        super().__init__(reason, tool_name=tool_name)
        self.limit_bytes: int = limit_bytes


class ValueTooLargeError(ToolRefusedError):
    """``memory_store`` was given a value larger than the memory's per-value cap.

    Attributes:
        limit_bytes: The cap (UTF-8 bytes).
    """

    def __init__(self, reason: str, *, tool_name: str, limit_bytes: int) -> None:
        """Build the error for the exceeded *limit_bytes*."""
        super().__init__(reason, tool_name=tool_name)
        self.limit_bytes: int = limit_bytes


class ToolExecutionError(ToolError):
    """The tool ran and failed; the original exception, if any, is chained as ``__cause__``."""


class ToolTimeoutError(ToolExecutionError, TimeoutError):
    """A built-in tool ran past its time limit.

    Attributes:
        timeout_s: The limit, in seconds.
    """

    def __init__(self, reason: str, *, tool_name: str, timeout_s: float) -> None:
        """Build the error for the exceeded *timeout_s*."""
        super().__init__(reason, tool_name=tool_name)
        self.timeout_s: float = timeout_s


class MemoryKeyNotFoundError(ToolExecutionError, LookupError):
    """``memory_retrieve`` found nothing under the key.

    Attributes:
        key: The key asked for.
    """

    def __init__(self, reason: str, *, tool_name: str, key: str) -> None:
        """Build the error for the missing *key*."""
        super().__init__(reason, tool_name=tool_name)
        self.key: str = key


class CommandFailedError(ToolExecutionError):
    """``shell`` ran the command and it exited with a non-zero status.

    Attributes:
        returncode: The exit status (negative: killed by that signal).
        output: The combined stdout and stderr, decoded as UTF-8 with replacement.
    """

    def __init__(self, reason: str, *, tool_name: str, returncode: int, output: str) -> None:
        """Build the error for the exit status *returncode* and the command's *output*."""
        super().__init__(reason, tool_name=tool_name)
        self.returncode: int = returncode
        self.output: str = output


class HTTPStatusError(ToolExecutionError):
    """``http_get`` got a final response whose status is not 2xx (the body is not included).

    Attributes:
        status_code: The HTTP status.
    """

    def __init__(self, reason: str, *, tool_name: str, status_code: int) -> None:
        """Build the error for *status_code*."""
        super().__init__(reason, tool_name=tool_name)
        self.status_code: int = status_code


# --------------------------------------------------------------------------- Tool


def _validate_name(name: object) -> None:
    if not isinstance(name, str) or not TOOL_NAME_PATTERN.match(name):
        raise InvalidToolNameError(
            "a tool name must be 1 to 64 characters among letters, digits, '_' and '-'",
            tool_name=_clip(str(name), 64),
        )


def _validate_schema(name: str, schema: object) -> None:
    if not isinstance(schema, Mapping):
        raise InvalidToolSchemaError(
            f"schema must be a mapping, not {type(schema).__name__}", tool_name=name
        )
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(top level)"
        raise InvalidToolSchemaError(
            f"schema is not valid JSON Schema at {where}: {_clip(exc.message)}", tool_name=name
        ) from exc
    if schema.get("type") != "object":
        raise InvalidToolSchemaError(
            'schema must describe an object: its top level needs "type": "object"', tool_name=name
        )


def _frozen_schema(schema: Mapping[str, object]) -> Mapping[str, object]:
    # A private deep copy: later changes to the caller's dict cannot change the tool.
    # Untyped callers may pass a non-mapping: keep it as is for _validate_schema to report.
    value: object = schema
    return copy.deepcopy(dict(schema)) if isinstance(value, Mapping) else schema


def _check_name(_instance: object, _attribute: object, value: str) -> None:
    _validate_name(value)


@attrs.frozen
class Tool:
    """A callable tool: what a model sees (name, description, schema) and the function to run.

    ``fn`` is called with the validated arguments as keyword arguments. Its result becomes the
    tool's text output: a ``str`` as is, ``None`` as ``""``, a mapping, list, tuple, bool, int or
    float as JSON, anything else through ``str()``. ``fn`` may raise a ``ToolError`` subclass
    itself; any other exception becomes ``ToolExecutionError``.

    Raises:
        InvalidToolNameError: the name breaks the providers' rule.
        InvalidToolSchemaError: the schema is not a valid JSON Schema object schema.
    """

    name: str = attrs.field(validator=_check_name)
    description: str
    fn: Callable[..., object]
    input_schema: Mapping[str, object] = attrs.field(converter=_frozen_schema)

    def __attrs_post_init__(self) -> None:
        """Reject an invalid schema, so an invalid Tool cannot exist."""
        _validate_schema(self.name, self.input_schema)

    @property
    def spec(self) -> ToolSpec:
        """What an adapter offers the model: name, description and input schema."""
        return ToolSpec(
            name=self.name,
            description=self.description,
            input_schema=copy.deepcopy(dict(self.input_schema)),
        )


@attrs.frozen
class ToolOutcome:
    """The result of ``ToolRegistry.try_call``: the text for the model and the error, if any.

    Attributes:
        tool_name: The tool that was called.
        output: The tool's output, or the error message when the call failed.
        error: The ``ToolError`` raised, or None on success.
    """

    tool_name: str
    output: str
    error: ToolError | None = None

    @property
    def is_error(self) -> bool:
        """True when the call failed (send ``output`` back to the model as an error result)."""
        return self.error is not None


def _to_text(result: object) -> str:
    if isinstance(result, str):
        return result
    if result is None:
        return ""
    if isinstance(result, (Mapping, list, tuple, bool, int, float)):
        return json.dumps(result, ensure_ascii=False, default=str)
    return str(result)


# --------------------------------------------------------------------------- memory


class ToolMemory:
    """A bounded, thread-safe key-value store of strings shared by the agents of one registry.

    When full, storing a new key evicts the least recently used entry (stored or retrieved).
    A value larger than ``max_value_bytes`` (UTF-8) is refused; nothing is evicted for it.
    """

    __slots__ = ("_entries", "_lock", "max_entries", "max_value_bytes")

    def __init__(self, *, max_entries: int = 1000, max_value_bytes: int = 64_000) -> None:
        """Build an empty memory holding at most *max_entries* values of *max_value_bytes* each.

        Raises:
            ValueError: a limit is not positive.
        """
        if max_entries < 1 or max_value_bytes < 1:
            raise ValueError(
                f"memory limits must be positive, got max_entries={max_entries}, "
                f"max_value_bytes={max_value_bytes}"
            )
        self.max_entries: int = max_entries
        self.max_value_bytes: int = max_value_bytes
        self._entries: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()

    def store(self, key: str, value: str) -> None:
        """Store *value* under *key*, replacing any previous value; may evict the LRU entry.

        Raises:
            ValueError: *value* is larger than ``max_value_bytes`` in UTF-8.
        """
        size = len(value.encode("utf-8"))
        if size > self.max_value_bytes:
            raise ValueError(f"value of {size} bytes exceeds the {self.max_value_bytes}-byte limit")
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                evicted, _ = self._entries.popitem(last=False)
                logger.debug("tool memory full: evicted key %r", evicted)

    def retrieve(self, key: str) -> str:
        """Return the value under *key* and mark it recently used.

        Raises:
            KeyError: nothing is stored under *key*.
        """
        with self._lock:
            value = self._entries[key]
            self._entries.move_to_end(key)
            return value

    def keys(self) -> list[str]:
        """The stored keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        """How many entries are stored."""
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether *key* is stored (does not count as a use)."""
        with self._lock:
            return key in self._entries


# --------------------------------------------------------------------------- registry


@attrs.frozen
class _Entry:
    tool: Tool
    validator: jsonschema.protocols.Validator
    signature: inspect.Signature | None


def _signature(fn: Callable[..., object]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no introspectable signature
        return None


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
        from aegis_gov._builtin_tools import (  # noqa: PLC0415  # it imports this module
            SandboxConfig,
            builtin_tools,
        )

        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
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

    def register(self, tool: Tool) -> Tool:
        """Register an existing *tool* and return it.

        Raises:
            DuplicateToolError: a tool of the same name is already registered.
        """
        entry = _Entry(
            tool=tool,
            validator=jsonschema.Draft202012Validator(tool.input_schema),
            signature=_signature(tool.fn),
        )
        with self._lock:
            if tool.name in self._entries:
                raise DuplicateToolError(
                    "a tool of this name is already registered", tool_name=tool.name
                )
            self._entries[tool.name] = entry
        return tool

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
        except ToolError:
            raise
        except Exception as exc:
            raise ToolExecutionError(
                f"failed with {type(exc).__name__}: {_clip(str(exc))}", tool_name=name
            ) from exc
        return _to_text(result)

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

    def _entry(self, name: str) -> _Entry:
        with self._lock:
            entry = self._entries.get(name)
        if entry is None:
            raise UnknownToolError(
                "no tool of this name is registered", tool_name=_clip(str(name), 64)
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
        error = jsonschema.exceptions.best_match(
            entry.validator.iter_errors(cast("_JsonObject", kwargs))
        )
        if error is not None:
            path = _json_path(error.absolute_path)
            raise InvalidToolArgumentsError(
                f"invalid arguments at {path}: {_clip(error.message)}",
                tool_name=name,
                path=path,
                validator=str(error.validator),
            )
        if entry.signature is not None:
            try:
                entry.signature.bind(**kwargs)
            except TypeError as exc:
                raise InvalidToolArgumentsError(
                    f"arguments do not fit the tool's function: {_clip(str(exc))}",
                    tool_name=name,
                    path="$",
                    validator=None,
                ) from exc
        return kwargs
