"""Keep credentials written into URLs out of keys, messages, logs and results."""

from __future__ import annotations

import re
import urllib.parse
from typing import Final

__all__ = ["REDACTED", "checked_base_url", "redact_text", "redact_url", "without_credentials"]

REDACTED: Final = "***"
"""What a redacted credential is replaced with."""

# Query parameter names that are credentials, compared by words ("apiKey", "X-Api-Key" and
# "api_key" are the words api, key): a name holding one of _SECRET_WORDS, or spelled
# without separators as one of _SECRET_NAMES or ending in one of _SECRET_ENDINGS. Words,
# not substrings: "encode", "sessionless", "keyword" and "api-version" say which server or
# version is meant, and dropping them merged different endpoints into one.
_SECRET_WORDS: Final = frozenset(
    {
        "apikey", "auth", "authorization", "bearer", "cookie", "credential", "credentials",
        "jwt", "key", "pass", "passphrase", "passwd", "password", "private", "pw", "pwd",
        "secret", "sig", "signature", "token",
    }
)  # fmt: skip
_SECRET_NAMES: Final = frozenset({"code", "authcode", "session", "sessionid", "sid"})
_SECRET_ENDINGS: Final = (
    "apikey", "accesskey", "privatekey", "secretkey", "token", "secret", "password",
    "passwd", "signature", "credential", "credentials",
)  # fmt: skip
_WORD: Final = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# Provider API keys: OpenAI's and Anthropic's "sk-..." ("sk-ant-..."), "rk_"/"pk_" (Stripe
# style), Groq's "gsk_", xAI's "xai-", Perplexity's "pplx-", NVIDIA's "nvapi-", Cerebras'
# "csk-", Google's "AIza...". Found after a URL delimiter: as a path segment, a query
# parameter's name ("?sk-...=1", "?gsk_...") or value. Not as a host's first label
# ("//sk-team1.example.com"): hosts must stay apart.
_PATH_KEY: Final = re.compile(
    r"(?<=[/?&;=#])(?<!://)"
    r"(?:(?:sk|rk|pk)[-_][A-Za-z0-9_-]{8,}"
    r"|(?:gsk|xai|pplx|nvapi|csk)[-_][A-Za-z0-9_-]{12,}|AIza[0-9A-Za-z_-]{30,})"
)
# Where an authority may begin in a text: after "scheme://" (tried only where a run of
# scheme characters begins: what a scheme could start within it, after digits or "+.-",
# is the lead; tried at every letter, each try read the rest of the run, and a 40 KB
# message took 3 s), or a scheme-relative "//" at the start or after a space, quote,
# bracket, '=' or ','.
_AUTHORITY_START: Final = re.compile(
    r"(?<![A-Za-z0-9+.-])[0-9+.-]*[A-Za-z][A-Za-z0-9+.-]*://|(?<![^\s'\"(<\[{=,])//"
)
# A plain "host[:port]" at an authority's start: a name in any script with RFC 3986's
# sub-delims, or a bracketed IPv6 (or future) address.
_PLAIN_HOST: Final = re.compile(
    r"(?P<host>\[[0-9A-Za-z:.%_~-]+\]|[^\s@/?#:\[\]'\"\\]*)(?P<port>:[0-9]*)?"
)
_QUOTE: Final = re.compile(r"['\"]")
_USER_END: Final = re.compile(r"[/\s'\"]")  # what a user name (before the ':') cannot hold
_NAME_END: Final = re.compile(r"[/?#\s'\"]")  # what userinfo without a ':' cannot hold
_PATH_END: Final = re.compile(r"[?#\s'\"]")
_AUTHORITY_END: Final = re.compile(r"[/?#]")  # as HTTP clients read it
# "?name=value", "&name=value" or "#name=value" anywhere in a text, credential-like names.
_QUERY_PARAM: Final = re.compile(r"(?P<lead>[?&;#](?P<name>[^=&;#\s'\"]+)=)(?P<value>[^&;#\s'\"]*)")
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
        if REDACTED in name or (equals and value == REDACTED and _is_secret_name(name)):
            continue  # a key as the name ("?sk-...=1"), or a credential's value
        if kept:
            kept.append(pieces[index - 1])
        kept.append(pieces[index])
    query = "".join(kept)
    return f"{head}{'?' if query else ''}{query}{hash_}{fragment}"


