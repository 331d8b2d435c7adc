"""Fuzzing what the aegis command reads: pipeline files, ``--resume`` files, the command itself.

The contract under test: bad input raises only the documented error (``PipelineError``,
``ResultFormatError``) or, through the command, ends with exit 2 and one line on stderr.
Any other exception, a traceback, or a second line is a failure. Examples are kept few
enough that each test takes seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import string
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from aegis_gov import ResultFormatError, RunResult, TaskResult, TaskState, ToolCallRecord
from aegis_gov._cli import main
from aegis_gov._pipeline import PipelineError, parse_pipeline
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st


def fuzz(max_examples: int) -> settings:
    """Settings for one fuzz test: ``max_examples`` sized so that it takes a few seconds."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# -- a small TOML writer: every value inline, so any nesting can be expressed -------------


def toml_value(value: object) -> str:  # noqa: PLR0911  # one return per TOML type
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_string(text: str) -> str:
    """A TOML basic string; a lone surrogate (not a Unicode scalar value) becomes ``?``."""
    out = []
    for char in text:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            out.append("?")
        elif char in {'"', "\\"} or code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_document(table: Mapping[str, object]) -> str:
    return "".join(f"{toml_string(key)} = {toml_value(value)}\n" for key, value in table.items())


# -- strategies ---------------------------------------------------------------------------

SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.dates(),
    st.datetimes(),
    st.times(),
)
ANY_TOML = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
# Numbers a pipeline accepts, kept small so a run stays fast, and numbers it must refuse.
GOOD_SECONDS = st.floats(min_value=0.0, max_value=0.01)
BAD_NUMBERS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -1, 0, 2**63, 10**20, 1e300, True, "3"]),
    ANY_TOML,
)
IDS = st.sampled_from(["a", "b", "c", "d", "e"])


def maybe(
    strategy: st.SearchStrategy[object], other: st.SearchStrategy[object] = BAD_NUMBERS
) -> st.SearchStrategy[object]:
    """Mostly ``strategy``, one time in eight something hostile."""
    return st.integers(0, 7).flatmap(lambda pick: other if pick == 0 else strategy)


REPLIES = st.lists(
    st.one_of(
        st.text(max_size=20),
        st.fixed_dictionaries({"text": st.text(max_size=10)}),
        st.fixed_dictionaries(
            {"error": st.sampled_from(["rate_limit", "unavailable", "auth", "invalid", "boom"])},
            optional={"retry_after_s": maybe(GOOD_SECONDS), "message": maybe(st.text(max_size=8))},
        ),
        st.fixed_dictionaries(
            {
                "tool_calls": st.lists(
                    st.fixed_dictionaries(
                        {"name": st.sampled_from(["memory_store", "memory_retrieve"])},
                        optional={
                            "arguments": maybe(
                                st.dictionaries(st.text(max_size=5), ANY_TOML, max_size=3), ANY_TOML
                            )
                        },
                    ),
                    max_size=2,
                )
            }
        ),
    ),
    max_size=3,
)
AGENTS = st.lists(
    st.fixed_dictionaries(
        {"name": maybe(IDS, ANY_TOML), "provider": st.sampled_from(["echo", "scripted"])},
        optional={
            "replies": REPLIES,
            "delay_s": maybe(GOOD_SECONDS),
            "timeout_s": maybe(st.floats(min_value=1.0, max_value=60.0)),
            "temperature": maybe(st.floats(min_value=0.0, max_value=2.0)),
            "max_tokens": maybe(st.integers(1, 4096)),
            "max_tool_rounds": maybe(st.integers(1, 4)),
            "tools": maybe(
                st.lists(st.sampled_from(["memory_store", "memory_retrieve"]), unique=True),
                ANY_TOML,
            ),
            "system_prompt": maybe(st.text(max_size=10)),
            "model": maybe(st.text(max_size=10)),
        },
    ),
    min_size=1,
    max_size=3,
)
TASKS = st.lists(
    st.fixed_dictionaries(
        {"id": maybe(IDS, ANY_TOML)},
        optional={
            "agent": maybe(IDS, ANY_TOML),
            "description": maybe(st.text(max_size=20)),
            "depends_on": maybe(st.lists(IDS, max_size=3), ANY_TOML),
        },
    ),
    min_size=1,
    max_size=5,
)
PIPELINES = st.fixed_dictionaries(
    {"agents": maybe(AGENTS, ANY_TOML), "tasks": maybe(TASKS, ANY_TOML)},
    optional={
        "name": maybe(st.text(max_size=8)),
        "stop_on_failure": maybe(st.booleans()),
        "max_concurrent": maybe(st.integers(1, 8)),
        "retry": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "max_attempts": maybe(st.integers(1, 3)),
                    "initial_delay_s": maybe(st.floats(min_value=0.001, max_value=0.01)),
                    "multiplier": maybe(st.floats(min_value=0.5, max_value=3.0)),
                    "max_delay_s": maybe(st.floats(min_value=0.01, max_value=0.05)),
                    "max_total_delay_s": maybe(GOOD_SECONDS),
                },
            ),
            ANY_TOML,
        ),
        "breaker": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "consecutive_failure_limit": maybe(st.integers(1, 5)),
                    "recovery_timeout_s": maybe(st.floats(min_value=0.001, max_value=0.01)),
                },
            ),
            ANY_TOML,
        ),
    },
)


