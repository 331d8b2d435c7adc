# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The five built-in tools, sandboxed: file_read, http_get, shell, memory_store, memory_retrieve.

Known limits, by design of a library that runs in the caller's process:

- ``file_read`` walks the path one component at a time from a descriptor of the root, each
  opened with ``O_NOFOLLOW`` relative to the one before (as Go's ``os.Root`` and Rust's cap-std
  do), so a directory swapped for a symlink mid-walk makes the open fail instead of leading
  outside. ``..`` steps back to the directory the walk came from and never above the root.
  Symlinks are followed only by walking their target the same way: a link that stays inside the
  root works, one that leads outside (or an absolute one outside the root) is refused. FIFOs,
  devices and sockets are refused before they are opened. Hard links cannot be told apart from
  the file they link: a hard link inside the root to a file outside it is that file, and is read
  (the sandboxed ``shell`` cannot create one, since links across mounts fail; anyone who can
  write to the root outside the sandbox can). A directory already open during a walk and moved
  out of the root by someone outside the sandbox is still read from. The root's own path is
  trusted as it was resolved at construction.
- ``http_get`` connects to the address it checked (the URL is rewritten to the address, the
  ``Host`` header and, for https, the TLS server name and certificate check keep the hostname), so
  a DNS answer that changes between check and connect (rebinding) cannot redirect it.
  ``http_timeout_s`` is one deadline for the whole call (resolving, connecting, the TLS
  handshake, headers, body and every redirect): at the deadline every socket of the call is shut
  down, so a server dripping bytes inside each per-read timeout cannot hold it. A resolver still
  running at the deadline is left to finish in a daemon thread (``getaddrinfo`` has no timeout).
- ``shell`` has two layers. The first is the allowlist of program names and the refusal of
  shell syntax; it cannot stop an allowed program from running others (``env``, ``xargs``,
  ``git -c core.fsmonitor=...``, ``find -fprint``), so it is not the boundary. The boundary is a
  bubblewrap sandbox around every command (``bwrap_argv``): new namespaces (no network unless
  ``shell_allow_network``), no capabilities, a fresh ``/proc``, a clean environment (bwrap itself
  is started with it, since its init stays in the sandbox as PID 1), only the system directories
  and a short list of ``/etc`` files visible read-only, a private ``/tmp``, and the root the only
  host directory that can be written. Home directories and every file outside the root are not
  visible at all. Killing bwrap at the timeout ends its PID namespace, so nothing a command
  started outlives it. Where bubblewrap is missing or cannot create namespaces (some containers),
  ``shell`` refuses with ``SandboxUnavailableError``; ``shell_sandbox="none-UNSAFE"`` runs
  commands on the host instead, with the allowlist as the only barrier.
  Not covered: CPU and memory (a command may use all of either until the timeout), the kernel's
  own attack surface (no seccomp filter), and the root itself, which a command can read and
  change whole (keep secrets out of it). Commands run as the calling user without
  capabilities: run agents as an unprivileged user, since a command run by root could leave a
  setuid-root file in the root.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import requests
