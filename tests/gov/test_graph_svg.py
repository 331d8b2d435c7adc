"""Task graphs drawn by Graphviz: the DOT text (always tested), SVG and PNG (tested with dot).

Over 400 lines on purpose: the DOT text, the errors without Graphviz, the command line and the
drawings are one feature, tested in one place.
"""

from __future__ import annotations

import html
import re
import shutil
import stat
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from aegis_gov import (
    AegisError,
    CyclicDependencyError,
    GraphvizError,
    GraphvizNotFoundError,
    Task,
    TaskState,
    UnknownDependencyError,
    graph_dot,
    render_graph,
)
from aegis_gov._cli import main
from aegis_graph import UnknownTaskError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SVG = "{http://www.w3.org/2000/svg}"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="Graphviz's dot is not installed (apt-get install graphviz; nox installs it)",
)

ARTICLE = [
    Task("research", agent="researcher"),
    Task("draft", agent="writer", depends_on=["research"]),
    Task("translate", agent="translator", depends_on=["draft"]),
    Task("publish", agent="publisher", depends_on=["draft"]),
]

# ---------------------------------------------------------------- the DOT text (no Graphviz)

NODE_LINE = re.compile(r'  t(\d+) \[label="((?:[^"\\]|\\.)*)"(.*)\];')
EDGE_LINE = re.compile(r"  t(\d+) -> t(\d+);")


def _unescape_label(label: str) -> str:
    r"""What Graphviz shows for a quoted label: only ``\\``, ``\n`` and entities may appear."""
    tokens = re.findall(r"\\\\|\\n|\\|[^\\]", label)
    assert "\\" not in tokens, label  # a lone backslash would be a Graphviz escape
    text = "".join({"\\\\": "\\", "\\n": "\n"}.get(token, token) for token in tokens)
    return html.unescape(text)


