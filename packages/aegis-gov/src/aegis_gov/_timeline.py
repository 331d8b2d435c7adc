"""A run's timeline: when each task started, waited, retried, fell back and ended.

The values only; ``_timeline_recorder`` records them from a run's events, ``_results``
reads and writes them with the result's JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final, Literal

import attrs

from aegis_gov._budget import Price

__all__ = ["TIMELINE_KINDS", "Timeline", "TimelineEntry", "TimelineKind"]

TimelineKind = Literal[
    "started", "retrying", "parked", "fell_back", "succeeded", "reused", "failed", "skipped",
    "circuit",
]  # fmt: skip
"""What a :class:`TimelineEntry` records (see its docstring)."""

TIMELINE_KINDS: Final[frozenset[str]] = frozenset(
    ("started", "retrying", "parked", "fell_back", "succeeded", "reused", "failed", "skipped")
) | {"circuit"}
"""Every :data:`TimelineKind`."""


def _not_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"TimelineEntry.{attribute.name} must be a finite number >= 0, got {value!r}"
        )


def _kind(_instance: object, _attribute: object, value: str) -> None:
    if value not in TIMELINE_KINDS:
        raise ValueError(
            f"TimelineEntry.kind must be one of {', '.join(sorted(TIMELINE_KINDS))}, got {value!r}"
        )


@attrs.frozen
class TimelineEntry:
    """One moment of a run, ``at_s`` seconds after its first event.

    ``kind`` is ``started`` (the task was handed to its agent), ``retrying`` (it waits
    ``delay_s`` after a failed request, ``error``, before request ``attempt``), ``parked``
    (it waits ``delay_s`` without a request: the endpoint's breaker, bulkhead or limit
    turned it away), ``fell_back`` (it moved on to ``endpoint``, after ``error``),
    ``succeeded``, ``reused`` (kept from the run it resumed), ``failed``, ``skipped``, or
    ``circuit``: the breaker of endpoint ``subject`` went from ``previous_state`` to
    ``state``. ``subject`` is the task id for every other kind.

    Raises:
        ValueError: ``at_s`` or ``delay_s`` is negative or not finite, ``attempt`` is
            negative, or ``kind`` is not a :data:`TimelineKind` (what a result's reader
            refuses is never written).
    """

    at_s: float = attrs.field(validator=_not_negative)
    kind: TimelineKind = attrs.field(validator=_kind)
    subject: str
    attempt: int = attrs.field(
        default=0, validator=[attrs.validators.ge(0), attrs.validators.le(2**63 - 1)]
    )
    delay_s: float = attrs.field(default=0.0, validator=_not_negative)
    endpoint: str = ""
    error: str = ""
    state: str = ""
    previous_state: str = ""

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON: the fields that are not at their defaults."""
        data: dict[str, object] = {"at_s": self.at_s, "kind": self.kind, "subject": self.subject}
        optional = {
            "attempt": self.attempt,
            "delay_s": self.delay_s,
            "endpoint": self.endpoint,
            "error": self.error,
            "state": self.state,
            "previous_state": self.previous_state,
        }
        data.update({name: value for name, value in optional.items() if value})
        return data


def _entries(value: Iterable[TimelineEntry]) -> tuple[TimelineEntry, ...]:
    return tuple(value)


def _dependencies(value: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    return {task_id: tuple(deps) for task_id, deps in value.items()}


def _prices(value: Mapping[str, Price]) -> dict[str, Price]:
    return dict(value)


@attrs.frozen
class Timeline:
    """What a :class:`TimelineRecorder` saw of one run, for ``aegis report`` to draw.

    ``entries`` are in the order they happened. ``dependencies`` is the task graph (task id
    -> the ids it depends on; empty when not given), from which a report tells when each
    task became ready. ``prices`` (as :attr:`Budget.prices <aegis_gov.Budget.prices>`) let
    it put a cost on each agent's and endpoint's tokens.
    """

    entries: tuple[TimelineEntry, ...] = attrs.field(default=(), converter=_entries)
    dependencies: Mapping[str, tuple[str, ...]] = attrs.field(
        factory=dict, converter=_dependencies, hash=False
    )
    prices: Mapping[str, Price] = attrs.field(factory=dict, converter=_prices, hash=False)

    @property
    def duration_s(self) -> float:
        """Seconds from the first entry to the last (0.0 when there are none)."""
        return max((entry.at_s for entry in self.entries), default=0.0)

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON (``RunResult.to_json`` writes it under ``"timeline"``)."""
        return {
            "entries": [entry.to_dict() for entry in self.entries],
            "dependencies": {task_id: list(deps) for task_id, deps in self.dependencies.items()},
            "prices": {
                name: [price.input_per_million_usd, price.output_per_million_usd]
                for name, price in self.prices.items()
            },
        }
