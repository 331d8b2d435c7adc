"""``RunResult.from_json`` names the bad field of every malformed result; so does ``--resume``."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from types import MappingProxyType

import pytest
from aegis_gov import Price, ResultFormatError, RunResult, TaskResult, TaskState, ToolCallRecord
from aegis_gov._cli import main
from aegis_gov._results import _fast_task
from hypothesis import given
from hypothesis import strategies as st


def document(**task: object) -> str:
    base: dict[str, object] = {"task_id": "t", "status": "done", "output": "x"}
    base.update(task)
    return json.dumps({"format": 1, "tasks": [base]})


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        (
            '{"format": 1, "tasks": [{"task_id": "t", "status": "done", "attempts": 1e400}]}',
            "tasks[0].attempts",
            "whole number",
        ),
        (document(attempts=-1), "tasks[0].attempts", "whole number"),
        (document(attempts=True), "tasks[0].attempts", "got a boolean"),
        (document(attempts=2**64), "tasks[0].attempts", "whole number"),
        (document(duration_s="1"), "tasks[0].duration_s", "finite number"),
        (
            '{"format": 1, "tasks": [{"task_id": "t", "status": "done", "duration_s": 1e999}]}',
            "tasks[0].duration_s",
            "finite number",
        ),
        (
            document(tool_calls=[{"tool": "f", "arguments": [1, 2]}]),
            "tasks[0].tool_calls[0].arguments",
            "must be an object, got an array",
        ),
        (
            document(tool_calls=[{"tool": "f", "arguments": "path=a"}]),
            "tasks[0].tool_calls[0].arguments",
            "must be an object, got the string",
        ),
        (document(tool_calls=[{"arguments": {}}]), "tasks[0].tool_calls[0].tool", "is missing"),
        (document(tool_calls={"tool": "f"}), "tasks[0].tool_calls", "must be an array"),
        (document(tool_calls=["f"]), "tasks[0].tool_calls[0]", "must be an object"),
        (
            document(
                tool_calls=[{"tool": "f", "arguments": {"a": json.loads("[" * 70 + "]" * 70)}}]
            ),
            "tasks[0].tool_calls[0].arguments",
            "nested more than 64 levels",
        ),
        (document(usage=[1]), "tasks[0].usage", "must be an object"),
        (document(usage={"input_tokens": -3}), "tasks[0].usage.input_tokens", "whole number"),
        (document(output=["x"]), "tasks[0].output", "must be a string or null"),
        (document(status="running"), "tasks[0].status", "must be one of 'done'"),
        (document(status=None), "tasks[0].status", "must be a string"),
        (document(task_id=""), "tasks[0].task_id", "must not be empty"),
        (document(task_id=7), "tasks[0].task_id", "must be a string"),
        (
            (
                '{"format": 1, "tasks": [{"task_id": "t", "status": "done"}, '
                '{"task_id": "t", "status": "done"}]}'
            ),
            "tasks[1].task_id",
            "more than once",
        ),
        ('{"format": 1, "tasks": [3]}', "tasks[0]", "must be an object"),
        ('{"format": 1, "tasks": {}}', "tasks", "'tasks' array"),
        ('{"format": true, "tasks": []}', "format", "unsupported run result format True"),
        ('{"format": 2, "tasks": []}', "format", "unsupported"),
        ('{"format": 1, "tasks": [], "cancelled": "yes"}', "cancelled", "true or false"),
        ('{"format": 1, "tasks": [], "team": 5}', "team", "must be a string"),
        ("[]", None, "must be an object, got an array"),
        ("{", None, "not valid JSON"),
        (DEEP, None, "nested too deeply"),
        ('{"format": 1, "tasks": [], "x": NaN}', None, "NaN is not a JSON number"),
        ('{"format": 1, "tasks": [], "x": ' + "9" * 5000 + "}", None, "not valid JSON"),
        (b'{"format": 1, "tasks": [], "team": "\xff"}', None, "not UTF-8 text"),
    ],
)
def test_every_malformed_result_names_its_field(
    text: str | bytes, field: str | None, problem: str
) -> None:
    with pytest.raises(ResultFormatError) as info:
        RunResult.from_json(text)
    assert isinstance(info.value, ValueError)
    assert info.value.field == field
    assert problem in info.value.problem, info.value.problem
    assert str(info.value) == (f"{field}: {info.value.problem}" if field else info.value.problem)
    assert len(str(info.value)) < 500


def test_a_full_result_round_trips() -> None:
    result = RunResult(
        results={
            "a": TaskResult(
                "a",
                TaskState.DONE,
                agent="w",
                output="out\ud800",
                attempts=2,
                duration_s=0.5,
                tool_calls=(
                    ToolCallRecord("file_read", {"path": "x", "n": [1, {"k": None}]}, "r"),
                ),
                fingerprint="abc",
            ),
            "b": TaskResult("b", TaskState.SKIPPED, blamed="a", skip_reason="upstream_failed"),
            "c": TaskResult("c", TaskState.FAILED, error="boom", error_type="X"),
        },
        team="t",
        cancelled=True,
    )
    again = RunResult.from_json(result.to_json())
    assert again == result


@pytest.mark.parametrize("calls", [False, 0, "", {}])
def test_tool_calls_that_are_falsy_but_no_array_are_refused(calls: object) -> None:
    # The one-pass reader took a falsy tool_calls as "none" (found by Hypothesis).
    with pytest.raises(ResultFormatError) as info:
        TaskResult.from_dict({"task_id": "t", "status": "done", "tool_calls": calls})
    assert info.value.field == "tool_calls"
    assert "must be an array" in info.value.problem


def test_task_result_from_dict_names_the_field_alone() -> None:
    with pytest.raises(ResultFormatError) as info:
        TaskResult.from_dict({"task_id": "t", "status": "done", "attempts": 0.5})
    assert info.value.field == "attempts"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe not utf-8", "not UTF-8 text"),
        (
            b'{"format": 1, "tasks": [{"task_id": "t", "status": "done", "attempts": 1e400}]}',
            "tasks[0].attempts: must be a whole number",
        ),
        (DEEP.encode(), "nested too deeply"),
        (
            (
                b'{"format": 1, "tasks": [{"task_id": "t", "status": "done", '
                b'"tool_calls": [{"tool": "f", "arguments": "x"}]}]}'
            ),
            "tasks[0].tool_calls[0].arguments: must be an object",
        ),
    ],
)
def test_resume_from_a_malformed_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(
        '[[agents]]\nname = "a"\nprovider = "echo"\n[[tasks]]\nid = "t"\n', encoding="utf-8"
    )
    resume = tmp_path / "r.json"
    resume.write_bytes(content)
    assert main(["run", str(pipeline), "--resume", str(resume)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"aegis: error: {resume}: not a result written by --output: ")
    assert message in lines[0]


def test_resume_refuses_a_fifo_and_a_huge_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(
        '[[agents]]\nname = "a"\nprovider = "echo"\n[[tasks]]\nid = "t"\n', encoding="utf-8"
    )
    assert main(["run", str(pipeline), "--resume", "/dev/zero"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    big = tmp_path / "big.json"
    with big.open("wb") as stream:
        stream.truncate((64 << 20) + 1)
    assert main(["run", str(pipeline), "--resume", str(big)]) == 2
    assert "larger than the 64 MiB limit" in capsys.readouterr().err


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=2**64),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)
_KEYS = st.sampled_from(
    [
        "task_id", "status", "agent", "output", "error", "error_type", "usage", "attempts",
        "duration_s", "blamed", "skip_reason", "fingerprint", "endpoint", "definition",
        "input_digest", "tool_calls", "value",
    ]
)  # fmt: skip


@given(
    base=st.fixed_dictionaries(
        {
            "task_id": st.text(min_size=1, max_size=4),
            "status": st.sampled_from(["done", "failed", "skipped"]),
            "output": st.one_of(st.none(), st.text(max_size=5)),
            "usage": st.fixed_dictionaries(
                {"input_tokens": st.integers(0, 9), "output_tokens": st.integers(0, 9)}
            ),
            "attempts": st.integers(0, 3),
            "duration_s": st.floats(0, 10),
            "definition": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
        }
    ),
    changes=st.dictionaries(_KEYS, _VALUES, max_size=3),
    usage=st.dictionaries(st.sampled_from(["input_tokens", "output_tokens"]), _VALUES),
)
def test_the_fast_reader_agrees_with_the_field_by_field_one(
    base: dict[str, object], changes: dict[str, object], usage: dict[str, object]
) -> None:
    """Whatever the one-pass reader accepts, the strict reader reads the same way."""
    data = {**base, **changes}
    if usage and isinstance(data.get("usage"), dict):
        data["usage"] = {**data["usage"], **usage}  # type: ignore[dict-item]
    fast = _fast_task(data)
    try:
        strict = _task_from_dict_strict(data)
    except ResultFormatError:
        assert fast is None
        return
    assert fast is None or fast == strict


def _task_from_dict_strict(data: dict[str, object]) -> TaskResult:
    """The strict reader alone: the fast path is turned off by handing it a non-dict mapping."""
    return TaskResult.from_dict(MappingProxyType(data))


_TEXTS = st.text(max_size=6) | st.sampled_from(["\ud800", 'é\n"\\', "\x00", "🙂"])
_TASK_RESULTS = st.builds(
    TaskResult,
    task_id=st.text(min_size=1, max_size=4),
    status=st.sampled_from([TaskState.DONE, TaskState.FAILED, TaskState.SKIPPED]),
    agent=st.none() | _TEXTS,
    output=st.none() | _TEXTS,
    attempts=st.integers(0, 3),
    duration_s=st.floats(0, 10),
    tool_calls=st.lists(
        st.builds(
            ToolCallRecord,
            st.sampled_from(["file_read", "memory_store"]),
            st.dictionaries(_TEXTS, st.none() | st.integers() | _TEXTS, max_size=2),
            _TEXTS,
        ),
        max_size=2,
    ).map(tuple),
)
_RUN_RESULTS = st.builds(
    RunResult,
    results=st.lists(_TASK_RESULTS, max_size=4).map(lambda rs: {r.task_id: r for r in rs}),
    team=_TEXTS,
    cancelled=st.booleans(),
    run_id=st.none() | _TEXTS,
)


@given(result=_RUN_RESULTS, indent=st.sampled_from([None, 2]))
def test_write_json_writes_to_json_text_which_reads_back(
    result: RunResult, indent: int | None
) -> None:
    stream = io.StringIO()
    result.write_json(stream, indent=indent)
    assert stream.getvalue() == result.to_json(indent=indent)
    assert RunResult.from_json(stream.getvalue()) == result


def test_write_json_to_a_file_reads_back_with_a_lone_surrogate(tmp_path: Path) -> None:
    result = RunResult({"a": TaskResult("a", TaskState.DONE, output="x\ud800y")}, team="t")
    path = tmp_path / "r.json"
    with path.open("w", encoding="utf-8", errors="backslashreplace") as stream:
        result.write_json(stream)
    assert RunResult.from_json(path.read_bytes()) == result


def test_write_json_refuses_nan_like_to_json() -> None:
    bad = ToolCallRecord("memory_store", {"value": math.nan}, "ok")
    result = RunResult(
        {
            "a": TaskResult("a", TaskState.DONE, output="fine"),
            "b": TaskResult("b", TaskState.DONE, tool_calls=(bad,)),
        }
    )
    with pytest.raises(ValueError, match="JSON compliant"):
        result.to_json()
    stream = io.StringIO()
    with pytest.raises(ValueError, match="JSON compliant"):
        result.write_json(stream)
    written = stream.getvalue()  # what came before the bad task's batch, as documented
    assert written.endswith('"tasks": [')
    assert '"task_id": "b"' not in written


@pytest.mark.parametrize("path", ["fast", "field by field"])
def test_an_old_result_s_endpoints_read_back_as_endpoints_are_spelled_now(path: str) -> None:
    # Found by an adversarial review: results written when endpoints showed credentials as
    # "***" kept that spelling when read back, so endpoint-keyed prices did not apply and a
    # report showed the one endpoint twice.
    from aegis_adapters import Endpoint  # noqa: PLC0415
    from aegis_gov import Budget  # noqa: PLC0415
    from aegis_gov._display_names import endpoint_display_names  # noqa: PLC0415
    from aegis_gov._report import price_of  # noqa: PLC0415

    old = "openai|http://***@gw.example/v1?api_key=***&api-version=2|m"
    new = Endpoint("openai", "http://u:pw@gw.example/v1?api_key=k&api-version=2", "m").key
    assert new == "openai|http://gw.example/v1?api-version=2|m"
    task: dict[str, object] = {"task_id": "t", "status": "done", "output": "x", "endpoint": old}
    if path == "field by field":
        task["tool_calls"] = [{"tool": "f", "arguments": {}}]
    timeline = {
        "entries": [{"at_s": 0.5, "kind": "fell_back", "subject": "t", "endpoint": old}],
        "dependencies": {"t": []},
        "prices": {old: [1.0, 2.0]},
    }
    text = json.dumps({"format": 1, "tasks": [task], "timeline": timeline})
    result = RunResult.from_json(text)
    assert result["t"].endpoint == new
    assert TaskResult.from_dict(task).endpoint == new  # as a checkpoint store reads a task
    assert result.timeline is not None
    assert [entry.endpoint for entry in result.timeline.entries] == [new]
    assert list(result.timeline.prices) == [new]
    prices = Budget(prices={"openai|http://u:pw@gw.example/v1?api-version=2|m": Price(3, 4)})
    assert price_of(result["t"].endpoint or "", prices.prices) == Price(3, 4)
    assert len(set(endpoint_display_names([result["t"].endpoint or "", new]))) == 1


@pytest.mark.parametrize(
    "url",
    ["http://u:pw@gw.example/v1?tag=a|b&api_key=k", "http://u:pw@gw.example/v1?x=1|m2",
     "http://u:pw@gw.example/v1#a|b", "http://gw.example/a|b/v1?sig=s|t"],
)  # fmt: skip
def test_an_old_endpoint_key_with_a_bar_in_its_url_keeps_its_model(url: str) -> None:
    # Found by an adversarial review (the key is "provider|url|model"; a '|' in the URL
    # must not move the split): written in the old "***" spelling or today's, the key
    # reads back as today's, with its provider and model.
    from aegis_adapters import Endpoint, redact_url  # noqa: PLC0415

    new = Endpoint("openai", url, "gpt-4o").key
    old = f"openai|{redact_url(url)}|gpt-4o"
    for written in (old, new):
        task = {"task_id": "t", "status": "done", "endpoint": written}
        timeline = {"entries": [], "dependencies": {}, "prices": {written: [1.0, 2.0]}}
        result = RunResult.from_json(
            json.dumps({"format": 1, "tasks": [task], "timeline": timeline})
        )
        assert result["t"].endpoint == new
        assert new.endswith("|gpt-4o")
        assert result.timeline is not None
        assert list(result.timeline.prices) == [new]
        assert RunResult.from_json(result.to_json())["t"].endpoint == new  # a round trip


def test_old_price_keys_naming_one_endpoint_now_merge_or_are_refused() -> None:
    # Found by an adversarial review: "http://***@h/v1" and "http://h/v1?api_key=***" are
    # one endpoint now; their prices in an old timeline replaced one another silently.
    first, second = "openai|http://***@h/v1|m", "openai|http://h/v1?api_key=***|m"

    def read(prices: dict[str, list[float]]) -> RunResult:
        timeline = {"entries": [], "dependencies": {}, "prices": prices}
        return RunResult.from_json(json.dumps({"format": 1, "tasks": [], "timeline": timeline}))

    same = read({first: [1.0, 2.0], second: [1.0, 2.0]}).timeline
    assert same is not None
    assert same.prices == {"openai|http://h/v1|m": Price(1.0, 2.0)}
    with pytest.raises(ResultFormatError, match="different values") as info:
        read({first: [1.0, 2.0], second: [3.0, 4.0]})
    assert first in str(info.value)
    assert second in str(info.value)