def _showable(text: str) -> str:
    """The id as a drawing shows it: control characters and surrogates as Python escapes."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in {"Cc", "Cs"} or ch in "\ufffe\uffff"
        else ch
        for ch in text
    )


def _nodes_and_edges(dot: str) -> tuple[dict[int, tuple[str, str]], list[tuple[int, int]]]:
    nodes: dict[int, tuple[str, str]] = {}
    edges: list[tuple[int, int]] = []
    for line in dot.splitlines():
        if node := NODE_LINE.fullmatch(line):
            nodes[int(node[1])] = (node[2], node[3])
        elif edge := EDGE_LINE.fullmatch(line):
            edges.append((int(edge[1]), int(edge[2])))
    return nodes, edges


def test_dot_has_one_box_per_task_and_one_arrow_per_dependency() -> None:
    dot = graph_dot(ARTICLE)
    assert dot.startswith("digraph pipeline {\n")
    assert dot.endswith("}\n")
    nodes, edges = _nodes_and_edges(dot)
    assert [_unescape_label(label) for label, _ in nodes.values()] == [t.id for t in ARTICLE]
    assert edges == [(0, 1), (1, 2), (1, 3)]
    assert "legend" not in dot
    assert 'fillcolor="#d8f0dc"' not in dot  # no state, no colour


def test_titles_are_a_second_line() -> None:
    nodes, _ = _nodes_and_edges(graph_dot(ARTICLE, titles={"draft": "[writer]"}))
    assert _unescape_label(nodes[1][0]) == "draft\n[writer]"
    assert _unescape_label(nodes[0][0]) == "research"


def test_states_colour_the_boxes_and_the_legend_lists_the_states_shown() -> None:
    states = {"research": TaskState.DONE, "draft": TaskState.FAILED, "translate": "skipped"}
    dot = graph_dot(ARTICLE, states=states)  # type: ignore[arg-type]  # a str value works too
    nodes, _ = _nodes_and_edges(dot)
    assert 'fillcolor="#d8f0dc"' in nodes[0][1]  # done: green
    assert 'color="#c62828"' in nodes[1][1]  # failed: red, thick border
    assert "penwidth" in nodes[1][1]
    assert "dashed" in nodes[2][1]  # skipped: dashed grey
    assert 'fillcolor="#ffffff"' in nodes[3][1]  # left out: pending
    legend = next(line for line in dot.splitlines() if line.startswith("  legend "))
    assert re.findall(r">(\w+)</TD>", legend) == ["pending", "done", "failed", "skipped"]
    assert '  { rank="sink"; legend; }' in dot


def test_running_is_blue_in_the_legend_too() -> None:
    dot = graph_dot([Task("a")], states={"a": TaskState.RUNNING})
    assert re.findall(r">(\w+)</TD>", dot) == ["running"]
    assert 'fillcolor="#d6e6f8"' in dot


@pytest.mark.parametrize(
    ("task_id", "label"),
    [
        ('say "hi"', "say &quot;hi&quot;"),
        ("back\\slash", "back\\\\slash"),
        ("\\N is the node name", "\\\\N is the node name"),
        ("a<b>&c", "a&lt;b&gt;&amp;c"),
        ("&amp;", "&amp;amp;"),
        ("two\nlines", "two\\\\nlines"),  # one line: the newline shown as \n
        ("bell\x07", "bell\\\\x07"),
        ("lone\ud800", "lone\\\\ud800"),
        ('x"]; evil [shape=star]; y [label="', "x&quot;]; evil [shape=star]; y [label=&quot;"),
        ("中文 🙂", "中文 🙂"),
    ],
)
def test_labels_are_escaped(task_id: str, label: str) -> None:
    nodes, _ = _nodes_and_edges(graph_dot([Task(task_id)]))
    assert nodes == {0: (label, "")}


# Any code point, lone surrogates included, and often the characters DOT and XML treat apart.
_CHARS = st.one_of(st.characters(exclude_categories=()), st.sampled_from('"\\<>&;#[]{}=\n\t -N'))


def _graphs() -> st.SearchStrategy[list[Task]]:
    """Graphs of arbitrary unique ids, each task depending on some of the ones before it."""

    @st.composite
    def build(draw: st.DrawFn) -> list[Task]:
        ids = draw(st.lists(st.text(_CHARS, min_size=1, max_size=12), min_size=1, max_size=6))
        ids = list(dict.fromkeys(ids))
        tasks = []
        for number, task_id in enumerate(ids):
            deps = draw(st.lists(st.sampled_from(ids[:number]), unique=True)) if number else []
            tasks.append(Task(task_id, depends_on=deps))
        return tasks

    return build()


@given(_graphs())
def test_any_id_is_one_quoted_label_and_nothing_else(tasks: list[Task]) -> None:
    dot = graph_dot(tasks, states={tasks[0].id: TaskState.FAILED}, titles={tasks[-1].id: "x"})
    lines = dot.splitlines()
    # Every line is a known shape: an id cannot open a line, an attribute or a node of its own.
    body = [line for line in lines[4:-1] if not line.startswith(("  legend ", "  { rank"))]
    assert all(NODE_LINE.fullmatch(line) or EDGE_LINE.fullmatch(line) for line in body), body
    nodes, edges = _nodes_and_edges(dot)
    assert len(nodes) == len(tasks)
    for number, task in enumerate(tasks):
        expected = _showable(task.id) + ("\nx" if number == len(tasks) - 1 else "")
        assert _unescape_label(nodes[number][0]) == expected
    index = {task.id: number for number, task in enumerate(tasks)}
    assert sorted(edges) == sorted((index[d], index[t.id]) for t in tasks for d in t.depends_on)


def test_bad_input_is_refused_with_the_culprit_named() -> None:
    with pytest.raises(UnknownDependencyError, match="'nope'"):
        graph_dot([Task("a", depends_on=["nope"])])
    with pytest.raises(CyclicDependencyError):
        graph_dot([Task("a", depends_on=["b"]), Task("b", depends_on=["a"])])
    with pytest.raises(UnknownTaskError, match="'ghost'"):
        graph_dot(ARTICLE, states={"ghost": TaskState.DONE})
    with pytest.raises(UnknownTaskError, match="'ghost'"):
        graph_dot(ARTICLE, titles={"ghost": "x"})
    with pytest.raises(ValueError, match="'finished'"):
        graph_dot(ARTICLE, states={"draft": "finished"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="'pdf'"):
        render_graph(ARTICLE, fmt="pdf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_s"):
        render_graph(ARTICLE, timeout_s=0)


# ---------------------------------------------------------------- without Graphviz


def _fake_dot(folder: Path, script: str) -> Path:
    folder.mkdir()
    dot = folder / "dot"
    dot.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    dot.chmod(dot.stat().st_mode | stat.S_IXUSR)
    return folder


def test_missing_dot_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GraphvizNotFoundError, match="apt-get install graphviz") as caught:
        render_graph(ARTICLE)
    assert isinstance(caught.value, GraphvizError)
    assert isinstance(caught.value, AegisError)
    assert caught.value.returncode is None


def test_dot_failing_is_a_graphviz_error_with_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "PATH", str(_fake_dot(tmp_path / "bin", "echo 'Error: out of ink' >&2; exit 3"))
    )
    with pytest.raises(GraphvizError, match="status 3: Error: out of ink") as caught:
        render_graph(ARTICLE)
    assert not isinstance(caught.value, GraphvizNotFoundError)
    assert caught.value.returncode == 3
    assert caught.value.stderr == "Error: out of ink"


def test_dot_that_cannot_start_is_reported_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _fake_dot(tmp_path / "bin", "")
    (folder / "dot").write_text("#!/nonexistent/interpreter\n", encoding="utf-8")
    monkeypatch.setenv("PATH", str(folder))
    with pytest.raises(GraphvizNotFoundError, match="could not be started") as caught:
        render_graph(ARTICLE)
    assert "apt-get install graphviz" in str(caught.value)


def test_dot_warnings_do_not_fail_the_drawing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cat = shutil.which("cat")
    script = f"{cat} >/dev/null; echo '<svg/>'; echo 'Warning: no such font' >&2"
    monkeypatch.setenv("PATH", str(_fake_dot(tmp_path / "bin", script)))
    with caplog.at_level("DEBUG", logger="aegis_gov._graph_svg"):
        assert render_graph(ARTICLE) == b"<svg/>\n"
    assert "dot warned: Warning: no such font" in caplog.text


def test_dot_writing_nothing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "PATH", str(_fake_dot(tmp_path / "bin", f"{shutil.which('cat')} >/dev/null; exit 0"))
    )
    with pytest.raises(GraphvizError, match="wrote nothing"):
        render_graph(ARTICLE, fmt="png")


def test_dot_running_past_the_timeout_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake never finishes; the error comes from the timeout, whatever the machine's speed.
    monkeypatch.setenv(
        "PATH", str(_fake_dot(tmp_path / "bin", f"exec {shutil.which('sleep')} 600"))
    )
    with pytest.raises(GraphvizError, match=r"did not finish within 0\.2 s") as caught:
        render_graph(ARTICLE, timeout_s=0.2)
    assert caught.value.returncode is None


def test_cli_without_dot_prints_one_line_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["graph", str(EXAMPLES / "article.toml"), "--format", "svg"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("aegis: error: Graphviz's 'dot' program was not found on PATH")
    assert "apt-get install graphviz" in lines[0]


def test_cli_png_needs_an_output_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(EXAMPLES / "article.toml"), "--format", "png"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "aegis: error: --format png needs -o FILE (a PNG is not written to a terminal)\n"
    )


@pytest.mark.parametrize("fmt", ["svg", "png", "both"])
def test_cli_on_a_broken_pipeline_gives_the_usual_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    broken = tmp_path / "cycle.toml"
    broken.write_text(
        '[[agents]]\nname = "a"\n[[tasks]]\nid = "x"\ndepends_on = ["y"]\n'
        '[[tasks]]\nid = "y"\ndepends_on = ["x"]\n',
        encoding="utf-8",
    )
    out = tmp_path / "graph.out"
    assert main(["graph", str(broken), "--format", fmt, "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"aegis: error: {broken}: task 'x': dependency cycle: x -> y -> x "
        "(each task depends on the next)\n"
    )
    assert not out.exists()


def test_cli_unwritable_output_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "graph.svg"
    assert (
        main(["graph", str(EXAMPLES / "article.toml"), "--format", "svg", "-o", str(target)]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"aegis: error: {target}: cannot write the graph there: no such dir")


def test_cli_text_formats_can_go_to_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "graph.mmd"
    assert (
        main(["graph", str(EXAMPLES / "article.toml"), "--format", "mermaid", "-o", str(target)])
        == 0
    )
    assert capsys.readouterr().out == ""
    assert target.read_text(encoding="utf-8").startswith("flowchart TD\n")


# ---------------------------------------------------------------- drawn by Graphviz


def _svg_nodes(svg: bytes) -> tuple[dict[str, list[str]], list[str], ET.Element]:
    """The node groups (title -> its text lines) and edge titles of a Graphviz SVG."""
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    assert root.tag == f"{SVG}svg"
    nodes: dict[str, list[str]] = {}
    edges: list[str] = []
    for group in root.iter(f"{SVG}g"):
        title = group.findtext(f"{SVG}title")
        assert title is not None
        if group.get("class") == "node":
            nodes[title] = [t.text or "" for t in group.iter(f"{SVG}text")]
        elif group.get("class") == "edge":
            edges.append(title)
    return nodes, edges, root


def _as_drawn(text: str) -> str:
    # Graphviz writes a space after a space as a no-break space, so the text keeps its width.
    return text.replace("\xa0", " ")


@needs_dot
def test_svg_has_one_node_per_task_and_an_edge_per_dependency() -> None:
    svg = render_graph(ARTICLE, titles={"draft": "[writer]"})
    assert svg.lstrip().startswith(b"<?xml")
    nodes, edges, _ = _svg_nodes(svg)
    assert nodes == {
        "t0": ["research"],
        "t1": ["draft", "[writer]"],
        "t2": ["translate"],
        "t3": ["publish"],
    }
    assert sorted(edges) == ["t0->t1", "t1->t2", "t1->t3"]


@needs_dot
def test_svg_colours_by_state_with_a_legend() -> None:
    svg = render_graph(
        ARTICLE,
        states={
            "research": TaskState.DONE,
            "draft": TaskState.FAILED,
            "translate": TaskState.SKIPPED,
            "publish": TaskState.SKIPPED,
        },
    )
    nodes, _, root = _svg_nodes(svg)
    assert nodes["legend"] == ["done", "failed", "skipped"]
    strokes = {
        group.findtext(f"{SVG}title"): [p.get("stroke") for p in group.iter(f"{SVG}path")]
        for group in root.iter(f"{SVG}g")
        if group.get("class") == "node" and group.findtext(f"{SVG}title") != "legend"
    }
    assert strokes["t0"] == ["#2e7d32"]
    assert strokes["t1"] == ["#c62828"]
    assert strokes["t2"] == strokes["t3"] == ["#9e9e9e"]


@needs_dot
def test_png_is_a_png() -> None:
    png = render_graph(ARTICLE, fmt="png", states={"research": TaskState.DONE})
    assert png.startswith(PNG_SIGNATURE)
    assert b"IEND" in png[-12:]


@needs_dot
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_graphs())
def test_dot_draws_any_ids_as_their_labels(tasks: list[Task]) -> None:
    svg = render_graph(tasks, states=dict.fromkeys((t.id for t in tasks), TaskState.DONE))
    nodes, edges, _ = _svg_nodes(svg)
    assert nodes.pop("legend") == ["done"]
    assert len(nodes) == len(tasks)
    for number, task in enumerate(tasks):
        assert [_as_drawn(line) for line in nodes[f"t{number}"]] == [_as_drawn(_showable(task.id))]
    assert len(edges) == sum(len(task.depends_on) for task in tasks)


@needs_dot
def test_cli_draws_svg_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(EXAMPLES / "article.toml"), "--format", "svg"]) == 0
    nodes, edges, _ = _svg_nodes(capsys.readouterr().out.encode("utf-8"))
    assert nodes["t0"] == ["research", "[researcher]"]
    assert len(nodes) == 4
    assert len(edges) == 3


@needs_dot
def test_cli_writes_png_to_the_output_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "graph.png"
    assert (
        main(["graph", str(EXAMPLES / "article.toml"), "--format", "png", "-o", str(target)]) == 0
    )
    assert capsys.readouterr().out == ""
    assert target.read_bytes().startswith(PNG_SIGNATURE)
