"""Shared test configuration: Hypothesis profiles.

``ci`` is thorough but bounded so CI stays well under its time budget; ``dev`` is quicker.
Choose with ``HYPOTHESIS_PROFILE`` (nox sets ``ci``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