def fast(document: dict[str, object]) -> dict[str, object]:
    """``document`` with short retry waits and breaker recoveries where it leaves them out.

    A run through the command then takes milliseconds; hostile values stay as they are.
    """
    fast_values = {
        "retry": {"initial_delay_s": 0.001, "max_delay_s": 0.01, "max_total_delay_s": 0.05},
        "breaker": {"recovery_timeout_s": 0.001},
    }
    out = dict(document)
    for key, defaults in fast_values.items():
        table = out.setdefault(key, {})
        if isinstance(table, dict):
            out[key] = {**defaults, **table}
    return out


def mutate(text: str, data: st.DataObject) -> str:
    """Cut, duplicate or replace a slice of ``text``: mostly broken TOML, sometimes valid."""
    if not text or not data.draw(st.booleans(), label="mutate"):
        return text
    start = data.draw(st.integers(0, len(text) - 1), label="start")
    end = data.draw(st.integers(start, min(len(text), start + 8)), label="end")
    insert = data.draw(st.text(alphabet=string.printable, max_size=6), label="insert")
    return text[:start] + insert + text[end:]


# -- the pipeline reader ------------------------------------------------------------------


def assert_reads_or_refuses(text: str) -> None:
    try:
        pipeline = parse_pipeline(text, path="f.toml")
    except PipelineError as exc:
        event("refused")
        assert str(exc).startswith("f.toml: ")  # noqa: PT017  # either outcome is allowed
        assert "\n" not in str(exc) or "invalid TOML" in str(exc)  # noqa: PT017
        return
    event("accepted")
    # What was accepted must be usable: adapters, pool, and JSON-safe tool arguments.
    pipeline.team()
    pipeline.pool()
    pipeline.queue()
    for agent in pipeline.agents:
        for reply in agent.replies:
            for call in reply.tool_calls:
                json.dumps(dict(call.arguments), allow_nan=False)


@fuzz(300)
@given(document=PIPELINES, data=st.data())
def test_pipeline_reader_accepts_or_names_the_problem(
    document: dict[str, object], data: st.DataObject
) -> None:
    assert_reads_or_refuses(mutate(toml_document(document), data))


@fuzz(200)
@given(text=st.text(max_size=200))
def test_pipeline_reader_on_arbitrary_text(text: str) -> None:
    assert_reads_or_refuses(text)


# -- RunResult.from_json ------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=15,
)
TASK_DICTS = st.fixed_dictionaries(
    {},
    optional={
        key: st.one_of(JSON_VALUES, value)
        for key, value in {
            "task_id": IDS,
            "status": st.sampled_from(["done", "failed", "skipped", "pending", "DONE"]),
            "agent": st.text(max_size=4),
            "output": st.text(max_size=8),
            "error": st.text(max_size=4),
            "usage": st.fixed_dictionaries(
                {"input_tokens": st.integers(-5, 2**64), "output_tokens": JSON_VALUES}
            ),
            "attempts": st.integers(-(2**65), 2**65) | st.floats(allow_nan=False),
            "duration_s": st.floats(allow_nan=False),
            "tool_calls": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "tool": JSON_VALUES | st.text(max_size=4),
                        "arguments": JSON_VALUES,
                        "result": JSON_VALUES,
                    },
                ),
                max_size=2,
            ),
        }.items()
    },
)
RESULT_DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "format": st.sampled_from([1, 1, 1, 2, "1", True, None]),
        "tasks": st.one_of(st.lists(TASK_DICTS, max_size=4), JSON_VALUES),
        "team": JSON_VALUES,
        "cancelled": JSON_VALUES,
    },
)


