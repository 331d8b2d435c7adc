"""The package README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aegis_breaker import CircuitState

README = Path(__file__).parents[2] / "packages" / "aegis-breaker" / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(block: str, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    if "open_for(12.0)" in block:
        name, seconds = out.split()
        assert name == "search"
        assert 11.0 < float(seconds) <= 12.0
    if "CountWindow" in block:  # the window example prints what its comments say
        assert out.splitlines() == ["open 0.3", "open 1.0 0.0"]
    if "force_open()" in block:
        assert namespace["breaker"].state is CircuitState.CLOSED  # type: ignore[attr-defined]
        assert namespace["started_open"].state is CircuitState.OPEN  # type: ignore[attr-defined]
    if "pool.status()" in block:
        pool = namespace["pool"]
        status = pool.status()  # type: ignore[attr-defined]
        assert set(status["breakers"]) == {"default", "openai:gpt-4o-mini"}
