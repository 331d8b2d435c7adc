"""RetryPolicy's promises, for any policy and any sequence of errors."""

from __future__ import annotations

import random

import hypothesis.strategies as st
from aegis_gov import RetryPolicy
from hypothesis import given

policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 20),
    initial_delay_s=st.floats(0.001, 10.0),
    multiplier=st.floats(1.0, 5.0),
    max_delay_s=st.floats(0.001, 120.0),
    max_total_delay_s=st.floats(0.0, 600.0),
)
retry_afters = st.none() | st.floats(0.0, 200.0)


@given(policies, st.lists(retry_afters, min_size=1, max_size=30), st.integers(0, 2**32))
def test_delays_stay_within_bounds_honour_retry_after_and_the_total_budget(
    policy: RetryPolicy, hints: list[float | None], seed: int
) -> None:
    rng = random.Random(seed)
    waited = 0.0
    for number, hint in enumerate(hints, start=1):
        delay = policy.next_delay_s(number, hint, waited_s=waited, rng=rng)
        if delay is None:
            # Giving up is only allowed for a reason the policy documents.
            cap = policy.backoff_cap_s(number)
            too_long = hint is not None and hint > policy.max_delay_s
            over_budget = waited + max(hint or 0.0, 0.0) > policy.max_total_delay_s or (
                waited + cap > policy.max_total_delay_s
            )
            assert too_long or over_budget
            break
        assert delay >= 0.0
        assert delay <= max(policy.backoff_cap_s(number), hint or 0.0)
        assert delay <= policy.max_delay_s
        if hint is not None:
            assert delay >= hint  # never sooner than the provider asked
        waited += delay
        assert waited <= policy.max_total_delay_s


@given(policies, st.integers(1, 10_000))
def test_the_backoff_cap_grows_and_never_passes_max_delay(policy: RetryPolicy, n: int) -> None:
    assert policy.backoff_cap_s(n) <= policy.max_delay_s
    assert policy.backoff_cap_s(n) <= policy.backoff_cap_s(n + 1)
