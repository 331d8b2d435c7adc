"""What ``OpenMultiAgent.get_status()`` returns: typed, frozen, and still readable as a dict."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import attrs
from aegis_breaker import BreakerStatus, CircuitState, PoolStatus

from aegis_gov._adaptive import AdaptiveStatus

__all__ = ["EndpointStatus", "Status"]


@attrs.frozen
class EndpointStatus:
    """One provider endpoint: its breaker and, once called, its adaptive concurrency limit."""

    key: str
    """The endpoint's breaker key (credentials redacted)."""
    breaker: BreakerStatus
    """The breaker's snapshot."""
    adaptive: AdaptiveStatus | None = None
    """The adaptive limit, or None before the endpoint's first call."""

    @property
    def state(self) -> CircuitState:
        """The breaker's state."""
        return self.breaker.state

    def to_dict(self) -> dict[str, object]:
        """The breaker's fields, plus ``adaptive`` when known: plain data for JSON."""
        data = self.breaker.to_dict()
        if self.adaptive is not None:
            data["adaptive"] = self.adaptive.to_dict()
        return data


@attrs.frozen(repr=False)
class Status(Mapping[str, object]):
    """A snapshot of a facade's pool and endpoints.

    Read it typed (``status.pool.state``, ``status.endpoints[key].adaptive``) or, as the
    original article does, as a dict: ``status["pool_state"]`` is ``"closed"``; the keys are
    those of :meth:`to_dict`.
    """

    pool: PoolStatus
    """The pool: worst state, bulkhead, every breaker."""
    endpoints: dict[str, EndpointStatus]
    """The provider endpoints called so far (the pool's ``"default"`` breaker excluded)."""

    def to_dict(self) -> dict[str, object]:
        """The article's dict form, as plain data for JSON.

        Keys: ``pool_state``, ``pool_consecutive_failures``, ``pool_active``,
        ``pool_max_concurrent`` and ``endpoints`` (key -> :meth:`EndpointStatus.to_dict`).
        """
        return {
            "pool_state": self.pool.state.value,
            "pool_consecutive_failures": self.pool.consecutive_failures,
            "pool_active": self.pool.active,
            "pool_max_concurrent": self.pool.max_concurrent,
            "endpoints": {key: e.to_dict() for key, e in self.endpoints.items()},
        }

    def __getitem__(self, key: str) -> object:
        """The value of *key* in :meth:`to_dict`."""
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        """The keys of :meth:`to_dict`."""
        return iter(self.to_dict())

    def __len__(self) -> int:
        """How many keys :meth:`to_dict` has."""
        return len(self.to_dict())

    def __repr__(self) -> str:
        """The dict form, as the article prints it."""
        return repr(self.to_dict())
