"""Text for people: short endpoint names and terminal-safe model text, for the live table.

An endpoint key is ``"provider|base_url|model"`` (credentials already redacted), e.g.
``openai|http://localhost:1234/v1|gpt-4o-mini``; people read it better as
``openai:gpt-4o-mini @ localhost:1234``. Offline endpoints (``scripted://...``, ``echo``, a
base URL that is not http or https) drop the host: ``scripted:researcher``. A custom
adapter's key ``custom:Name@1f2e`` becomes ``custom:Name``. Names that would come out the
same are told apart by their base URL's path, then by a number (``#2``) in key order. The
full key stays in the plain log lines (and ``--verbose``), where it is greppable.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable

from aegis_adapters import Endpoint, redact_url

__all__ = [
    "endpoint_display_name",
    "endpoint_display_names",
    "endpoint_from_key",
    "endpoint_key_parts",
    "printable",
]

_Rename = Callable[[str, str, int], str]

_WEB_SCHEMES = frozenset({"http", "https"})


def endpoint_key_parts(key: str) -> tuple[str, str, str] | None:
    """``(provider, base_url, model)`` of an adapter endpoint key, None for any other key."""
    provider, sep, rest = key.partition("|")
    base_url, sep2, model = rest.rpartition("|")
    if not (sep and sep2):
        return None
    return provider, base_url, model


def endpoint_from_key(key: str) -> Endpoint:
    """The :class:`~aegis_adapters.Endpoint` a key names, to look up its price or limits.

    A key that is not ``provider|base_url|model`` (a custom adapter's) gives an endpoint
    whose provider and model are the whole key, so only the key itself can match.
    """
    parts = endpoint_key_parts(key)
    return Endpoint(key, "", key) if parts is None else Endpoint(*parts)


def _host(base_url: str) -> tuple[str, str]:
    """``(host[:port], path)`` of a web base URL, ``("", "")`` otherwise; never credentials."""
    try:
        parts = urllib.parse.urlsplit(redact_url(base_url))
        host, port = parts.hostname, parts.port
    except ValueError:
        return "", ""
    if parts.scheme not in _WEB_SCHEMES or not host:
        return "", ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 address keeps its brackets
    return (f"{host}:{port}" if port is not None else host), parts.path.rstrip("/")


def endpoint_display_name(key: str) -> str:
    """*key* as a person reads it: ``provider:model @ host[:port]`` (see the module doc)."""
    parts = endpoint_key_parts(key)
    if parts is None:
        name, _at, _identity = key.partition("@")  # custom:Type@id -> custom:Type
        return name if key.startswith("custom:") else redact_url(key)
    provider, base_url, model = parts
    host, _path = _host(base_url)
    return f"{provider}:{model} @ {host}" if host else f"{provider}:{model}"


def endpoint_display_names(keys: Iterable[str]) -> dict[str, str]:
    """A short name for each key, different keys always getting different names."""
    ordered = sorted(set(keys))
    names = {key: endpoint_display_name(key) for key in ordered}
    names = _split_clashes(names, _with_path)
    names = _split_clashes(names, _numbered)
    if len(set(names.values())) < len(names):  # a model literally named "x #2": be exact
        names = {key: redact_url(key) for key in ordered}
    return names


def _with_path(key: str, name: str, _index: int) -> str:
    parts = endpoint_key_parts(key)
    if parts is None:
        return name
    _host_port, path = _host(parts[1])
    return f"{name}{path}" if path else name


def _numbered(_key: str, name: str, index: int) -> str:
    return name if index == 0 else f"{name} #{index + 1}"


def _split_clashes(names: dict[str, str], rename: _Rename) -> dict[str, str]:
    by_name: dict[str, list[str]] = {}
    for key, name in names.items():
        by_name.setdefault(name, []).append(key)
    renamed = dict(names)
    for name, keys in by_name.items():
        if len(keys) > 1:
            for index, key in enumerate(keys):
                renamed[key] = rename(key, name, index)
    return renamed


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, *, one_line: bool = False) -> str:
    """*text* safe to show on a terminal: control characters (ESC, BEL, ...) as escapes.

    Model and tool text is shown as it is, never as markup or terminal commands; with
    *one_line*, newlines are escaped too, so a model cannot forge log lines.
    """
    pattern = _CONTROL_OR_NEWLINE if one_line else _CONTROL
    if not pattern.search(text):
        return text
    return pattern.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)
