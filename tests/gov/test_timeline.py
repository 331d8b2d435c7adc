"""A run's timeline: recorded from events on the facade's clock, saved with the result.

Old result files (no timeline) still load; a malformed timeline is refused naming the field;
the checkpoint store keeps it; a run without a recorder carries none.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from aegis_adapters import ScriptedAdapter, Usage
from aegis_breaker import CircuitState
from aegis_gov import (
    AgentConfig,
    AgentPool,
    Checkpoint,
    CircuitStateChanged,
    ModelNotFoundError,
    OpenMultiAgent,
    Price,
    RateLimitError,
    ResultFormatError,
    RetryPolicy,
    RunResult,
    Task,
    TaskOutputDelta,
    TaskSucceeded,
    Team,
    Timeline,
    TimelineEntry,
    TimelineRecorder,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.gov.conftest import FakeClock

TASKS = [
    Task("research", "Research AI trends", agent="researcher"),
    Task("draft", "Write a draft", agent="writer", depends_on=["research"]),
    Task("fact_check", "Check the facts", agent="checker"),
    Task("cite", "Cite the sources", agent="checker", depends_on=["fact_check"]),
]


def _run(clock: FakeClock, recorder: TimelineRecorder | None) -> RunResult:
    """research is rate limited once (retried after 0.5 s); fact_check fails; cite is skipped."""
    team = Team(
        "t",
        [
            AgentConfig(
                name="researcher",
                adapter=ScriptedAdapter(
                    [RateLimitError("p", "HTTP 429 <b>busy</b>", retry_after_s=0.5), "findings"]
                ),
            ),
            AgentConfig(name="writer", adapter=ScriptedAdapter(["a draft"])),
            AgentConfig(
                name="checker",
                adapter=ScriptedAdapter([ModelNotFoundError("p", "no such model <x>")]),
            ),
        ],
    )
    oma = OpenMultiAgent(
        pool=AgentPool(max_concurrent=4, clock=clock),
        retry=RetryPolicy(max_attempts=2, initial_delay_s=0.001),  # waits the Retry-After
        clock=clock,
        sleep=clock.sleep,
    )
    result = oma.run_tasks(TASKS, team, on_event=recorder)
    return result if recorder is None else recorder.attach(result)


def test_the_recorder_times_each_event_on_the_facades_clock(clock: FakeClock) -> None:
    recorder = TimelineRecorder(TASKS, clock=clock, prices={"m": Price(1.0, 2.0)})
    result = _run(clock, recorder)
    timeline = result.timeline
    assert timeline is not None
    kinds = [(e.kind, e.subject) for e in timeline.entries if e.kind != "circuit"]
    assert ("retrying", "research") in kinds
    assert ("failed", "fact_check") in kinds
    assert ("skipped", "cite") in kinds
    by = {(e.kind, e.subject): e for e in timeline.entries}
    retry = by["retrying", "research"]
    assert (retry.at_s, retry.delay_s, retry.attempt) == (0.0, 0.5, 2)
    assert "429" in retry.error
    assert by["succeeded", "research"].at_s == 0.5  # only the fake sleep moved the clock
    assert by["started", "draft"].at_s == 0.5
    assert timeline.dependencies["draft"] == ("research",)
    assert timeline.prices == {"m": Price(1.0, 2.0)}
    assert timeline.duration_s == 0.5


def test_a_run_without_a_recorder_has_no_timeline(clock: FakeClock) -> None:
    result = _run(clock, None)
    assert result.timeline is None
    assert "timeline" not in result.to_dict()


def test_the_timeline_round_trips_through_json(clock: FakeClock) -> None:
    result = _run(clock, TimelineRecorder(TASKS, clock=clock, prices={"m": Price(0.5, 1.5)}))
    for text in (result.to_json(), result.to_json(indent=2)):
        back = RunResult.from_json(text)
        assert back.timeline == result.timeline
        assert back == result


def test_an_old_result_file_without_a_timeline_still_loads(clock: FakeClock) -> None:
    data = _run(clock, TimelineRecorder(TASKS, clock=clock)).to_dict()
    del data["timeline"]
    back = RunResult.from_json(json.dumps(data))
    assert back.timeline is None
    assert back["cite"].blamed == "fact_check"


def test_streamed_chunks_are_not_recorded() -> None:
    recorder = TimelineRecorder(clock=lambda: 1.0)
    recorder(TaskOutputDelta("t", "x" * 100))
    recorder(TaskSucceeded("t", "a", "out", Usage(), 1, 0.1))
    assert [e.kind for e in recorder.timeline().entries] == ["succeeded"]


def test_circuit_changes_keep_both_states() -> None:
    times = iter([10.0, 12.5])
    recorder = TimelineRecorder(clock=lambda: next(times))
    recorder(CircuitStateChanged("e", CircuitState.CLOSED, CircuitState.OPEN))
    recorder(CircuitStateChanged("e", CircuitState.OPEN, CircuitState.HALF_OPEN))
    entries = recorder.timeline().entries
    assert [(e.at_s, e.previous_state, e.state) for e in entries] == [
        (0.0, "closed", "open"),
        (2.5, "open", "half_open"),
    ]


def _with_timeline(timeline: object) -> str:
    return json.dumps({"format": 1, "tasks": [], "timeline": timeline})


def _one(**fields: object) -> dict[str, object]:
    """A timeline of one entry: a valid ``started`` entry with *fields* changed."""
    entry: dict[str, object] = {"at_s": 0, "kind": "started", "subject": "a"}
    entry.update(fields)
    return {"entries": [{k: v for k, v in entry.items() if v is not None}]}


@pytest.mark.parametrize(
    ("timeline", "field"),
    [
        ([], "timeline"),
        ({"entries": {}}, "timeline.entries"),
        ({"entries": [1]}, "timeline.entries[0]"),
        (_one(at_s=None), "timeline.entries[0].at_s"),
        (_one(at_s=-1), "timeline.entries[0].at_s"),
        (_one(at_s=True), "timeline.entries[0].at_s"),
        (_one(kind="exploded"), "timeline.entries[0].kind"),
        (_one(subject=None), "timeline.entries[0].subject"),
        (_one(attempt=-1), "timeline.entries[0].attempt"),
        (_one(error=5), "timeline.entries[0].error"),
        ({"dependencies": []}, "timeline.dependencies"),
        ({"dependencies": {"a": "b"}}, "timeline.dependencies.a"),
        ({"dependencies": {"a": [1]}}, "timeline.dependencies.a[0]"),
        ({"prices": {"m": [1]}}, "timeline.prices.m"),
        ({"prices": {"m": [1, "x"]}}, "timeline.prices.m.output"),
    ],
)
def test_a_malformed_timeline_is_refused_naming_the_field(timeline: object, field: str) -> None:
    with pytest.raises(ResultFormatError) as caught:
        RunResult.from_json(_with_timeline(timeline))
    assert caught.value.field == field


_ENTRY = st.builds(
    TimelineEntry,
    at_s=st.floats(0, 1e6),
    kind=st.sampled_from(["started", "retrying", "parked", "fell_back", "failed", "circuit"]),
    subject=st.text(max_size=8),
    attempt=st.integers(0, 10),
    delay_s=st.floats(0, 100),
    endpoint=st.text(max_size=8),
    error=st.text(max_size=8),
    state=st.sampled_from(["", "open", "closed"]),
)


_GRAPH = st.dictionaries(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=3), max_size=3)


@settings(max_examples=50)
@given(st.lists(_ENTRY, max_size=6), _GRAPH)
def test_any_timeline_round_trips(
    entries: list[TimelineEntry], graph: dict[str, list[str]]
) -> None:
    result = RunResult({}, timeline=Timeline(entries, graph))
    back = RunResult.from_json(result.to_json())
    assert back.timeline == result.timeline


def test_the_checkpoint_store_keeps_the_timeline(tmp_path: Path, clock: FakeClock) -> None:
    store = Checkpoint(tmp_path / "runs.db")
    recorder = TimelineRecorder(TASKS, clock=clock)
    result = recorder.attach(
        OpenMultiAgent(clock=clock, sleep=clock.sleep).run_tasks(
            [Task("only", "x", agent="a")],
            Team("t", [AgentConfig(name="a", adapter=ScriptedAdapter(["ok"]))]),
            on_event=recorder,
            checkpoint=store,
        )
    )
    assert result.run_id is not None
    assert store.load(result.run_id).timeline is None  # not saved yet
    assert result.timeline is not None
    store.save_timeline(result.run_id, result.timeline)
    assert store.load(result.run_id).timeline == result.timeline
    store.close()


def test_a_store_from_before_timelines_is_read_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = Checkpoint(path)
    result = OpenMultiAgent().run_tasks(
        [Task("only", "x", agent="a")],
        Team("t", [AgentConfig(name="a", adapter=ScriptedAdapter(["ok"]))]),
        checkpoint=store,
    )
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE aegis_timelines")
    with Checkpoint(path) as reopened:
        assert result.run_id is not None
        assert reopened.load(result.run_id).timeline is None
        reopened.save_timeline(result.run_id, Timeline([TimelineEntry(0.0, "started", "only")]))
        loaded = reopened.load(result.run_id).timeline
        assert loaded is not None
        assert loaded.entries[0].subject == "only"


def test_a_task_named_tasks_does_not_confuse_the_compact_writer() -> None:
    timeline = Timeline([TimelineEntry(0.0, "started", "tasks")], {"tasks": []})
    result = RunResult({}, team='"tasks": []', timeline=timeline)
    back = RunResult.from_json(result.to_json())
    assert back.timeline == timeline
    assert back.team == '"tasks": []'