import requests.adapters
import urllib3.connection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from aegis_gov._netguard import (
    IPAddress,
    Resolver,
    blocked_reason,
    literal_address,
    system_resolver,
)
from aegis_gov._tools import (
    BlockedAddressError,
    CommandFailedError,
    CommandNotAllowedError,
    ForbiddenShellSyntaxError,
    HTTPStatusError,
    MemoryKeyNotFoundError,
    OutputTooLargeError,
    PathOutsideRootError,
    SandboxUnavailableError,
    ShellDisabledError,
    Tool,
    ToolExecutionError,
    ToolMemory,
    ToolTimeoutError,
    URLNotAllowedError,
    ValueTooLargeError,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Characters a shell would interpret. We run without a shell, but refusing them means a command
# never *looks* like it does something it does not, and an allowlisted program that re-invokes a
# shell on its arguments gets nothing to inject.
SHELL_METACHARACTERS = frozenset(";|&$`<>(){}[]*?!~#\\\n\r\x00")
_READ_CHUNK = 16_384
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
            ValueError: a limit is not positive, an allowlist entry is not a bare name, the
                sandbox kind is unknown, or the root is not a directory.
        """
        resolved_root = root.resolve()
        if not resolved_root.is_dir():
            raise ValueError(f"tool root {str(root)!r} is not a directory")
        for label, value in (
            ("http_timeout_s", http_timeout_s),
            ("shell_timeout_s", shell_timeout_s),
            ("max_output_bytes", max_output_bytes),
        ):
            if not value > 0:
                raise ValueError(f"{label} must be positive, got {value!r}")
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


# --------------------------------------------------------------------------- file_read

_MAX_SYMLINKS = 40  # as Linux's path walk: more is a loop
_HAS_OPENAT = os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: a FIFO swapped in after the type check cannot block the open; O_NOCTTY: a terminal
# cannot become ours.
_FILE_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
)


def _lstat_at(name: str, dir_fd: int, path: str) -> os.stat_result:
    tool = "file_read"
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError as exc:
        raise ToolExecutionError(f"no such file: {path!r}", tool_name=tool) from exc
    except OSError as exc:
        raise ToolExecutionError(f"cannot stat {path!r}: {exc.strerror}", tool_name=tool) from exc


def _open_beneath(config: SandboxConfig, path: str) -> tuple[int, os.stat_result]:
    """Open the regular file *path* beneath the root; return the descriptor and its stat.

    See ``_BeneathWalk``.
    """
    tool = "file_read"
    if not _HAS_OPENAT:  # pragma: no cover  # Windows
        raise ToolExecutionError("file_read needs openat (a POSIX system)", tool_name=tool)
    if "\x00" in path:
        raise PathOutsideRootError("path contains a NUL byte", tool_name=tool, path=path)
    try:
        root_fd = os.open(config.root, _DIR_FLAGS)
    except OSError as exc:
        raise ToolExecutionError(
            f"cannot open the root directory: {exc.strerror}", tool_name=tool
        ) from exc
    walk = _BeneathWalk(config, path, root_fd)
    try:
        return walk.run()
    finally:
        walk.close()


class _BeneathWalk:
    """One path walked beneath the root, one component at a time.

    Each component is looked up with ``fstatat`` and opened with ``O_NOFOLLOW`` relative to the
    directory descriptor of the one before, so swapping any directory for a symlink mid-walk
    cannot lead outside (the open fails instead). ``..`` pops back to the parent *we* opened,
    never the file system's, and cannot go above the root. A symlink is followed only by walking
    its target the same way, from the root for an absolute target that lies under the root.
    Special files are refused before they are opened.
    """

    def __init__(self, config: SandboxConfig, path: str, root_fd: int) -> None:
        self.config = config
        self.path = path
        self.dirs = [root_fd]  # the root, then each directory opened below it
        self.links = 0
        self.outside = PathOutsideRootError(
            f"path {path!r} resolves outside the root directory", tool_name="file_read", path=path
        )
        parts = self.below_root(path) if Path(path).is_absolute() else list(Path(path).parts)
        self.pending = parts[::-1]  # a stack: the next component is at the end

    def below_root(self, absolute: str) -> list[str]:
        """The components of *absolute* below the root, or raise ``PathOutsideRootError``."""
        if not Path(absolute).is_relative_to(self.config.root):
            raise self.outside
        return list(Path(absolute).relative_to(self.config.root).parts)

    def run(self) -> tuple[int, os.stat_result]:
        tool = "file_read"
        while self.pending:
            name = self.pending.pop()
            if name == "..":
                if len(self.dirs) == 1:
                    raise self.outside
                os.close(self.dirs.pop())
                continue
            found = _lstat_at(name, self.dirs[-1], self.path)
            if stat.S_ISLNK(found.st_mode):
                self.follow(name)
            elif stat.S_ISDIR(found.st_mode):
                self.dirs.append(_open_checked(name, self.dirs[-1], _DIR_FLAGS, found, self.path))
            elif not stat.S_ISREG(found.st_mode):
                raise ToolExecutionError(f"{self.path!r} is not a regular file", tool_name=tool)
            elif self.pending:
                raise ToolExecutionError(f"{self.path!r}: not a directory", tool_name=tool)
            else:
                return _open_checked(name, self.dirs[-1], _FILE_FLAGS, found, self.path), found
        raise ToolExecutionError(f"{self.path!r} is not a regular file", tool_name=tool)

    def follow(self, name: str) -> None:
        """Queue the target of the symlink *name* to be walked in its place."""
        self.links += 1
        if self.links > _MAX_SYMLINKS:
            raise ToolExecutionError(
                f"too many levels of symbolic links in {self.path!r}", tool_name="file_read"
            )
        try:
            target = os.readlink(name, dir_fd=self.dirs[-1])
        except OSError as exc:  # no longer a link: it changed under us
            raise PathOutsideRootError(
                f"path {self.path!r} changed while being opened",
                tool_name="file_read",
                path=self.path,
            ) from exc
        if Path(target).is_absolute():
            parts = self.below_root(target)
            while len(self.dirs) > 1:
                os.close(self.dirs.pop())
        else:
            parts = list(Path(target).parts)
        self.pending.extend(reversed(parts))

    def close(self) -> None:
        for fd in self.dirs:
            os.close(fd)
        self.dirs.clear()


def _open_checked(name: str, dir_fd: int, flags: int, found: os.stat_result, path: str) -> int:
    """Open *name* in *dir_fd* and check it is still the object ``fstatat`` found."""
    tool = "file_read"
    changed = PathOutsideRootError(
        f"path {path!r} changed while being opened", tool_name=tool, path=path
    )
    try:
        fd = os.open(name, flags | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in {errno.ELOOP, errno.ENOTDIR}:  # swapped for a link or a file
            raise changed from exc
        if exc.errno == errno.ENOENT:
            raise ToolExecutionError(f"no such file: {path!r}", tool_name=tool) from exc
        raise ToolExecutionError(f"cannot open {path!r}: {exc.strerror}", tool_name=tool) from exc
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (found.st_dev, found.st_ino):
        os.close(fd)
        raise changed
    return fd


def file_read(config: SandboxConfig, path: str) -> str:
    """Read the UTF-8 text file *path* (relative to the root), refusing anything outside it."""
    tool = "file_read"
    fd, checked = _open_beneath(config, path)
    with os.fdopen(fd, "rb") as handle:
        if checked.st_size > config.max_output_bytes:
            raise OutputTooLargeError(
                f"file {path!r} is {checked.st_size} bytes, "
                f"over the {config.max_output_bytes}-byte cap",
                tool_name=tool,
                limit_bytes=config.max_output_bytes,
            )
        data = handle.read(config.max_output_bytes + 1)
    if len(data) > config.max_output_bytes:
        raise OutputTooLargeError(
            f"file {path!r} grew over the {config.max_output_bytes}-byte cap",
            tool_name=tool,
            limit_bytes=config.max_output_bytes,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ToolExecutionError(
            f"file {path!r} is not UTF-8 text (invalid byte at offset {exc.start})",
            tool_name=tool,
        ) from exc


# --------------------------------------------------------------------------- http_get


class _Deadline:
    """One deadline for a whole ``http_get`` call: resolving, connecting, headers, body, redirects.

    Per-operation socket timeouts are not a deadline: a server that sends one byte just inside
    each timeout holds a read forever. So each socket the call opens is registered here (as a
    duplicate descriptor this object owns, so closing it can never hit a reused descriptor), and
    when the deadline passes a timer shuts them all down, which wakes any read blocked on them.
    Thread-safe; ``close`` must be called when the call ends.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._at = time.monotonic() + timeout_s
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._closed = False
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True
        self._timer.name = "aegis-http-deadline"
        self._timer.start()

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed (then every registered socket is shut down)."""
        with self._lock:
            return self._expired or time.monotonic() >= self._at

    def remaining_s(self) -> float:
        """Seconds left, never quite zero (a zero socket timeout would mean non-blocking)."""
        return max(self._at - time.monotonic(), 0.001)

    def watch(self, sock: socket.socket) -> None:
        """Shut *sock* down when the deadline passes (at once if it already has)."""
        try:
            duplicate = sock.dup()
        except OSError:  # already closed: nothing left to stop
            return
        with self._lock:
            if self._closed:
                duplicate.close()
                return
            self._sockets.append(duplicate)
            if self._expired:
                _shutdown(duplicate)

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def close(self) -> None:
        """Stop the timer and release the duplicate descriptors."""
        self._timer.cancel()
        with self._lock:
            self._closed = True
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already disconnected
        sock.shutdown(socket.SHUT_RDWR)


def _watched_pools(deadline: _Deadline) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pool classes whose connections register each new socket with *deadline*."""

    class _HTTPConnection(urllib3.connection.HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            deadline.watch(sock)
            return sock

    class _HTTPSConnection(urllib3.connection.HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()  # before TLS: the handshake is covered too
            deadline.watch(sock)
            return sock

    class _HTTPPool(HTTPConnectionPool):
        ConnectionCls = _HTTPConnection

    class _HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = _HTTPSConnection

    return {"http": _HTTPPool, "https": _HTTPSPool}


class _DeadlineAdapter(requests.adapters.HTTPAdapter):
    """An adapter whose sockets obey the call's deadline.

    For https to a pinned address, TLS uses *tls_hostname* for SNI and certificate checks.
    """

    def __init__(self, deadline: _Deadline, tls_hostname: str | None) -> None:
        self._deadline = deadline
        self._tls_hostname = tls_hostname
        super().__init__(max_retries=0)

    def init_poolmanager(
        self,
        connections: int,
        maxsize: int,
        block: bool = False,  # noqa: FBT001, FBT002  # mirrors HTTPAdapter.init_poolmanager
        **pool_kwargs: object,
    ) -> None:
        if self._tls_hostname is not None:
            pool_kwargs["server_hostname"] = self._tls_hostname
            pool_kwargs["assert_hostname"] = self._tls_hostname
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _watched_pools(self._deadline)


@attrs.frozen
class _Target:
    url: str  # the URL as the model (or the redirect) gave it
    pinned_url: str  # the same URL with the host replaced by the checked address
    host_header: str
    hostname: str
    scheme: str


def _parse_address(host: str, text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError as exc:
        raise ToolExecutionError(
            f"resolver returned a non-address for {host!r}", tool_name="http_get"
        ) from exc


def _resolve(config: SandboxConfig, host: str, port: int, deadline: _Deadline) -> Sequence[str]:
    """Run the resolver, but return (with a timeout) when the deadline passes first.

    ``getaddrinfo`` takes no timeout: it runs in a daemon thread, left to finish on its own.
    """
    outcome: list[Sequence[str] | OSError] = []

    def resolve() -> None:
        try:
            outcome.append(config.resolver(host, port))
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=resolve, name="aegis-http-resolve", daemon=True)
    worker.start()
    worker.join(deadline.remaining_s())
    if not outcome:
        raise _timeout(f"resolving {host!r}", deadline)
    result = outcome[0]
    if isinstance(result, OSError):
        raise ToolExecutionError(f"cannot resolve host {host!r}", tool_name="http_get") from result
    return result


def _timeout(what: str, deadline: _Deadline) -> ToolTimeoutError:
    return ToolTimeoutError(
        f"{what} took longer than the {deadline.timeout_s} s deadline "
        "(which covers resolving, connecting, headers and body)",
        tool_name="http_get",
        timeout_s=deadline.timeout_s,
    )


def _addresses(config: SandboxConfig, host: str, port: int, deadline: _Deadline) -> list[IPAddress]:
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    resolved = _resolve(config, host, port, deadline)
    addresses = [_parse_address(host, text) for text in resolved]
    if not addresses:
        raise ToolExecutionError(f"host {host!r} has no address", tool_name="http_get")
    return addresses


def _check_url(config: SandboxConfig, url: str, deadline: _Deadline) -> _Target:
    tool = "http_get"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise URLNotAllowedError(f"malformed URL {url!r}", tool_name=tool) from exc
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise URLNotAllowedError(
            f"URL scheme {scheme!r} is not allowed (only http and https)", tool_name=tool
        )
    if parts.username is not None or parts.password is not None:
        raise URLNotAllowedError("URLs with credentials are not allowed", tool_name=tool)
    host = (parts.hostname or "").rstrip(".")
    if not host or "%" in host:
        raise URLNotAllowedError(f"URL {url!r} has no usable host", tool_name=tool)
    default_port = 443 if scheme == "https" else 80
    port = port or default_port
    addresses = _addresses(config, host, port, deadline)
    verb = "is" if literal_address(host) is not None else "resolves to"
    # Every address must pass: a name that resolves to one public and one private address is
    # refused, since the connection could land on either.
    for address in addresses:
        if address in config.trusted_addresses:
            continue
        reason = blocked_reason(address, allow_private_network=config.allow_private_network)
        if reason is not None:
            raise BlockedAddressError(
                f"host {host!r} {verb} {address}, {reason}; refused",
                tool_name=tool,
                host=host,
                address=str(address),
            )
    pinned = addresses[0]
    pinned_host = f"[{pinned}]" if pinned.version == 6 else str(pinned)  # noqa: PLR2004
    netloc = pinned_host if port == default_port else f"{pinned_host}:{port}"
    host_header = parts.hostname or host
    if ":" in host_header:
        host_header = f"[{host_header}]"
    if port != default_port:
        host_header = f"{host_header}:{port}"
    pinned_url = urllib.parse.urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    return _Target(
        url=url, pinned_url=pinned_url, host_header=host_header, hostname=host, scheme=scheme
    )


def http_get(config: SandboxConfig, url: str) -> str:
    """GET *url* after checking its host (and each redirect's) against the address policy.

    ``config.http_timeout_s`` is one deadline for the whole call, redirects included.
    """
    deadline = _Deadline(config.http_timeout_s)
    try:
        body = _get(config, url, deadline)
    except ToolExecutionError as exc:
        # A socket shut down at the deadline surfaces as a broken connection or a short read.
        if deadline.expired and not isinstance(exc, ToolTimeoutError):
            raise _timeout(f"GET {url!r}", deadline) from exc
        raise
    finally:
        deadline.close()
    if deadline.expired:  # a body cut short by the deadline may look complete
        raise _timeout(f"GET {url!r}", deadline)
    return body


def _get(config: SandboxConfig, url: str, deadline: _Deadline) -> str:
    tool = "http_get"
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        target = _check_url(config, current, deadline)
        pinned_tls = target.scheme == "https" and literal_address(target.hostname) is None
        with requests.Session() as session:
            session.trust_env = False  # no proxies or .netrc from the environment
            session.mount("http://", _DeadlineAdapter(deadline, None))
            session.mount(
                "https://", _DeadlineAdapter(deadline, target.hostname if pinned_tls else None)
            )
            remaining = deadline.remaining_s()
            try:
                response = session.get(
                    target.pinned_url,
                    headers={"Host": target.host_header, "User-Agent": "aegis-gov http_get"},
                    allow_redirects=False,
                    stream=True,
                    timeout=(remaining, remaining),
                )
            except requests.Timeout as exc:
                raise _timeout(f"GET {current!r}", deadline) from exc
            except requests.RequestException as exc:
                raise ToolExecutionError(
                    f"GET {current!r} failed: {type(exc).__name__}", tool_name=tool
                ) from exc
            with response:
                location = response.headers.get("Location")
                if response.status_code in _REDIRECT_STATUSES and location:
                    current = urllib.parse.urljoin(current, location)
                    continue
                if not 200 <= response.status_code < 300:  # noqa: PLR2004
                    raise HTTPStatusError(
                        f"GET {current!r} returned HTTP {response.status_code}",
                        tool_name=tool,
                        status_code=response.status_code,
                    )
                body = _read_capped(config, response, current, deadline)
                return body.decode(response.encoding or "utf-8", errors="replace")
    raise ToolExecutionError(
        f"GET {url!r} was redirected more than {MAX_REDIRECTS} times", tool_name=tool
    )


def _read_capped(
    config: SandboxConfig, response: requests.Response, url: str, deadline: _Deadline
) -> bytes:
    tool = "http_get"
    cap = config.max_output_bytes
    too_large = OutputTooLargeError(
        f"response from {url!r} is over the {cap}-byte cap", tool_name=tool, limit_bytes=cap
    )
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_large
    body = bytearray()
    try:
        for chunk in response.iter_content(_READ_CHUNK):
            body += chunk
            if len(body) > cap:
                raise too_large
            if deadline.expired:
                raise _timeout(f"GET {url!r}", deadline)
    except requests.Timeout as exc:
        raise _timeout(f"GET {url!r}", deadline) from exc
    except requests.RequestException as exc:
        raise ToolExecutionError(
            f"reading {url!r} failed: {type(exc).__name__}", tool_name=tool
        ) from exc
    return bytes(body)


# --------------------------------------------------------------------------- shell

# Directories a sandboxed program sees, read-only: the system's programs and libraries. Home
# directories, /root, /opt, /srv, /var, /run, /mnt and the rest of the host are not there at all,
# so a secret outside the root (a .env, ~/.aws/credentials, an SSH key) cannot even be read.
_SANDBOX_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# From /etc, only the world-readable files programs need to start, find users, time zones,
# certificates and (with network) names. Never shadow, sudoers, ssh keys or system gitconfig.
_SANDBOX_ETC_ENTRIES = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "gai.conf",
    "group",
    "host.conf",
    "hostname",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "magic",
    "mime.types",
    "nsswitch.conf",
    "passwd",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
)
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap; Linux only), or, only if every command the model may choose is harmless on "
    "this machine, build the registry with shell_sandbox='none-UNSAFE'"
)
_probed_ok: set[str] = set()
_probe_lock = threading.Lock()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        if sys.platform != "win32":
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass


