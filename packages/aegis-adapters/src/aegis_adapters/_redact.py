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
        "apikey", "assertion", "auth", "authorization", "bearer", "cookie", "cred", "creds",
        "credential", "credentials", "hmac", "jwt", "key", "otp", "pass", "passcode",
        "passphrase", "passwd", "password", "passwords", "private", "pw", "pwd", "secret",
        "secrets", "sig", "signature", "token",
    }
)  # fmt: skip
_SECRET_NAMES: Final = frozenset(
    {"code", "authcode", "keys", "pin", "session", "sessionid", "sid", "tokens"}
)  # fmt: skip
_SECRET_ENDINGS: Final = (
    "apikey", "apikeys", "accesscode", "accesskey", "accesstokens", "apitokens", "authtokens",
    "privatekey", "secretkey", "token", "secret", "password", "passwd", "signature",
    "credential", "credentials",
)  # fmt: skip
# Names holding a credential word that name something public, compared spelled without
# separators: an id of a key or token, a model's name, a pass-through switch.
_PUBLIC_NAMES: Final = frozenset(
    {"keyid", "keyname", "modelkey", "passthrough", "tokenid", "tokentype"}
)  # fmt: skip
_WORD: Final = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# Provider API keys: OpenAI's and Anthropic's "sk-..." ("sk-proj-...", "sk-ant-..."),
# "rk_"/"pk_" (Stripe style), Groq's "gsk_", xAI's "xai-", Perplexity's "pplx-", NVIDIA's
# "nvapi-", Cerebras' "csk-", Google's "AIza...", Hugging Face's "hf_", Replicate's "r8_",
# Fireworks' "fw_", GitHub's "ghp_" ("gho_", ..., "github_pat_"). Found where a word starts
# (in running text: "Incorrect API key provided: sk-proj-..."), or after a percent-escape
# ("Bearer%20sk-..."), but not as a host's first label ("//sk-team1.example.com": hosts
# must stay apart). The regex takes the whole run of key characters, once; _redact_key
# then tells a key from a word (see there): a lookahead for that would read the rest of
# the run again at every "sk-" of "sk-sk-sk-...".
_PROVIDER_KEY: Final = re.compile(
    r"(?:(?<![A-Za-z0-9_-])|(?<=%[0-9A-Fa-f]{2}))(?<!://)"
    r"(?P<prefix>(?:sk|rk|pk|gsk|xai|pplx|nvapi|csk)[-_]|hf_|r8_|fw_|gh[oprsu]_|github_pat_|AIza)"
    r"(?P<body>[A-Za-z0-9_-]*)"
)
# The credential after an HTTP authorization scheme: "Bearer sk-...", "Basic dXNlcjo...".
_AUTH_SCHEME: Final = re.compile(
    r"(?<![A-Za-z0-9_-])(?P<scheme>(?i:bearer|basic)(?:[ \t]|%20|\+)+)"
    r"(?P<credential>[A-Za-z0-9._~+/=-]+)"
)
# Key characters after the prefix: in running text (at the start, after a space, quote or
# bracket), where words like "sk-learn-2" are likelier; or inside a URL or other token.
_TEXT_DELIMITERS: Final = frozenset(" \t\r\n'\"([{<")
_KEY_BODY_IN_TEXT: Final = 16
_KEY_BODY_IN_URL: Final = 8
_CREDENTIAL_LENGTH: Final = 8
_RANDOM_MARK: Final = re.compile(r"[A-Z0-9]")
# An HTTP scheme without its "//", which URL parsers read as a path.
_SCHEME_TYPO: Final = re.compile(r"(?i:https?|wss?):(?!//)")
# Where an authority may begin in a text: after "scheme://" (tried only where a run of
# scheme characters begins: what a scheme could start within it, after digits or "+.-",
# is the lead; tried at every letter, each try read the rest of the run, and a 40 KB
# message took 3 s), or a scheme-relative "//" at the start or after a space, quote,
# bracket, '=' or ','. Or an HTTP or WebSocket scheme with one slash or none, a typo
# ("http:/user:pw@host", "http:user:pw@host") that urlsplit reads as a path.
_AUTHORITY_START: Final = re.compile(
    r"(?<![A-Za-z0-9+.-])[0-9+.-]*[A-Za-z][A-Za-z0-9+.-]*://|(?<![^\s'\"(<\[{=,])//"
    r"|(?<![A-Za-z0-9+.-])(?i:https?|wss?):/?(?!/)"
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
# The name holds no '?': with it, every '?' of "=???..." began a name read to the end of
# the text, and 40 KB took 8 s.
_QUERY_PARAM: Final = re.compile(
    r"(?P<lead>[?&;#](?P<name>[^=?&;#\s'\"]+)=)(?P<value>[^&;#\s'\"]*)"
)
# A redacted URL's userinfo, where a URL's userinfo is: "scheme://***@" at the start.
_LEADING_USERINFO: Final = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:/{0,3}|//)\*\*\*@")


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
    if _SCHEME_TYPO.match(url):
        raise ValueError(
            f"base_url {redact_text(url)!r} is ambiguous: its scheme is not followed by '//', "
            "so HTTP clients read no host, or a user name as one: write 'http://...'"
        )
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
        found_userinfo = None if at < 0 else _userinfo(url, start, at, len(url))
        if found_userinfo is not None and found_userinfo[1] > authority_end:
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
    text = _AUTH_SCHEME.sub(_redact_credential, text)
    return _PROVIDER_KEY.sub(_redact_key, text)


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
        userinfo = None if at < 0 else _userinfo(text, start, at, limit)
        if userinfo is not None:
            pieces += (text[done : userinfo[0]], REDACTED)
            done = userinfo[1]
    pieces.append(text[done:])
    return "".join(pieces)


def _userinfo(text: str, start: int, at: int, limit: int) -> tuple[int, int] | None:
    """Where the userinfo of the authority at *start* begins and ends (its '@'), if any.

    *at* is the first '@' after *start*. A careless password may hold an unencoded '/',
    '?', '#' or spaces, so after "user:" everything up to the '@' counts; with no ':', the
    userinfo ends at the first '/', '?', '#' or space. A plain ``host[:port]`` followed by
    '/', '?' or '#' has no userinfo: an '@' after it is in the path, query or fragment
    (``http://[::1]:8080/v1/models/claude@20250514``, ``http://host?tag=a:b@x``). Except
    ``name:digits/...@`` with no query between: a password ``digits/...`` reads so too,
    and redacting a path is safer than showing a password. And ``host/name:...@`` (see
    :func:`_slashed_user`), where only what follows the '/' is taken for userinfo.
    """
    host = _PLAIN_HOST.match(text, start, at)
    after, port = (at, None) if host is None else (host.end(), host["port"])
    char = text[after] if after < at else "@"
    if char in "/?#":
        bracketed = host is not None and host["host"].startswith("[")
        found = None if bracketed else _userinfo_after_path(text, start, after, at, port)
        if found is None:
            return None
        start = found
    elif char.isspace() and port != ":":
        return None  # "http://host:8080 is down, write to ops@..."
    else:
        colon = text.find(":", start, at)
        if colon >= 0 and not _USER_END.search(text, start, colon):
            if _QUOTE.search(text, colon, at):
                return None
        elif _NAME_END.search(text, start, at):
            return None
    # "user:p@ss@host": the userinfo ends at the last '@' before the host.
    while True:
        following = text.find("@", at + 1, limit)
        if following < 0 or _NAME_END.search(text, at + 1, following):
            return start, at
        at = following


def _is_secret_name(name: str) -> bool:
    """Whether a query parameter's *name* says its value is a credential (see _SECRET_WORDS)."""
    words = [word.lower() for word in _WORD.findall(urllib.parse.unquote(name))]  # "k%65y"
    joined = "".join(words)
    return joined not in _PUBLIC_NAMES and (
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


def _userinfo_after_path(
    text: str, start: int, slash: int, at: int, port: str | None
) -> int | None:
    """Where a userinfo begins when ``name[:port]`` at *start* is followed by a '/', if any.

    ``name:digits/...@`` (a password of digits then '/') or ``name/user:...@`` (a user name
    holding a '/', see :func:`_slashed_user`), with no query or space between.
    """
    if text[slash] != "/" or _PATH_END.search(text, slash, at):
        return None
    if port:
        return start
    return slash + 1 if _slashed_user(text, slash, at) else None


def _slashed_user(text: str, slash: int, at: int) -> bool:
    """Whether ``host/name:...@`` (*slash* at the '/', *at* the '@') is a user name with a '/'.

    ``http://us/er:pw@host`` is read by URL parsers as the host ``us`` and a path; a
    password after a one-segment "path" holding a ':' is likelier than such a path, so
    ``er:pw`` is redacted, the host kept (``http://us/***@host``: other hosts, other
    endpoints), and :func:`checked_base_url` refuses it. ``host/a//b:c@d`` is a path.
    """
    colon = text.find(":", slash, at)
    return colon >= 0 and text.find("/", slash + 1, colon) < 0


def _looks_random(chars: str, start: int = 0) -> bool:
    """Whether *chars* (from *start*) hold a digit or a capital, as generated keys do."""
    return _RANDOM_MARK.search(chars, start) is not None


def _redact_key(match: re.Match[str]) -> str:
    """A provider key as ``***``; a word with a key's prefix ("sk-learn-models") as it is.

    A key's body is random: it holds a digit or a capital letter, and at least
    _KEY_BODY_IN_TEXT characters in running text or _KEY_BODY_IN_URL inside a token.
    """
    start = match.start()
    in_url = start > 0 and match.string[start - 1] not in _TEXT_DELIMITERS
    least = _KEY_BODY_IN_URL if in_url else _KEY_BODY_IN_TEXT
    body = match["body"]
    return REDACTED if len(body) >= least and _looks_random(body) else match[0]


def _redact_credential(match: re.Match[str]) -> str:
    """``Bearer ***`` for ``Bearer <token>``; ``basic usage`` (a word, not random) as it is."""
    credential = match["credential"]
    if len(credential) >= _CREDENTIAL_LENGTH and _looks_random(credential, 1):
        return f"{match['scheme']}{REDACTED}"
    return match[0]