def assert_parses_or_names_a_field(payload: str | bytes) -> None:
    try:
        result = RunResult.from_json(payload)
    except ResultFormatError as exc:
        event("refused")
        assert isinstance(exc, ValueError)  # noqa: PT017  # either outcome is allowed
        assert exc.problem  # noqa: PT017
        return
    event("accepted")
    # What was accepted writes back and reads again to the same thing.
    assert RunResult.from_json(result.to_json()) == result


@fuzz(300)
@given(document=RESULT_DOCUMENTS | JSON_VALUES, as_bytes=st.booleans())
def test_from_json_accepts_or_names_the_field(document: object, as_bytes: bool) -> None:
    text = json.dumps(document)
    assert_parses_or_names_a_field(text.encode() if as_bytes else text)


@fuzz(200)
@given(payload=st.binary(max_size=100) | st.text(max_size=100))
def test_from_json_on_arbitrary_bytes_and_text(payload: bytes | str) -> None:
    assert_parses_or_names_a_field(payload)


RESULTS = st.builds(
    lambda tasks, team, cancelled: RunResult(
        {t.task_id: t for t in tasks}, team=team, cancelled=cancelled
    ),
    st.lists(
        st.builds(
            TaskResult,
            task_id=st.text(min_size=1, max_size=5),
            status=st.sampled_from([TaskState.DONE, TaskState.FAILED, TaskState.SKIPPED]),
            output=st.none() | st.text(max_size=10),
            attempts=st.integers(0, 2**63 - 1),
            duration_s=st.floats(min_value=0, allow_infinity=False),
            tool_calls=st.lists(
                st.builds(
                    ToolCallRecord,
                    tool=st.text(max_size=5),
                    arguments=st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3),
                    result=st.text(max_size=5),
                ),
                max_size=2,
            ).map(tuple),
        ),
        max_size=4,
        unique_by=lambda t: t.task_id,
    ),
    st.text(max_size=5),
    st.booleans(),
)


@fuzz(200)
@given(result=RESULTS)
def test_every_result_round_trips(result: RunResult) -> None:
    assert RunResult.from_json(result.to_json()) == result
    assert RunResult.from_json(result.to_json().encode("utf-8", "backslashreplace")) == result


# -- the command, end to end --------------------------------------------------------------


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        status = main(args)
    except SystemExit as exc:  # argparse: bad arguments
        assert exc.code == 2  # noqa: PT017  # argparse exits
        status = 2
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def check_outcome(status: int, out: str, err: str, output: Path) -> None:
    event(f"exit status {status}")
    assert "Traceback" not in err
    if status == 2:
        assert err.startswith("aegis: error: ")
        assert err.count("\n") == 1, err
        assert not output.exists()
        return
    assert status in {0, 1}, (status, out, err)
    assert err == ""
    result = RunResult.from_json(output.read_bytes())  # written, and readable
    assert f"result written to {output}" in out
    assert (status == 0) == result.ok


@fuzz(120)
@given(document=PIPELINES, data=st.data())
def test_aegis_run_ends_with_a_result_or_one_line(
    document: dict[str, object], data: st.DataObject, capsys: pytest.CaptureFixture[str]
) -> None:
    text = mutate(toml_document(fast(document)), data)
    resume = data.draw(st.none() | RESULT_DOCUMENTS | st.binary(max_size=30), label="resume")
    with tempfile.TemporaryDirectory() as folder:
        pipeline = Path(folder) / "p.toml"
        pipeline.write_text(text, encoding="utf-8")
        output = Path(folder) / "out.json"
        args = ["run", str(pipeline), "--plain", "--output", str(output)]
        if resume is not None:
            previous = Path(folder) / "prev.json"
            if isinstance(resume, bytes):
                previous.write_bytes(resume)
            else:
                previous.write_text(json.dumps(resume), encoding="utf-8")
            args += ["--resume", str(previous)]
        status, out, err = run_main(args, capsys)
        check_outcome(status, out, err, output)


JSON_ARGUMENTS = st.dictionaries(
    st.sampled_from(["key", "value", "extra"]),
    st.recursive(
        st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=6,
    ),
    max_size=3,
)


