"""Retry policy: exponential backoff with full jitter that honours a provider's Retry-After."""

from __future__ import annotations

import math
import random

import attrs

__all__ = ["RetryPolicy"]


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    _finite(attribute.name, value)
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    _finite(attribute.name, value)
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _finite(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """How a task retries a :class:`~aegis_adapters.RetryableError`.

    The n-th retry waits a random time in ``[0, min(max_delay_s, initial_delay_s *
    multiplier ** (n - 1))]`` ("full jitter"), but never less than the error's
    ``retry_after_s``. A task gives up when ``max_attempts`` requests failed, when the
    next wait would exceed ``max_delay_s`` (a Retry-After too long to honour: a 429's ends
    the task with :class:`~aegis_gov.RetryAfterTooLongError`), or when its
    waits would add up to more than ``max_total_delay_s``. A 429 on an agent's last
    endpoint (no fallback left) while the endpoint answers others is not a failed attempt,
    only a wait: the provider is up and the endpoint's pace slows down, so only the two wait
    budgets bound it. Times are in seconds.
    """

    max_attempts: int = attrs.field(default=3)
    initial_delay_s: float = attrs.field(default=0.5, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=_positive)
    max_delay_s: float = attrs.field(default=30.0, validator=_positive)
    max_total_delay_s: float = attrs.field(default=120.0, validator=_non_negative)

    @max_attempts.validator
    def _check_attempts(self, _attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"max_attempts must be an int, got {value!r}")
        if value < 1:
            raise ValueError(f"max_attempts must be >= 1, got {value!r}")

    def backoff_cap_s(self, retry_number: int) -> float:
        """The upper bound of the jittered wait before retry number ``retry_number`` (1-based)."""
        exponent = max(retry_number - 1, 0)
        # Cap the exponent so huge attempt numbers cannot overflow a float.
        return min(self.max_delay_s, self.initial_delay_s * self.multiplier ** min(exponent, 64))

    def next_delay_s(
        self,
        retry_number: int,
        retry_after_s: float | None,
        *,
        waited_s: float,
        rng: random.Random,
    ) -> float | None:
        """Seconds to wait before retry ``retry_number``, or ``None`` to give up now.

        ``waited_s`` is what this task already waited; ``retry_after_s`` is the provider's
        (or an open breaker's) minimum wait.
        """
        if retry_after_s is not None and retry_after_s > self.max_delay_s:
            return None
        delay = rng.uniform(0.0, self.backoff_cap_s(retry_number))
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        if waited_s + delay > self.max_total_delay_s:
            return None
        return delay
