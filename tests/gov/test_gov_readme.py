"""Every Python example of the README runs as written, against a loopback Anthropic API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.gov.fake_providers import serve_anthropic

README = Path(__file__).parents[2] / "README.md"
PACKAGE_README = Path(__file__).parents[2] / "packages" / "aegis-gov" / "README.md"


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL)


BLOCKS = _blocks(README)
PACKAGE_BLOCKS = _blocks(PACKAGE_README)


def test_the_readme_has_the_article_examples() -> None:
    text = "\n".join(BLOCKS)
    for needle in ("oma.run_agent(", "create_team(", "TaskQueue(", "AgentPool(", "define_tool("):
        assert needle in text


@pytest.mark.parametrize(
    "block",
    BLOCKS + PACKAGE_BLOCKS,
    ids=[f"block{i}" for i in range(len(BLOCKS))]
    + [f"package{i}" for i in range(len(PACKAGE_BLOCKS))],
)
def test_readme_example_runs(
    block: str,
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    requests = serve_anthropic(httpserver)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", httpserver.url_for("/").rstrip("/"))
    exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    for line in block.splitlines():
        # A "# value" comment after print(...) states what the example prints.
        match = re.match(r"print\((.*)\)\s+# (\{.*\}|\[.*\]|\w+)$", line.strip())
        if match and "..." not in match.group(2):
            expected = match.group(2).replace('"', "'")
            assert expected in out.replace('"', "'"), (line, out)
    if "run_agent(" in block:
        assert out.startswith("answer to: Top 3 open-source multi-agent")
        assert requests[0]["model"] == "claude-haiku-4-5-20251001"
        assert requests[0]["system"] == "You are a concise market analyst."
    if "create_team(" in block and "pipeline" in block:
        assert len(requests) == 4
        draft = next(r for r in requests if r["system"] == "Write clear reports.")
        assert "answer to: Research AI trends" in str(draft["messages"])
    if "get_status()" in block:
        assert "'pool_state': 'closed'" in out
        assert "'pool_consecutive_failures': 0" in out


def test_no_doc_tells_users_to_install_the_index_name_that_is_not_ours() -> None:
    root = Path(__file__).parents[2]
    pages = [README, PACKAGE_README, *sorted((root / "docs").rglob("*.md"))]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert 'pip install "aegis-gov' not in text, page
        assert "pip install aegis-gov\n" not in text, page
    assert '"./packages/aegis-adapters[all]"' in README.read_text(encoding="utf-8")
