# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The five built-in tools assembled: file_read, http_get, shell, memory_store, memory_retrieve.

Only names, descriptions and schemas live here; each tool and its sandbox lives in its own
module (``_file_read``, ``_http_get``, ``_shell``, ``_memory``).
"""

from __future__ import annotations

from aegis_gov._file_read import file_read
from aegis_gov._http_get import http_get
from aegis_gov._memory import ToolMemory, memory_retrieve, memory_store
from aegis_gov._sandbox import SANDBOX_NONE_UNSAFE, SandboxConfig
from aegis_gov._shell import shell
from aegis_gov._tool import Tool

__all__ = ["builtin_tools"]


def _sandbox_description(config: SandboxConfig) -> str:
    if config.shell_sandbox == SANDBOX_NONE_UNSAFE:
        return ""
    network = "the network is reachable" if config.shell_allow_network else "there is no network"
    return (
        " It runs in a sandbox: only the working directory is writable, /tmp is private and "
        f"empty, files outside the working directory are not visible, and {network}."
    )


def _string_schema(description: str, *, max_length: int | None = None) -> dict[str, object]:
    schema: dict[str, object] = {"type": "string", "minLength": 1, "description": description}
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


def _object_schema(**properties: dict[str, object]) -> dict[str, object]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def builtin_tools(config: SandboxConfig, memory: ToolMemory) -> list[Tool]:
    """Build the five built-in tools over *config* and *memory*."""
    cap = config.max_output_bytes
    return [
        Tool(
            name="file_read",
            description=(
                f"Read a UTF-8 text file under the working directory (at most {cap} bytes). "
                "Paths are relative to that directory."
            ),
            fn=lambda path: file_read(config, path),
            input_schema=_object_schema(path=_string_schema("Path of the file to read.")),
        ),
        Tool(
            name="http_get",
            description=(
                f"Fetch an http(s) URL on the public internet and return the body as text "
                f"(at most {cap} bytes)."
            ),
            fn=lambda url: http_get(config, url),
            input_schema=_object_schema(
                url=_string_schema("The http:// or https:// URL.", max_length=2048)
            ),
        ),
        Tool(
            name="shell",
            description=(
                "Run one command (no shell: no pipes, redirections or variables) from an "
                "allowlist of programs"
                + (
                    f" ({', '.join(sorted(config.shell_allowlist))})"
                    if config.shell_allowlist
                    else ""
                )
                + "; returns its output."
                + _sandbox_description(config)
            ),
            fn=lambda command: shell(config, command),
            input_schema=_object_schema(
                command=_string_schema("The command line, e.g. 'ls -l'.", max_length=4096)
            ),
        ),
        Tool(
            name="memory_store",
            description="Remember a text value under a key, shared with the other agents.",
            fn=lambda key, value: memory_store(memory, key, value),
            input_schema=_object_schema(
                key=_string_schema("The key.", max_length=256),
                value={"type": "string", "description": "The value to remember."},
            ),
        ),
        Tool(
            name="memory_retrieve",
            description="Recall the text value stored under a key.",
            fn=lambda key: memory_retrieve(memory, key),
            input_schema=_object_schema(key=_string_schema("The key.", max_length=256)),
        ),
    ]
