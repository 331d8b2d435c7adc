# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The ``ToolError`` hierarchy: every error a tool definition, a tool call or a sandbox raises.

``ToolRefusedError`` and its subclasses mean a rule refused the call before anything ran;
``ToolExecutionError`` and its subclasses mean the tool ran and failed.
"""

from __future__ import annotations

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
    "ToolCallLimitError",
    "ToolError",
    "ToolExecutionError",
    "ToolNotOfferedError",
    "ToolRefusedError",
    "ToolTimeoutError",
    "URLNotAllowedError",
    "UnknownToolError",
    "ValueTooLargeError",
]


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
