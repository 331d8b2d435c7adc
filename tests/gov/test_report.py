"""``aegis report`` and ``render_report``: what the page says, and that nothing from a run
can inject markup into it.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import attrs
import pytest
from aegis_adapters import Usage
from aegis_gov import (
    Checkpoint,
    Price,
    RunInfo,
    RunResult,
    TaskResult,
    Timeline,
    TimelineEntry,
    render_report,
)
from aegis_gov._cli import main
from aegis_gov._report import build_report
from aegis_graph import SkipReason, TaskState

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = "openai|http://user:sk-SECRET@localhost:1234/v1|gpt-4o-mini"
BACKUP = "ollama|http://localhost:11434|llama3"


def article(
    *, timeline: bool = True, task_id: str = "fact_check", output: str = "fine"
) -> RunResult:
    """The article pipeline with a failing branch, every time known exactly."""
    e = TimelineEntry
    entries = [
        e(0.0, "started", "research", attempt=1),
        e(0.0, "started", task_id, attempt=1),
        e(0.5, "retrying", "research", attempt=2, delay_s=1.0, error="HTTP 429"),
        e(0.6, "failed", task_id, error="boom"),
        e(0.6, "skipped", "cite"),
        e(0.5, "circuit", KEY, state="open", previous_state="closed"),
        e(1.5, "circuit", KEY, state="half_open", previous_state="open"),
        e(2.0, "circuit", KEY, state="closed", previous_state="half_open"),
        e(2.0, "succeeded", "research"),
        e(2.5, "started", "draft", attempt=1),
        e(3.0, "fell_back", "draft", endpoint=BACKUP, error="HTTP 503"),
        e(4.0, "succeeded", "draft"),
    ]
    graph = {"research": [], "draft": ["research"], task_id: [], "cite": [task_id]}
    tasks = {
        "research": TaskResult(
            "research", TaskState.DONE, agent="researcher", output=output,
            usage=Usage(100, 200), attempts=2, duration_s=2.0, endpoint=KEY,
        ),
        "draft": TaskResult(
            "draft", TaskState.DONE, agent="writer", output="draft text",
            usage=Usage(10, 20), attempts=2, duration_s=1.5, endpoint=BACKUP,
        ),
        task_id: TaskResult(
            task_id, TaskState.FAILED, agent="checker", error="boom",
            error_type="ModelNotFoundError", attempts=1, duration_s=0.6,
        ),
        "cite": TaskResult(
            "cite", TaskState.SKIPPED, agent="checker", blamed=task_id,
            skip_reason=SkipReason.UPSTREAM_FAILED,
        ),
    }  # fmt: skip
    return RunResult(
        tasks,
        team="article",
        run_id="20261202-120000-abcdef",
        timeline=Timeline(entries, graph, {"gpt-4o-mini": Price(1.0, 2.0)}) if timeline else None,
    )


def test_each_task_gets_its_waits_and_spans() -> None:
    report = build_report(article())
    lines = {line.task_id: line for line in report.tasks}
    research, draft = lines["research"], lines["draft"]
    assert [(s.kind, s.start_s, s.end_s) for s in research.spans] == [
        ("running", 0.0, 0.5),
        ("retrying", 0.5, 1.5),
        ("running", 1.5, 2.0),
    ]
    assert research.retry_wait_s == 1.0
    assert draft.ready_s == 2.0
    assert draft.waited_s == 0.5  # ready at 2.0, started at 2.5
    assert [s.kind for s in draft.spans] == ["blocked", "waiting", "running", "fallback"]
    assert draft.fell_back_to == (BACKUP,)
    assert lines["cite"].spans[0].kind == "blocked"
    assert lines["cite"].ended_s == 0.6


def test_breaker_states_cover_the_run() -> None:
    report = build_report(article())
    (line,) = [e for e in report.endpoints if e.key == KEY]
    assert [(s.kind, s.start_s, s.end_s) for s in line.spans] == [
        ("closed", 0.0, 0.5),
        ("open", 0.5, 1.5),
        ("half_open", 1.5, 2.0),
        ("closed", 2.0, 4.0),
    ]
    assert "SECRET" not in line.name


def test_usage_and_cost_per_agent_and_endpoint() -> None:
    report = build_report(article())
    agents = {u.name: u for u in report.agents_usage}
    assert agents["researcher"].usage == Usage(100, 200)
    assert agents["researcher"].cost_usd == pytest.approx(500 / 1_000_000)
    assert agents["writer"].cost_usd is None  # llama3 has no price
    endpoints = {u.name: u for u in report.endpoints_usage}
    assert endpoints[BACKUP].usage == Usage(10, 20)


def _text(page: str) -> str:
    return re.sub(r"<[^>]+>", " ", page)


def test_the_page_shows_the_failure_its_victims_and_their_waits() -> None:
    page = render_report(article())
    glance = page[page.index("id='glance'") : page.index("id='graph'")]
    assert "data-failed='fact_check'" in glance
    assert "data-victim='cite'" in glance
    assert "waited 0.60 s" in _text(glance)
    assert "data-task='cite' data-state='skipped' data-blamed='fact_check'" in page
    assert page.count("class='tl-row'") == 4
    assert "SECRET" not in page


def test_the_page_without_a_timeline_says_so_and_still_shows_the_rest() -> None:
    page = render_report(article(timeline=False))
    assert "id='no-timeline'" in page
    assert "data-blamed='fact_check'" in page
    assert "researcher" in page
    assert "class='tl-row'" not in page
    assert "was not recorded with this result" in page


def test_a_given_graph_is_used_when_the_result_has_none() -> None:
    graph = {"research": [], "draft": ["research"], "fact_check": [], "cite": ["fact_check"]}
    report = build_report(article(timeline=False), dependencies=graph)
    assert report.has_graph
    assert {line.task_id: line.dependencies for line in report.tasks}["cite"] == ("fact_check",)


def test_without_graphviz_the_graph_is_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    page = render_report(article())
    assert "Graphviz is not installed" in page
    assert "<ul class='graph-list'>" in page
    assert "<li data-task='cite' data-state='skipped'>" in page


ATTACKS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "</title></svg><iframe src=//evil.example>",
    "&lt;b&gt;",
    "x\ud800y",  # a lone surrogate
]


class _Elements(HTMLParser):
    """Every element and attribute of a page, and its text, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _value in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.parametrize("attack", ATTACKS)
