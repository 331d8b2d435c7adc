from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "packages" / "aegis-graph" / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


@pytest.mark.parametrize("block", BLOCKS)
def test_readme_example_prints_what_its_comments_say(block: str) -> None:
    expected = [
        line.split("#", 1)[1].strip() for line in block.splitlines() if line.startswith("print(")
    ]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(block, {})  # the README's own examples
    assert out.getvalue().splitlines() == expected


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2
