# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""``SandboxConfig``: the checked sandbox settings one registry's built-in tools share."""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import attrs

from aegis_gov._checks import check_bool, check_not_text, check_number
from aegis_gov._netguard import IPAddress, Resolver, system_resolver

__all__ = ["SANDBOX_BWRAP", "SANDBOX_NONE_UNSAFE", "SandboxConfig"]

logger = logging.getLogger(__name__)

SANDBOX_BWRAP = "bwrap"
SANDBOX_NONE_UNSAFE = "none-UNSAFE"


@attrs.frozen
class SandboxConfig:
    """The sandbox settings of one registry's built-ins (see ``ToolRegistry``)."""

    root: Path
    shell_allowlist: frozenset[str]
    allow_private_network: bool
    http_timeout_s: float
    shell_timeout_s: float
    shell_sandbox: str
    shell_allow_network: bool
    max_output_bytes: int
    resolver: Resolver
    trusted_addresses: frozenset[IPAddress]

    @classmethod
    def build(
        cls,
        *,
        root: Path,
        shell_allowlist: Iterable[str],
        allow_private_network: bool,
        http_timeout_s: float,
        shell_timeout_s: float,
        max_output_bytes: int,
        resolver: Resolver | None,
        shell_sandbox: str = SANDBOX_BWRAP,
        shell_allow_network: bool = False,
        trusted_addresses: Iterable[str],
    ) -> SandboxConfig:
        """Check and normalise the settings.

        Raises:
            ValueError: a limit is not positive and finite, an allowlist entry is not a bare
                name, the sandbox kind is unknown, or the root is not a directory.
            TypeError: a setting has the wrong type (``"false"`` for a bool, a string for
                the allowlist, ...).
        """
        resolved_root = root.resolve()
        if not resolved_root.is_dir():
            raise ValueError(f"tool root {str(root)!r} is not a directory")
        check_number("http_timeout_s", http_timeout_s)
        check_number("shell_timeout_s", shell_timeout_s)
        check_number("max_output_bytes", max_output_bytes, integer=True)
        check_bool("allow_private_network", allow_private_network)
        check_bool("shell_allow_network", shell_allow_network)
        check_not_text("shell_allowlist", shell_allowlist)
        if shell_sandbox not in {SANDBOX_BWRAP, SANDBOX_NONE_UNSAFE}:
            raise ValueError(
                f"shell_sandbox must be {SANDBOX_BWRAP!r} or {SANDBOX_NONE_UNSAFE!r}, "
                f"got {shell_sandbox!r}"
            )
        allow = frozenset(shell_allowlist)
        for name in allow:
            if not name or os.sep in name or "/" in name or name in {".", ".."}:
                raise ValueError(f"shell_allowlist entry {name!r} must be a bare executable name")
        if allow and shell_sandbox == SANDBOX_NONE_UNSAFE:
            logger.warning(
                "the shell tool runs %s WITHOUT a sandbox (shell_sandbox=%r): a command can read "
                "and write anything this process can",
                ", ".join(sorted(allow)),
                shell_sandbox,
            )
        return cls(
            root=resolved_root,
            shell_allowlist=allow,
            allow_private_network=allow_private_network,
            http_timeout_s=float(http_timeout_s),
            shell_timeout_s=float(shell_timeout_s),
            shell_sandbox=shell_sandbox,
            shell_allow_network=bool(shell_allow_network),
            max_output_bytes=int(max_output_bytes),
            resolver=system_resolver if resolver is None else resolver,
            trusted_addresses=frozenset(ipaddress.ip_address(a) for a in trusted_addresses),
        )
