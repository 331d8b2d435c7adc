# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""Helpers to read untyped JSON from providers safely, and to describe failures."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aegis_adapters._errors import InvalidRequestError

__all__ = ["MAX_COUNT", "as_int", "as_list", "as_map", "as_str", "error_details", "load_arguments"]


def as_map(value: object) -> Mapping[str, object]:
    """*value* if it is a JSON object, else an empty mapping."""
    if isinstance(value, Mapping):
        return {str(key): item for key, item in value.items()}
    return {}


def as_list(value: object) -> list[object]:
    """*value* if it is a JSON array, else an empty list."""
    return list(value) if isinstance(value, list | tuple) else []


def as_str(value: object, default: str = "") -> str:
    """*value* if it is a string, else *default*."""
    return value if isinstance(value, str) else default


MAX_COUNT = 2**40
"""The largest count :func:`as_int` believes: about 10**12, far beyond any one call's tokens."""


def as_int(value: object) -> int:
    """*value* if it is an integer from 0 to :data:`MAX_COUNT` (2**40), else 0.

    Providers' counts (usage, indexes) are read through this. A count that is negative, not a
    whole number, or larger than any real call can have (a gateway's uint64 underflow sends
    18446744073709551615; JSON allows 10**400) is not a count: it is read as not reported.
    The bound keeps sums over millions of calls (2**23 calls at 2**40 each) within the
    checkpoint store's and result files' 2**63 - 1, and within float range, where budgets and
    prices compute with them.
    """
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_COUNT:
        return value
    return 0


def error_details(body: object) -> tuple[str | None, str | None, str | None]:
    """Find ``(type, code, message)`` in an error body of any provider's shape.

    Anthropic sends ``{"type": "error", "error": {"type", "message"}}``, OpenAI
    ``{"error": {"type", "code", "message"}}`` (the SDK may hand over the inner object), Ollama
    ``{"error": "message"}``.
    """
    outer = as_map(body)
    inner = outer.get("error", outer)
    if isinstance(inner, str):
        return None, None, inner
    detail = as_map(inner)
    kind = detail.get("type")
    code = detail.get("code")
    message = detail.get("message")
    return (
        kind if isinstance(kind, str) else None,
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )


def _json_int(digits: str) -> int | str:
    """A JSON integer as an int, or as its text past Python's int-string conversion limit.

    ``json.loads`` raised a ValueError on an integer of more than 4300 digits, failing the
    whole reply over one absurd number (a usage count); kept as text, `as_int` reads it as
    not reported, and the answer stays.
    """
    try:
        return int(digits)
    except ValueError:
        return digits


def loads(text: str | bytes) -> object:
    """``json.loads``, except that an integer too long for `int` stays text (see `_json_int`).

    Raises:
        ValueError: *text* is not JSON.
        RecursionError: *text* nests too deeply.
    """
    return json.loads(text, parse_int=_json_int)


def load_arguments(provider: str, name: str, text: str) -> Mapping[str, object]:
    """Decode a tool call's JSON arguments (empty text means no arguments).

    Raises:
        InvalidRequestError: the arguments are not a JSON object (a malformed response).
    """
    if not text.strip():
        return {}
    try:
        value: object = loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested beyond reason
        raise InvalidRequestError(
            provider, f"tool call {name!r} has malformed JSON arguments: {text[:200]!r}"
        ) from exc
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            provider, f"tool call {name!r} arguments are not a JSON object: {text[:200]!r}"
        )
    return as_map(value)
