"""Shared test configuration: Hypothesis profiles and a seed that rotates.

``ci`` is thorough but bounded so CI stays well under its time budget; ``dev`` is quicker.
Choose with ``HYPOTHESIS_PROFILE`` (nox sets ``ci``).

Every run is seeded: by ``--hypothesis-seed=N`` when given, else by today's date, so CI keeps
exploring new examples from one day to the next while any failure replays exactly with the
seed printed in the report header (and by Hypothesis next to the failure).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def _todays_seed() -> int:
    return dt.datetime.now(tz=dt.timezone.utc).date().toordinal()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Seed Hypothesis with today's date unless a seed was given."""
    if config.getoption("hypothesis_seed", default=None) is None:
        config.option.hypothesis_seed = str(_todays_seed())
    # ``aegis run`` checkpoints into the working directory by default: keep every test (and
    # the subprocesses they start, which inherit the environment) out of the checkout.
    os.environ["AEGIS_CHECKPOINT"] = str(Path(tempfile.mkdtemp(prefix="aegis-tests-")) / "runs.db")


def pytest_report_header(config: pytest.Config) -> str:
    """Say which seed this run uses, and how to replay it."""
    seed = config.getoption("hypothesis_seed", default=None)
    return f"hypothesis seed: {seed} (rotates daily; replay with --hypothesis-seed={seed})"
