"""The report page in a real browser: Debian's headless chromium builds its DOM and draws it.

The page comes from a real run of the article pipeline with a failing branch (the offline
demo's script, no model delay); the DOM chromium builds must show which task failed, what
was skipped because of it, and one timeline row per task; the screenshot must not be blank.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from aegis_gov import (
    RunResult,
    TaskResult,
    Timeline,
    TimelineEntry,
    TimelineRecorder,
    render_report,
)
from aegis_gov._demo import offline_demo
from aegis_graph import TaskState

from tests.gov.browser import CHROMIUM, dump_dom, idat_variety, png_size, screenshot
from tests.gov.test_report import ATTACKS

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (nox installs Debian's chromium when run as root; "
        "or: apt-get install chromium)",
    ),
    pytest.mark.timeout(600),  # chromium starts slowly on a busy machine
]


class _Dom(HTMLParser):
    """Elements by their data- attributes, as chromium serialised them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))

    def having(self, attribute: str, tag: str | None = None) -> list[dict[str, str]]:
        return [
            attrs
            for found, attrs in self.elements
            if attribute in attrs and (tag is None or found == tag)
        ]


@pytest.fixture(scope="module")
def demo_run() -> RunResult:
    demo = offline_demo(delay_s=0.0)
    recorder = TimelineRecorder(demo.tasks, clock=demo.oma.clock)
    return recorder.attach(demo.oma.run_tasks(demo.tasks, demo.team, on_event=recorder))


def _dom(page: Path) -> _Dom:
    parsed = _Dom()
    parsed.feed(dump_dom(page))
    return parsed


def test_the_browser_shows_the_failure_its_victims_and_one_row_per_task(
    tmp_path: Path, demo_run: RunResult
) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_report(demo_run), encoding="utf-8")
    dom = _dom(page)
    assert [a["data-failed"] for a in dom.having("data-failed")] == ["fact_check"]
    assert [a["data-victim"] for a in dom.having("data-victim")] == ["cite_sources"]
    rows = dom.having("data-task", "tr")
    states = {row["data-task"]: row["data-state"] for row in rows}
    assert states["fact_check"] == "failed"
    assert states["cite_sources"] == "skipped"
    assert {row["data-task"]: row.get("data-blamed") for row in rows}["cite_sources"] == (
        "fact_check"
    )
    timeline = dom.having("data-waited", "g")
    assert sorted(row["data-task"] for row in timeline) == sorted(demo_run)
    waited = {row["data-task"]: row["data-waited"] for row in timeline}
    assert float(waited["research"]) >= 1.0  # the 429's Retry-After: 1
    breakers = {
        row["data-endpoint"]: row["data-changes"] for row in dom.having("data-endpoint", "g")
    }
    assert int(breakers["scripted:offline-flaky"]) >= 2  # opened, and closed again
    assert not [tag for tag, _ in dom.elements if tag == "script"]


def test_the_screenshot_is_drawn(tmp_path: Path, demo_run: RunResult) -> None:
    page, png = tmp_path / "report.html", tmp_path / "report.png"
    page.write_text(render_report(demo_run), encoding="utf-8")
    screenshot(page, png, width=1100, height=900)
    data = png.read_bytes()
    assert png_size(data) == (1100, 900)
    assert idat_variety(data) > 100  # a blank page gives a handful


def test_no_attack_survives_the_browsers_parser(tmp_path: Path) -> None:
    """Every attack at once, as task ids, agents, errors and outputs, in one page."""
    tasks = {
        attack: TaskResult(
            attack, TaskState.FAILED, agent=attack, error=attack, error_type="X", attempts=1
        )
        for attack in ATTACKS
    }
    tasks["victim"] = TaskResult("victim", TaskState.DONE, agent="a", output=ATTACKS[0])
    entries = [TimelineEntry(0.0, "started", a) for a in ATTACKS]
    entries += [TimelineEntry(1.0, "failed", a, error=a) for a in ATTACKS]
    page = tmp_path / "attacks.html"
    result = RunResult(tasks, team=ATTACKS[1], timeline=Timeline(entries, {a: [] for a in tasks}))
    page.write_text(render_report(result), encoding="utf-8")
    dom = _dom(page)
    tags = {tag for tag, _ in dom.elements}
    assert not tags & {"script", "img", "iframe"}
    assert not [n for _, attrs in dom.elements for n in attrs if n.startswith("on")]
    failed = [a["data-failed"] for a in dom.having("data-failed")]
    assert failed == [a.encode("utf-8", "backslashreplace").decode("utf-8") for a in ATTACKS]
