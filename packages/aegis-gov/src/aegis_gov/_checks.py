"""Argument checks shared by the public constructors.

Each gives a clear TypeError or ValueError naming the argument, instead of a bare
AttributeError later or a setting that silently fails open.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final, TypeVar, cast

from aegis_adapters import Endpoint, redact_text, redact_url

from aegis_gov._display_names import endpoint_key_parts

__all__ = [
    "check_bool",
    "check_not_text",
    "check_number",
    "endpoint_keyed",
    "endpoint_spelling",
    "shown_key",
]

_V = TypeVar("_V")


def check_bool(name: str, value: object) -> bool:
    """*value* if it is a bool; else TypeError (``"false"`` is truthy and would fail open)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_number(
    name: str, value: object, *, integer: bool = False, positive: bool = True
) -> float:
    """*value* if it is a finite (positive) number, an int where *integer*; else an error."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return value


def check_not_text(name: str, value: object) -> None:
    """TypeError if *value* is a string where a collection of strings is expected."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a collection of names, not the string {value!r}")


def endpoint_keyed(what: str, value: object, kind: type[_V]) -> dict[str, _V]:
    """*value*, a mapping keyed by model name, ``"provider:model"`` or endpoint key, checked.

    A full endpoint key ``"provider|base_url|model"`` is spelled as endpoints spell it (see
    ``Endpoint.base_url``: credentials dropped, scheme and host lower-cased, a default port
    and trailing slashes dropped), so ``"openai|http://user:key@Host/v1/|gpt"`` matches the
    endpoint ``http://host/v1``. Messages never quote a key's credentials.

    Raises:
        TypeError: *value* is not a mapping, a key is not a string or a value not a *kind*.
        ValueError: two keys name one endpoint with different values.
    """
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must map model names to {kind.__name__}, got {value!r:.80}")
    checked: dict[str, _V] = {}
    written: dict[str, tuple[int, str]] = {}  # endpoint key -> (position, key as written)
    for position, (name, item) in enumerate(cast("Mapping[object, object]", value).items(), 1):
        if not isinstance(name, str):
            raise TypeError(f"{what} keys must be model names (str), got {name!r:.80}")
        shown = shown_key(name)
        if not isinstance(item, kind):
            raise TypeError(f"{what}[{shown!r}] must be a {kind.__name__}, got {item!r:.80}")
        key = endpoint_spelling(name)
        if key in checked and checked[key] != item:
            first, first_name = written[key]
            # Keys differing only by credentials read alike once redacted: their places in
            # the table tell the user which two lines are meant.
            raise ValueError(
                f"{what}[{shown!r}] and {what}[{shown_key(first_name)!r}] (the "
                f"{_ordinal(position)} and the {_ordinal(first)} key of {what}, in the order "
                f"written) name one endpoint, {key!r} (an endpoint is its provider, URL and "
                f"model; credentials are not part of it), with different values: keep one"
            )
        checked[key] = item
        written.setdefault(key, (position, name))
    return checked


def shown_key(name: str) -> str:
    """*name*, a ``limits`` or ``prices`` key as written, as messages quote it: no credentials.

    The URL in a key is redacted as a URL (:func:`~aegis_adapters.redact_url`: the userinfo
    ends at the host's ``@``), not as free text, where a URL's userinfo ends at the first
    ``@`` or quote: a password holding one of those would be quoted in part. A full
    endpoint key's URL ends at its last ``|``: read as free text, a credential's value
    (``?pw=...|model``) ran on over the model, which was then not quoted.
    """
    parts = endpoint_key_parts(name)
    if parts is not None:
        provider, url, model = parts
        return f"{redact_text(provider)}|{_shown_url(url)}|{redact_text(model)}"
    return _shown_url(name)


def _shown_url(text: str) -> str:
    found = _URL_START.search(text)
    if found is None:
        return redact_text(text)
    scheme, start = found["scheme"], found.start("scheme")
    shown = redact_url(text[start:])
    if shown[: len(scheme)].lower() == scheme.lower():
        shown = scheme + shown[len(scheme) :]  # as written: urlsplit lower-cases a scheme
    return redact_text(text[:start]) + shown


# Tried where a run of scheme characters begins, as aegis_adapters' redaction does, so a
# long key is searched in one pass (digits or "+.-" before the scheme's letter: the lead).
_URL_START: Final = re.compile(
    r"(?<![A-Za-z0-9+.-])[0-9+.-]*(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)"
)


def _ordinal(number: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ... ``11th``, ``12th``, ``13th``, ``21st``, ..."""
    suffix = "th" if number % 100 in {11, 12, 13} else _SUFFIXES.get(number % 10, "th")
    return f"{number}{suffix}"


_SUFFIXES: Final = {1: "st", 2: "nd", 3: "rd"}


def endpoint_spelling(name: str) -> str:
    """A full endpoint key with its URL spelled as endpoints are; any other key as it is.

    As ``Endpoint.base_url`` spells it: credentials dropped (they are not part of an
    endpoint), scheme and host lower-cased, a default port and trailing slashes dropped.
    """
    parts = endpoint_key_parts(name)
    return name if parts is None else Endpoint(*parts).key  # else a model or "provider:model"
