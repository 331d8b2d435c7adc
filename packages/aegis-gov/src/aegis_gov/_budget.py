"""Budgets: a run stops sending requests once its tokens, requests or cost are spent.

``run_tasks(..., budget=Budget(max_total_tokens=..., max_requests=..., max_cost_usd=...,
prices={"gpt-4o-mini": Price(0.15, 0.60)}))``. Before each request the run's
:class:`BudgetMeter` is asked; once a limit is reached no new request is sent: tasks not yet
started end SKIPPED (``SkipReason.BUDGET_SPENT``), a task needing another request fails
with :class:`BudgetSpentError`, and calls already in flight finish and are counted — so a
run may end slightly past a limit, by at most what its calls in flight used.

Cost needs prices, in US dollars per million tokens. aegis ships none (prices change, and a
guessed price would make a cost budget lie): give them in ``Budget.prices``, keyed like
:class:`~aegis_gov.Limits` by model, ``"provider:model"`` or endpoint key. A cost budget over
a model with no price is refused before the run starts.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable, Mapping
from typing import Final

import attrs
from aegis_adapters import Endpoint, Usage

from aegis_gov._checks import check_number, endpoint_keyed
from aegis_gov._errors import AegisError

__all__ = ["Budget", "BudgetMeter", "BudgetSpentError", "Price", "Spent"]


def _money(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    check_number(attribute.name, value, positive=False)
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _count(_instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None:
        check_number(attribute.name, value, integer=True)


def _amount(
    _instance: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None:
        check_number(attribute.name, value)


@attrs.frozen
class Price:
    """What a model costs, in US dollars per million tokens."""

    input_per_million_usd: float = attrs.field(validator=_money)
    output_per_million_usd: float = attrs.field(validator=_money)

    def cost_usd(self, usage: Usage) -> float:
        """The cost of *usage* at this price."""
        return (
            usage.input_tokens * self.input_per_million_usd
            + usage.output_tokens * self.output_per_million_usd
        ) / 1_000_000


def _prices(value: Mapping[str, Price]) -> dict[str, Price]:
    return endpoint_keyed("prices", value, Price)


@attrs.frozen
class Budget:
    """The most a run may spend; ``None`` leaves that dimension unlimited."""

    max_total_tokens: int | None = attrs.field(default=None, validator=_count)
    """Input plus output tokens over every request of the run."""
    max_requests: int | None = attrs.field(default=None, validator=_count)
    """Requests sent (retries and tool rounds count)."""
    max_cost_usd: float | None = attrs.field(default=None, validator=_amount)
    """US dollars, from ``prices``."""
    prices: dict[str, Price] = attrs.field(factory=dict, converter=_prices)
    """Price per model, ``"provider:model"`` or endpoint key."""


def _spent_count(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    check_number(attribute.name, value, integer=True, positive=False)
    if value < 0:  # a resumed run starts from it: a negative count would add budget
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _spent_cost(
    _instance: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None:
        _money(_instance, attribute, value)  # type: ignore[arg-type]  # None is handled


@attrs.frozen
class Spent:
    """What a run spent: tokens, requests sent and, with prices, cost."""

    tokens: int = attrs.field(default=0, validator=_spent_count)
    requests: int = attrs.field(default=0, validator=_spent_count)
    cost_usd: float | None = attrs.field(default=None, validator=_spent_cost)

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return attrs.asdict(self)


class BudgetSpentError(AegisError):
    """A run's budget ran out: no new request is sent. ``limit`` names what ran out."""

    def __init__(self, limit: str, spent: Spent) -> None:
        """Record the limit reached and what was spent."""
        super().__init__(f"the run's budget is spent ({limit}); no new request was sent")
        self.limit = limit
        self.spent = spent


OFFLINE_PROVIDERS: Final = frozenset({"echo", "scripted"})
"""Providers of the offline adapters: no request leaves the process, nothing is billed."""


