"""Every ```python block of the docs runs, offline; a ``print(...)  # value`` shows its output.

Blocks of one page run in order in one namespace, like a reader following the page.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[2] / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
PRINTED = re.compile(r"^print\((.*)\)\s+# (.+)$")


def blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def test_the_docs_have_runnable_examples() -> None:
    counted = {page.relative_to(DOCS).as_posix(): len(blocks(page)) for page in PAGES}
    assert sum(counted.values()) >= 15
    for page in ("getting-started.md", "concepts/runs.md", "concepts/breaker.md"):
        assert counted[page] >= 1, page


@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if blocks(p)],
    ids=lambda p: p.relative_to(DOCS).as_posix(),
)
def test_page_examples_run(page: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "docs_example"}
    for number, block in enumerate(blocks(page)):
        if "redis" in block and importlib.util.find_spec("redis") is None:
            pytest.skip(f"{page.name} block {number} needs the redis client (aegis-gov[redis])")
        capsys.readouterr()
        exec(compile(block, f"{page}:block{number}", "exec"), namespace)
        out = capsys.readouterr().out.splitlines()
        expected = [
            match.group(2)
            for line in block.splitlines()
            if (match := PRINTED.match(line.strip())) and "..." not in match.group(2)
        ]
        printed_lines = [line for line in out if line.strip()]
        for value in expected:
            assert any(value == line.strip() for line in printed_lines), (
                f"{page.name} block {number}: expected a line {value!r}, printed {out!r}"
            )