def _host_path_search() -> str:
    return os.pathsep.join(
        entry
        for entry in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if Path(entry).is_absolute()
    )


def _resolve_executable(name: str, search: str) -> str | None:
    return shutil.which(name, path=search)


def bwrap_argv(config: SandboxConfig, bwrap: str) -> list[str]:
    """The bubblewrap command line (up to ``--``) that confines one command to *config*'s root.

    New user, PID, IPC, UTS, mount, cgroup and network namespaces (the network only when
    ``shell_allow_network``), no capabilities, its own session (no terminal injection), killed
    with its parent; a fresh ``/proc`` that shows only the sandbox's processes, a minimal
    ``/dev``, a private ``/tmp``; the system directories and a few ``/etc`` files read-only, the
    root read-write at its own path as the working directory, everything else absent; and a
    clean environment.
    """
    root = str(config.root)
    argv = [bwrap, "--unshare-all"]
    if config.shell_allow_network:
        argv.append("--share-net")
    argv += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]
    for name, value in _sandbox_env(config).items():
        argv += ["--setenv", name, value]
    for directory in map(Path, _SANDBOX_SYSTEM_DIRS):
        if directory.is_symlink():  # /bin -> usr/bin on merged-/usr systems
            argv += ["--symlink", str(directory.readlink()), str(directory)]
        elif directory.is_dir():
            argv += ["--ro-bind", str(directory), str(directory)]
    for entry in _SANDBOX_ETC_ENTRIES:
        argv += ["--ro-bind-try", f"/etc/{entry}", f"/etc/{entry}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108  # private
    # After /tmp, so a root below /tmp is bound over the fresh tmpfs; then everything but the
    # root and /tmp is made read-only, the directories bubblewrap created included.
    argv += ["--bind", root, root, "--remount-ro", "/", "--chdir", root]
    return argv


def _sandbox_env(config: SandboxConfig) -> dict[str, str]:
    return {
        "PATH": SANDBOX_PATH,
        "LANG": "C.UTF-8",
        "HOME": str(config.root),
        "TMPDIR": "/tmp",  # noqa: S108  # the sandbox's private tmpfs
    }


def _find_bwrap() -> str:
    """Return a bubblewrap that can create a sandbox here, or raise SandboxUnavailableError."""
    found = shutil.which("bwrap", path=_host_path_search())
    if found is None:
        raise SandboxUnavailableError(
            f"the shell tool runs commands only inside a sandbox, and bubblewrap (bwrap) was "
            f"not found on PATH: {_INSTALL_HINT}",
            tool_name="shell",
        )
    return found


def _probe(config: SandboxConfig, bwrap: str) -> None:
    """Check once per (bwrap, network setting) that the sandbox starts; successes are cached."""
    key = f"{bwrap}\x00{config.shell_allow_network}"
    with _probe_lock:
        if key in _probed_ok:
            return
    true = _resolve_executable("true", SANDBOX_PATH) or "/bin/true"
    try:
        probe = subprocess.run(  # noqa: S603  # fixed argv, no shell
            [*bwrap_argv(config, bwrap), "--", true],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=_sandbox_env(config),
            timeout=max(config.shell_timeout_s, 10.0),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailableError(
            f"bubblewrap at {bwrap!r} could not be started ({exc}): {_INSTALL_HINT}",
            tool_name="shell",
        ) from exc
    if probe.returncode != 0:
        detail = probe.stderr.decode("utf-8", errors="replace").strip()[-300:]
        raise SandboxUnavailableError(
            f"bubblewrap at {bwrap!r} cannot create a sandbox here ({detail or 'no message'}); "
            "it needs unprivileged user namespaces or to run as root (in a container: allow "
            f"namespaces, e.g. a seccomp profile that permits them): {_INSTALL_HINT}",
            tool_name="shell",
        )
    with _probe_lock:
        _probed_ok.add(key)


def shell(config: SandboxConfig, command: str) -> str:
    """Run *command* as an argv (no shell) if its executable is allowlisted; return its output.

    Two layers: the program allowlist, then (unless ``shell_sandbox="none-UNSAFE"``) a
    bubblewrap sandbox around the process and everything it starts (see ``bwrap_argv``).
    """
    tool = "shell"
    if not config.shell_allowlist:
        raise ShellDisabledError(
            "the shell tool is disabled (no shell_allowlist was given)", tool_name=tool
        )
    found = sorted(set(command) & SHELL_METACHARACTERS)
    if found:
        shown = " ".join(repr(c) for c in found)
        raise ForbiddenShellSyntaxError(
            f"command contains shell metacharacters ({shown}); commands run without a shell",
            tool_name=tool,
            characters="".join(found),
        )
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ForbiddenShellSyntaxError(
            f"command does not parse: {exc}", tool_name=tool, characters=""
        ) from exc
    if not argv:
        raise ForbiddenShellSyntaxError("command is empty", tool_name=tool, characters="")
    executable = argv[0]
    if executable not in config.shell_allowlist:
        raise CommandNotAllowedError(
            f"executable {executable!r} is not in the allowlist "
            f"({', '.join(sorted(config.shell_allowlist))})",
            tool_name=tool,
            executable=executable,
        )
    if config.shell_sandbox == SANDBOX_NONE_UNSAFE:
        path = _resolve_executable(executable, _host_path_search())
        if path is None:
            raise ToolExecutionError(
                f"executable {executable!r} was not found on PATH", tool_name=tool
            )
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"}
        env["HOME"] = str(config.root)
        return _run(config, [path, *argv[1:]], executable, env)
    bwrap = _find_bwrap()
    _probe(config, bwrap)
    # Only the system directories exist in the sandbox: look the program up there.
    path = _resolve_executable(executable, SANDBOX_PATH)
    if path is None:
        raise ToolExecutionError(
            f"executable {executable!r} was not found in the sandbox's PATH ({SANDBOX_PATH})",
            tool_name=tool,
        )
    # bwrap itself gets the clean environment too: its first process stays in the sandbox as
    # PID 1, and anything there can read /proc/1/environ.
    sandboxed = [*bwrap_argv(config, bwrap), "--", path, *argv[1:]]
    return _run(config, sandboxed, executable, _sandbox_env(config))


def _run(config: SandboxConfig, argv: list[str], executable: str, env: dict[str, str]) -> str:
    tool = "shell"
    cap = config.max_output_bytes
    try:
        process = subprocess.Popen(  # noqa: S603  # argv, no shell, allowlisted executable
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=config.root,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise ToolExecutionError(
            f"cannot start {executable!r}: {exc.strerror}", tool_name=tool
        ) from exc
    output = bytearray()
    overflow = threading.Event()

    stdout = process.stdout
    assert stdout is not None  # noqa: S101  # stdout=PIPE above

    def pump() -> None:
        while chunk := os.read(stdout.fileno(), _READ_CHUNK):
            if len(output) + len(chunk) > cap:
                overflow.set()
                _kill_group(process)
                return
            output.extend(chunk)

    # Killing the process group reaches bwrap, whose sandbox init dies with it
    # (--die-with-parent); the kernel then kills every process left in the PID namespace,
    # including those that called setsid. Unsandboxed, a process that left the group survives.
    reader = threading.Thread(target=pump, name="aegis-shell-output", daemon=True)
    reader.start()
    try:
        try:
            returncode = process.wait(timeout=config.shell_timeout_s)
        except subprocess.TimeoutExpired as exc:
            _kill_group(process)
            process.wait()
            reader.join()
            raise ToolTimeoutError(
                f"{executable!r} ran longer than {config.shell_timeout_s} s and was killed",
                tool_name=tool,
                timeout_s=config.shell_timeout_s,
            ) from exc
        # A grandchild may still hold the pipe open after the child exited: kill the group.
        reader.join(timeout=config.shell_timeout_s)
        if reader.is_alive():
            _kill_group(process)
            reader.join()
    finally:
        stdout.close()
    if overflow.is_set():
        raise OutputTooLargeError(
            f"output of {executable!r} passed the {cap}-byte cap; the command was killed",
            tool_name=tool,
            limit_bytes=cap,
        )
    text = output.decode("utf-8", errors="replace")
    if returncode != 0:
        raise CommandFailedError(
            f"{executable!r} exited with status {returncode}: {text[-1000:]}",
            tool_name=tool,
            returncode=returncode,
            output=text,
        )
    return text


# --------------------------------------------------------------------------- memory


def memory_store(memory: ToolMemory, key: str, value: str) -> str:
    """Store *value* under *key* in the shared memory."""
    try:
        memory.store(key, value)
    except ValueError as exc:
        raise ValueTooLargeError(
            f"value for key {key!r} is over the {memory.max_value_bytes}-byte limit",
            tool_name="memory_store",
            limit_bytes=memory.max_value_bytes,
        ) from exc
    return f"stored key {key!r}"


def memory_retrieve(memory: ToolMemory, key: str) -> str:
    """Return the value stored under *key* in the shared memory."""
    try:
        return memory.retrieve(key)
    except KeyError as exc:
        raise MemoryKeyNotFoundError(
            f"nothing is stored under key {key!r}", tool_name="memory_retrieve", key=key
        ) from exc