class BudgetMeter:
    """Counts one run's spending against its :class:`Budget`; thread-safe."""

    def __init__(self, budget: Budget, *, spent: Spent | None = None) -> None:
        """Start at *spent* (what the run this one resumes spent), else at nothing."""
        self.budget = budget
        self._tokens = 0 if spent is None else spent.tokens
        self._requests = 0 if spent is None else spent.requests
        self._cost = 0.0 if spent is None or spent.cost_usd is None else spent.cost_usd
        self._lock = threading.Lock()

    def check_prices(self, endpoints: Iterable[tuple[Endpoint, str]], *, warn: bool = True) -> None:
        """Refuse, up front, a cost budget over an endpoint whose price is unknown.

        Without ``max_cost_usd`` but with prices, an endpoint none of them matches draws a
        ``UserWarning`` instead (its calls would count no cost, and a run on a mistyped key
        would report $0 for tokens really spent), with the closest price key, if any; not
        for an offline endpoint (``echo``, ``scripted``), which costs nothing unless priced,
        nor when *warn* is false (a check before the run, which warns itself).

        Raises:
            ValueError: a cost budget and an endpoint with no price in ``Budget.prices``.
        """
        budget = self.budget
        if budget.max_cost_usd is None and not budget.prices:
            return
        unpriced = {
            (endpoint.provider, endpoint.model): None
            for endpoint, key in endpoints
            if self._price(endpoint, key) is None
        }
        for provider, model in unpriced:
            if budget.max_cost_usd is not None:
                raise ValueError(
                    f"a cost budget needs a price for {model!r} ({provider}): "
                    f'add it to Budget.prices ([budget.prices."{model}"] in a '
                    "pipeline file)"
                )
            if not warn or provider in OFFLINE_PROVIDERS:
                continue
            from aegis_gov._pipeline_validate import suggest  # noqa: PLC0415  # for this only

            warnings.warn(
                f"Budget.prices has no price for {model!r} ({provider})"
                f"{suggest(model, budget.prices)}: its calls "
                "count no cost, so the run's cost leaves them out",
                UserWarning,
                stacklevel=3,
            )

    def _price(self, endpoint: Endpoint, key: str) -> Price | None:
        prices = self.budget.prices
        for name in (key, f"{endpoint.provider}:{endpoint.model}", endpoint.model):
            if name in prices:
                return prices[name]
        return None

    def _reached(self) -> str | None:
        budget = self.budget
        if budget.max_requests is not None and self._requests >= budget.max_requests:
            return f"max_requests={budget.max_requests}"
        if budget.max_total_tokens is not None and self._tokens >= budget.max_total_tokens:
            return f"max_total_tokens={budget.max_total_tokens}"
        if budget.max_cost_usd is not None and self._cost >= budget.max_cost_usd:
            return f"max_cost_usd={budget.max_cost_usd:g}"
        return None

    @property
    def spent_out(self) -> bool:
        """Whether a limit has been reached."""
        with self._lock:
            return self._reached() is not None

    def admit(self) -> None:
        """Count a request about to be sent, or refuse it when the budget is spent.

        Raises:
            BudgetSpentError: a limit has been reached.
        """
        with self._lock:
            reached = self._reached()
            if reached is None:
                self._requests += 1
                return
        raise BudgetSpentError(reached, self.spent())

    def spent_error(self) -> BudgetSpentError:
        """The error a request refused now would get (call it once the budget is spent)."""
        with self._lock:
            reached = self._reached() or "the budget"
        return BudgetSpentError(reached, self.spent())

    def give_back(self) -> None:
        """Uncount a request :meth:`admit` counted that was never sent (an open circuit)."""
        with self._lock:
            self._requests = max(self._requests - 1, 0)

    def record(self, endpoint: Endpoint, key: str, usage: Usage) -> None:
        """Add what a finished request used."""
        price = self._price(endpoint, key)
        with self._lock:
            self._tokens += usage.input_tokens + usage.output_tokens
            if price is not None:
                self._cost += price.cost_usd(usage)

    def spent(self) -> Spent:
        """What was spent so far."""
        with self._lock:
            has_prices = bool(self.budget.prices)
            return Spent(self._tokens, self._requests, self._cost if has_prices else None)
