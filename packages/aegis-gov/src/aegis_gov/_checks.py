"""Argument checks shared by the public constructors.

Each gives a clear TypeError or ValueError naming the argument, instead of a bare
AttributeError later or a setting that silently fails open.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeVar, cast

from aegis_adapters import Endpoint, redact_text

from aegis_gov._display_names import endpoint_key_parts

__all__ = ["check_bool", "check_not_text", "check_number", "endpoint_keyed", "endpoint_spelling"]

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
    written: dict[str, str] = {}  # endpoint key -> the key as the user wrote it
    for name, item in cast("Mapping[object, object]", value).items():
        if not isinstance(name, str):
            raise TypeError(f"{what} keys must be model names (str), got {name!r:.80}")
        shown = redact_text(name)
        if not isinstance(item, kind):
            raise TypeError(f"{what}[{shown!r}] must be a {kind.__name__}, got {item!r:.80}")
        key = endpoint_spelling(name)
        if key in checked and checked[key] != item:
            raise ValueError(
                f"{what}[{shown!r}] and {what}[{redact_text(written[key])!r}] name one "
                f"endpoint, {key!r} (an endpoint is its provider, URL and model; credentials "
                f"are not part of it), with different values: keep one"
            )
        checked[key] = item
        written.setdefault(key, name)
    return checked


def endpoint_spelling(name: str) -> str:
    """A full endpoint key with its URL spelled as endpoints are; any other key as it is.

    As ``Endpoint.base_url`` spells it: credentials dropped (they are not part of an
    endpoint), scheme and host lower-cased, a default port and trailing slashes dropped.
    """
    parts = endpoint_key_parts(name)
    return name if parts is None else Endpoint(*parts).key  # else a model or "provider:model"