def test_nothing_from_the_run_can_inject_markup(attack: str) -> None:
    page = render_report(article(task_id=attack, output=attack))
    page.encode("utf-8")  # writable as UTF-8, a lone surrogate included
    parsed = _Elements()
    parsed.feed(page)
    assert not parsed.tags & {"script", "img", "iframe", "object", "embed", "link", "base"}
    assert not [name for name in parsed.attributes if name.startswith("on")]
    shown = "".join(parsed.text)
    assert attack.encode("utf-8", "backslashreplace").decode("utf-8") in shown  # as text
    assert "default-src 'none'" in page


def test_the_page_has_no_script_and_fetches_nothing() -> None:
    page = render_report(article())
    assert "<script" not in page
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)
    assert "@import" not in page
    assert "url(http" not in page


# -- the command ---------------------------------------------------------------------------


def test_aegis_run_records_and_aegis_report_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result_file, page = tmp_path / "r.json", tmp_path / "r.html"
    store = str(tmp_path / "runs.db")
    pipeline = str(EXAMPLES / "failure-cascade.toml")
    assert (
        main(["run", pipeline, "--plain", "--output", str(result_file), "--checkpoint", store]) == 1
    )
    data = json.loads(result_file.read_text(encoding="utf-8"))
    assert data["timeline"]["dependencies"]["process"] == ["fetch"]
    assert main(["report", str(result_file), "-o", str(page)]) == 0
    assert "with its timeline" in capsys.readouterr().out
    html = page.read_text(encoding="utf-8")
    assert "data-failed='fetch'" in html
    assert html.count("data-blamed='fetch'") == 2
    from_store = tmp_path / "s.html"
    assert main(["report", "last", "--checkpoint", store, "-o", str(from_store)]) == 0
    assert "class='tl-row'" in from_store.read_text(encoding="utf-8")


