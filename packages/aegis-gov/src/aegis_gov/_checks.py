"""Argument checks shared by the public constructors.

Each gives a clear TypeError or ValueError naming the argument, instead of a bare
AttributeError later or a setting that silently fails open.
"""

from __future__ import annotations

import math

__all__ = ["check_bool", "check_not_text", "check_number"]


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