@st.composite
def runnable_pipelines(draw: st.DrawFn) -> tuple[dict[str, object], list[str]]:
    """A pipeline that passes validation (so it runs), and its task ids."""
    names = draw(st.lists(IDS, min_size=1, max_size=3, unique=True), label="agents")
    agents: list[dict[str, object]] = []
    for name in names:
        agent: dict[str, object] = {"name": name, "provider": "echo"}
        if draw(st.booleans()):
            calls = st.fixed_dictionaries(
                {
                    "tool_calls": st.lists(
                        st.fixed_dictionaries(
                            {
                                "name": st.sampled_from(["memory_store", "memory_retrieve"]),
                                "arguments": JSON_ARGUMENTS,
                            }
                        ),
                        min_size=1,
                        max_size=2,
                    )
                }
            )
            errors = st.fixed_dictionaries(
                {"error": st.sampled_from(["rate_limit", "unavailable", "auth", "invalid"])}
            )
            agent.update(
                provider="scripted",
                tools=["memory_store", "memory_retrieve"],
                replies=draw(st.lists(st.text(max_size=10) | calls | errors, max_size=4)),
            )
        agents.append(agent)
    ids = draw(st.lists(st.sampled_from("pqrstu"), min_size=1, max_size=5, unique=True))
    tasks = [
        {
            "id": task_id,
            "agent": draw(st.sampled_from(names)),
            "description": draw(st.text(max_size=12)),
            "depends_on": draw(st.lists(st.sampled_from(ids[:k]), unique=True)) if k else [],
        }
        for k, task_id in enumerate(ids)
    ]
    document = {
        "agents": agents,
        "tasks": tasks,
        "max_concurrent": draw(st.integers(1, 4)),
        "stop_on_failure": draw(st.booleans()),
        "retry": {"max_attempts": draw(st.integers(1, 3))},
    }
    return fast(document), ids


@st.composite
def resume_files(draw: st.DrawFn, ids: list[str]) -> object:
    """Nothing, a hostile document, or a result over some of ``ids`` (kept when done)."""
    kind = draw(st.sampled_from(["none", "hostile", "result"]))
    if kind == "none":
        return None
    if kind == "hostile":
        return draw(RESULT_DOCUMENTS | st.binary(max_size=30))
    chosen = draw(st.lists(st.sampled_from(ids), unique=True))
    return RunResult(
        {
            task_id: TaskResult(
                task_id,
                draw(st.sampled_from([TaskState.DONE, TaskState.FAILED, TaskState.SKIPPED])),
                output=draw(st.text(max_size=8)),
            )
            for task_id in chosen
        }
    ).to_dict()


@fuzz(60)
@given(data=st.data())
def test_aegis_run_on_runnable_pipelines(
    data: st.DataObject, capsys: pytest.CaptureFixture[str]
) -> None:
    document, ids = data.draw(runnable_pipelines(), label="pipeline")
    resume = data.draw(resume_files(ids), label="resume")
    with tempfile.TemporaryDirectory() as folder:
        pipeline = Path(folder) / "p.toml"
        pipeline.write_text(toml_document(document), encoding="utf-8")
        output = Path(folder) / "out.json"
        args = ["run", str(pipeline), "--plain", "--output", str(output)]
        if resume is not None:
            previous = Path(folder) / "prev.json"
            if isinstance(resume, bytes):
                previous.write_bytes(resume)
            else:
                previous.write_text(json.dumps(resume), encoding="utf-8")
            args += ["--resume", str(previous)]
        status, out, err = run_main(args, capsys)
        check_outcome(status, out, err, output)


@fuzz(150)
@given(
    args=st.lists(
        st.sampled_from(
            ["--max-concurrent", "--cancel-grace", "--stop-on-failure", "--provider", "--model"]
        )
        | st.sampled_from(["0", "1", "1025", "nan", "-1", "1e400", "echo", "gemini", "x"]),
        max_size=4,
    )
)
def test_aegis_run_arguments_end_with_a_result_or_one_line(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        pipeline = Path(folder) / "p.toml"
        pipeline.write_text(
            '[[agents]]\nname = "a"\nprovider = "echo"\n[[tasks]]\nid = "t"\n', encoding="utf-8"
        )
        output = Path(folder) / "out.json"
        status, out, err = run_main(
            ["run", str(pipeline), "--plain", "--output", str(output), *args], capsys
        )
        if status == 2 and err.startswith("usage:"):
            return  # argparse's own two-line usage message
        check_outcome(status, out, err, output)


@fuzz(6)
@given(
    payload=st.binary(min_size=1, max_size=200)
    | PIPELINES.map(fast).map(toml_document).map(str.encode)
)
def test_aegis_in_a_subprocess_never_shows_a_traceback(payload: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "p.toml").write_bytes(payload)
        proc = subprocess.run(
            [sys.executable, "-m", "aegis_gov._cli", "run", "p.toml", "--plain", "--no-outputs"],
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=120,
            check=False,
            cwd=folder,
        )
    assert "Traceback" not in proc.stderr
    assert proc.returncode in {0, 1, 2}, proc.stderr
    if proc.returncode == 2:
        assert proc.stderr.startswith("aegis: error: ")
        assert proc.stderr.count("\n") == 1