def checked_base_url(url: str) -> str:
    r"""*url* if HTTP clients and this module read its host and userinfo alike; else ValueError.

    requests reads ``http://good.example\@evil.example`` as the host ``good.example`` and
    httpx (the OpenAI and Anthropic SDKs') as ``evil.example``; both read
    ``http://user:123/abc@host`` as the host ``user``, port 123, where a password
    ``123/abc`` was meant. A URL read two ways is refused, its credentials not quoted.
    """
    scheme_end = url.find("://")
    if scheme_end < 0:
        return url
    start = scheme_end + 3
    found = _AUTHORITY_END.search(url, start)
    authority_end = len(url) if found is None else found.start()
    problem = ""
    if "\\" in url[start:authority_end]:
        problem = (
            "a backslash in its host or userinfo, which requests reads as the end of the "
            "host and httpx does not: percent-encode it as %5C"
        )
    else:
        at = url.find("@", start)
        if at >= 0 and _userinfo_end(url, start, at, len(url)) > authority_end:
            problem = (
                "its userinfo holds a '/', '?' or '#', or its path an '@' after a port, so "
                "HTTP clients end the host where a password may go on: percent-encode them "
                "(%2F, %3F, %23, %40)"
            )
    if problem:
        raise ValueError(f"base_url {redact_text(url)!r} is ambiguous: {problem}")
    return url


def redact_text(text: str) -> str:
    """*text* with the credentials of every URL written in it replaced by ``***``.

    For messages built from a library's exception text, which may quote a URL. Conservative
    where a URL can be read two ways: ``http://user:123/abc@host`` loses ``user:123/abc``.
    """
    if "@" in text:
        text = _redact_userinfo(text)
    if "=" in text:
        text = _QUERY_PARAM.sub(_redact_param, text)
    return _PATH_KEY.sub(REDACTED, text)


def _redact_userinfo(text: str) -> str:
    """*text* with the userinfo of every URL (``scheme://...@``, ``//...@``) as ``***``.

    Linear in ``len(text)``, whatever its '@', ':' and '/': the authority starts are found in
    one pass of a regex that tries each run of scheme characters once, and each start's
    userinfo is looked for only up to the next start, so every character is read for one
    start at most (a constant number of times). A regex reading "up to the '@'" from every
    start (a password may hold spaces) read the text once per start instead.
    """
    bounds = [(m.start(), m.end()) for m in _AUTHORITY_START.finditer(text)]
    pieces: list[str] = []
    done = 0
    for index, (_begin, start) in enumerate(bounds):
        if start < done:  # inside a userinfo already redacted
            continue
        limit = bounds[index + 1][0] if index + 1 < len(bounds) else len(text)
        at = text.find("@", start, limit)
        end = -1 if at < 0 else _userinfo_end(text, start, at, limit)
        if end >= 0:
            pieces += (text[done:start], REDACTED)
            done = end
    pieces.append(text[done:])
    return "".join(pieces)


def _userinfo_end(text: str, start: int, at: int, limit: int) -> int:
    """Where the userinfo of the authority at *start* ends (its '@'), or -1 if none.

    *at* is the first '@' after *start*. A careless password may hold an unencoded '/',
    '?', '#' or spaces, so after "user:" everything up to the '@' counts; with no ':', the
    userinfo ends at the first '/', '?', '#' or space. A plain ``host[:port]`` followed by
    '/', '?' or '#' has no userinfo: an '@' after it is in the path, query or fragment
    (``http://[::1]:8080/v1/models/claude@20250514``, ``http://host?tag=a:b@x``). Except
    ``name:digits/...@`` with no query between: a password ``digits/...`` reads so too,
    and redacting a path is safer than showing a password.
    """
    host = _PLAIN_HOST.match(text, start, at)
    after, port = (at, None) if host is None else (host.end(), host["port"])
    char = text[after] if after < at else "@"
    if char in "/?#":
        bracketed = host is not None and host["host"].startswith("[")
        if char != "/" or not port or bracketed or _PATH_END.search(text, after, at):
            return -1
    elif char.isspace() and port != ":":
        return -1  # "http://host:8080 is down, write to ops@..."
    else:
        colon = text.find(":", start, at)
        if colon >= 0 and not _USER_END.search(text, start, colon):
            if _QUOTE.search(text, colon, at):
                return -1
        elif _NAME_END.search(text, start, at):
            return -1
    # "user:p@ss@host": the userinfo ends at the last '@' before the host.
    while True:
        following = text.find("@", at + 1, limit)
        if following < 0 or _NAME_END.search(text, at + 1, following):
            return at
        at = following


def _is_secret_name(name: str) -> bool:
    """Whether a query parameter's *name* says its value is a credential (see _SECRET_WORDS)."""
    words = [word.lower() for word in _WORD.findall(urllib.parse.unquote(name))]  # "k%65y"
    joined = "".join(words)
    return (
        not _SECRET_WORDS.isdisjoint(words)
        or joined in _SECRET_NAMES
        or joined.endswith(_SECRET_ENDINGS)
    )


def _redact_param(match: re.Match[str]) -> str:
    if match["value"] and _is_secret_name(match["name"]):
        return f"{match['lead']}{REDACTED}"
    return match[0]


def _redact_query(query: str) -> str:
    if not query:
        return query
    return _QUERY_PARAM.sub(_redact_param, f"?{query}")[1:]
