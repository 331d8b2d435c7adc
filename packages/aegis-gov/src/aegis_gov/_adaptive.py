"""Adaptive concurrency per endpoint: an AIMD limit on the calls in flight to one provider.

When nobody declared what an endpoint can take, learn it: the limit grows by one for every
window of successful calls that used at least half of it (additive increase) and halves on a
sign of overload — a 429, a 529 or 503, a timeout (multiplicative decrease), never below one
nor above the pool's ``max_concurrent``. The anchor is Netflix's concurrency-limits ``AIMD``
limit. Sans-I/O and thread-safe: callers ask :meth:`AdaptiveLimit.try_acquire` and report
each call's outcome with :meth:`AdaptiveLimit.release`; waiting is the caller's business.
"""

from __future__ import annotations

import threading

import attrs

__all__ = ["AdaptiveLimit", "AdaptiveStatus"]


@attrs.frozen
class AdaptiveStatus:
    """A snapshot of one endpoint's adaptive limit."""

    limit: int
    """Calls allowed in flight now."""
    in_flight: int
    """Calls in flight now."""
    overloads: int
    """Signs of overload seen (429s, 529s, 503s, timeouts)."""
    max_limit: int
    """The ceiling: the pool's ``max_concurrent``."""

    def to_dict(self) -> dict[str, int]:
        """The snapshot as a JSON-ready dict."""
        return attrs.asdict(self)


class AdaptiveLimit:
    """An AIMD limit on one endpoint's calls in flight.

    Args:
        max_limit: The ceiling (and the starting limit): the pool's ``max_concurrent``.
        min_limit: The floor.
        backoff_ratio: What the limit is multiplied by on overload.
    """

    def __init__(self, max_limit: int, *, min_limit: int = 1, backoff_ratio: float = 0.5) -> None:
        """Start at *max_limit*: nothing is known to be wrong yet."""
        if not 1 <= min_limit <= max_limit:
            raise ValueError(f"need 1 <= min_limit <= max_limit, got {min_limit}, {max_limit}")
        if not 0.0 < backoff_ratio < 1.0:
            raise ValueError(f"backoff_ratio must be in (0, 1), got {backoff_ratio!r}")
        self.max_limit = max_limit
        self.min_limit = min_limit
        self.backoff_ratio = backoff_ratio
        self._limit = float(max_limit)
        self._in_flight = 0
        self._overloads = 0
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        """Calls allowed in flight now."""
        return _whole(self._limit)

    def try_acquire(self) -> bool:
        """Count one more call in flight if the limit allows it."""
        with self._lock:
            if self._in_flight >= _whole(self._limit):
                return False
            self._in_flight += 1
            return True

    def release(self, *, overloaded: bool | None) -> None:
        """One call ended: ``True`` overloaded, ``False`` succeeded, ``None`` tells nothing."""
        with self._lock:
            in_flight = self._in_flight
            self._in_flight = max(in_flight - 1, 0)
            if overloaded:
                self._overloads += 1
                self._limit = max(float(self.min_limit), self._limit * self.backoff_ratio)
            elif overloaded is False and in_flight * 2 >= self._limit:
                # Grow only when the limit was being used: idle success proves nothing.
                self._limit = min(float(self.max_limit), self._limit + 1.0 / self._limit)

    def status(self) -> AdaptiveStatus:
        """A snapshot of the limit."""
        with self._lock:
            return AdaptiveStatus(
                limit=_whole(self._limit),
                in_flight=self._in_flight,
                overloads=self._overloads,
                max_limit=self.max_limit,
            )


def _whole(limit: float) -> int:
    # Sums of 1/limit land a hair under the next integer; do not lose a slot to that.
    return int(limit + 1e-9)