def test_aegis_report_of_an_old_file_takes_the_graph_from_the_pipeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps(article(timeline=False).to_dict()), encoding="utf-8")
    pipeline = tmp_path / "article.toml"
    pipeline.write_text(
        '[[agents]]\nname = "w"\nprovider = "echo"\n'
        "[budget]\nmax_total_tokens = 100000\n"
        '[budget.prices."gpt-4o-mini"]\ninput_per_million_usd = 1.0\n'
        "output_per_million_usd = 2.0\n"
        + "".join(
            f'[[tasks]]\nid = "{task}"\ndescription = "d"\nagent = "w"\n'
            f"depends_on = {deps!r}\n".replace("'", '"')
            for task, deps in (
                ("research", []),
                ("draft", ["research"]),
                ("fact_check", []),
                ("cite", ["fact_check"]),
            )
        ),
        encoding="utf-8",
    )
    bare, with_graph = tmp_path / "bare.html", tmp_path / "graph.html"
    assert main(["report", str(old), "-o", str(bare)]) == 0
    assert "no timeline recorded" in capsys.readouterr().out
    assert "id='no-timeline'" in bare.read_text(encoding="utf-8")
    assert "was not recorded with this result" in bare.read_text(encoding="utf-8")
    assert main(["report", str(old), "--pipeline", str(pipeline), "-o", str(with_graph)]) == 0
    page = with_graph.read_text(encoding="utf-8")
    assert "was not recorded with this result" not in page
    assert "$0.0005" in page  # researcher: 100 in, 200 out at $1 and $2 per million


def test_aegis_report_refuses_a_bad_pipeline_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "r.json"
    good.write_text(article().to_json(), encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[tasks]\n", encoding="utf-8")
    assert main(["report", str(good), "--pipeline", str(bad), "-o", str(tmp_path / "x.html")]) == 2
    assert "bad.toml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json"], "missing.json: cannot read the result"),
        (["no-such-run"], "no-such-run: no such result file, and no checkpoint store"),
    ],
)
def test_aegis_report_explains_what_it_cannot_read(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", *args, "-o", "x.html", "--checkpoint", "none.db"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_aegis_report_names_the_bad_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    task = {"task_id": "a", "status": "done", "attempts": -1}
    bad.write_text(json.dumps({"format": 1, "tasks": [task], "timeline": {"entries": 3}}))
    assert main(["report", str(bad), "-o", str(tmp_path / "x.html")]) == 2
    assert "tasks[0].attempts: must be a whole number" in capsys.readouterr().err


def test_aegis_report_says_when_the_page_cannot_be_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "r.json"
    good.write_text(article().to_json(), encoding="utf-8")
    assert main(["report", str(good), "-o", str(tmp_path / "missing" / "x.html")]) == 3
    assert "cannot write" in capsys.readouterr().err


def test_a_doctored_graph_with_a_cycle_is_listed_not_drawn() -> None:
    result = article()
    assert result.timeline is not None
    cyclic = Timeline(result.timeline.entries, {"research": ["draft"], "draft": ["research"]})
    page = render_report(attrs.evolve(result, timeline=cyclic), dependencies={})
    assert "could not be drawn" in page or "does not name every task" in page
    full = {"research": ["draft"], "draft": ["research"], "fact_check": [], "cite": []}
    page = render_report(attrs.evolve(result, timeline=Timeline(result.timeline.entries, full)))
    assert "could not be drawn" in page
    assert "<ul class='graph-list'>" in page


def test_a_task_kept_by_a_resume_shows_as_kept_without_spans() -> None:
    result = article()
    assert result.timeline is not None
    kept = TaskResult("old", TaskState.DONE, agent="writer", output="from before")
    resumed = RunResult({"old": kept, **result.results}, timeline=result.timeline)
    lines = {line.task_id: line for line in build_report(resumed).tasks}
    assert lines["old"].state == "kept"
    assert lines["old"].spans == ()
    assert "data-task='old' data-state='kept'" in render_report(resumed)


def test_a_killed_run_from_the_store_shows_its_unfinished_tasks(tmp_path: Path) -> None:
    with Checkpoint(tmp_path / "runs.db") as store:
        store.begin(RunInfo("run-1", "p.toml", "t", 0.0), ["a", "b", "c"], [])
        store.record("run-1", [TaskResult("a", TaskState.DONE, agent="w", output="x")])
        result = store.load("run-1")
    page = render_report(result)
    assert "id='no-timeline'" in page
    assert "<tr class='unfinished' data-task='b' data-state='unfinished'>" in page
    assert 'data-count="unfinished"' in page


def test_aegis_demo_records_its_timeline_for_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, page = tmp_path / "demo.json", tmp_path / "demo.html"
    args = ["demo", "--offline", "--plain", "--no-outputs", "--output", str(out)]
    assert main(args) == 0
    result = RunResult.from_json(out.read_bytes())
    assert result.timeline is not None
    assert result.timeline.dependencies["cite_sources"] == ("fact_check",)
    assert main(["report", str(out), "-o", str(page)]) == 0
    capsys.readouterr()
    assert "data-victim='cite_sources'" in page.read_text(encoding="utf-8")
