"""Keep credentials written into URLs out of keys, messages, logs and results."""

from __future__ import annotations

import re
import urllib.parse
from typing import Final

__all__ = ["REDACTED", "redact_text", "redact_url", "without_credentials"]

REDACTED: Final = "***"
"""What a redacted credential is replaced with."""

# Query parameters whose values are credentials (matched anywhere in the name, any case):
# api_key, api-key, key, access_token, sig (Azure SAS), password, ...
_SECRET_PARAM: Final = re.compile(
    r"key|token|secret|passw|pwd|sig|auth|credential|session|code|bearer|private|jwt|cookie",
    re.IGNORECASE,
)
# "scheme://userinfo@" anywhere in a text. A careless password may hold an unencoded '/',
# '?' or '#', so after "user:" everything up to the '@' counts, unless the ':' is a port's
# (digits, then the path); with no such ':', the userinfo ends at the first '/', '?' or '#'.
# So a path holding an '@' ("models/claude-sonnet-4@20250514" on Vertex AI) keeps its host.
# An authority that is already a plain host[:port] (a name in any script, with RFC 3986's
# sub-delims, or a bracketed IPv6 address) followed by '/', '?' or '#' has no userinfo: an
# '@' after it is in the path, query or fragment ("http://[::1]:8080/v1/m@v2",
# "http://host?tag=a:b@x"), not the end of a password.
# Tried only where a run of scheme characters begins (what a scheme could start within it,
# after digits or "+.-", is the lead): tried at every letter, each try read the rest of the
# run, and a 40 KB provider message holding an '@' took 3 s to redact.
_USERINFO: Final = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<lead>[0-9+.-]*)(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)"
    r"(?!(?:\[[0-9A-Za-z:.%_~-]+\]|[^\s@/?#:\[\]'\"\\]*)(?::[0-9]*)?[/?#])"
    r"(?:[^@/\s'\"]*:(?![0-9]*[/?#])[^@\s'\"]*|[^@/\s'\"?#]+)@"
)
# "?name=value", "&name=value" or "#name=value" anywhere in a text, credential-like names.
_QUERY_PARAM: Final = re.compile(r"(?P<lead>[?&;#](?P<name>[^=&;#\s'\"]+)=)(?P<value>[^&;#\s'\"]*)")
# API keys written into a path: "/sk-...", "/sk_live_..." and the like.
# Not a host's first label ("//sk-team1.example.com"): hosts must stay apart.
_PATH_KEY: Final = re.compile(r"(?<=/)(?<!://)(?:sk|rk|pk)[-_][A-Za-z0-9_-]{8,}")
# A redacted URL's userinfo, where a URL's userinfo is: "scheme://***@" at the start.
_LEADING_USERINFO: Final = re.compile(r"^(?P<scheme>(?:[A-Za-z][A-Za-z0-9+.-]*:)?//)\*\*\*@")


def redact_url(url: str) -> str:
    """*url* with its userinfo and credential-like query values replaced by ``***``.

    ``http://user:sk-1@host:8080/v1?api_key=k&api-version=2`` becomes
    ``http://***@host:8080/v1?api_key=***&api-version=2``. Everything else is kept, so the
    result still names the server. Text that is not a URL is returned as
    :func:`redact_text` leaves it.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = _redact_query(parts.query)
    rebuilt = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return redact_text(rebuilt)  # and whatever the structure missed (fragments, paths, ...)


def without_credentials(url: str) -> str:
    """*url* without its userinfo and credential-like query parameters (names included).

    ``http://user:sk-1@host/v1?api_key=k&api-version=2`` becomes
    ``http://host/v1?api-version=2``: what identifies a server, not who calls it. For keys
    (an endpoint's), not for display, where :func:`redact_url`'s ``***`` tells a reader a
    credential was there. Whatever this does not recognise as the URL's own userinfo or
    query is redacted as :func:`redact_url` redacts it.
    """
    redacted = _LEADING_USERINFO.sub(r"\g<scheme>", redact_url(url), count=1)
    head, question, rest = redacted.partition("?")
    if not question:
        return redacted
    query, hash_, fragment = rest.partition("#")
    pieces = re.split(r"([&;])", query)  # parameters, with the separators between them
    kept: list[str] = []
    for index in range(0, len(pieces), 2):
        name, equals, value = pieces[index].partition("=")
        if equals and value == REDACTED and _SECRET_PARAM.search(urllib.parse.unquote(name)):
            continue
        if kept:
            kept.append(pieces[index - 1])
        kept.append(pieces[index])
    query = "".join(kept)
    return f"{head}{'?' if query else ''}{query}{hash_}{fragment}"


def redact_text(text: str) -> str:
    """*text* with the credentials of every URL written in it replaced by ``***``.

    For messages built from a library's exception text, which may quote a URL.
    """
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m['lead']}{m['scheme']}{REDACTED}@", text)
    if "=" in text:
        text = _QUERY_PARAM.sub(_redact_param, text)
    if "k-" in text or "k_" in text:
        text = _PATH_KEY.sub(REDACTED, text)
    return text


def _redact_param(match: re.Match[str]) -> str:
    name = urllib.parse.unquote(match["name"])  # "k%65y" is "key"
    if _SECRET_PARAM.search(name) and match["value"]:
        return f"{match['lead']}{REDACTED}"
    return match[0]


def _redact_query(query: str) -> str:
    if not query:
        return query
    return _QUERY_PARAM.sub(_redact_param, f"?{query}")[1:]
