"""Checked by mypy --strict and pyright, never run for behaviour: timelines and reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aegis_gov import (
    AgentConfig,
    EventHandler,
    OpenMultiAgent,
    Price,
    RunResult,
    Task,
    Team,
    Timeline,
    TimelineEntry,
    TimelineKind,
    TimelineRecorder,
    render_report,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import assert_type

    oma = OpenMultiAgent()
    tasks = [Task("a", agent="w"), Task("b", agent="w", depends_on=["a"])]
    team = Team("t", [AgentConfig("w")])
    assert_type(oma.clock, Callable[[], float])
    recorder = TimelineRecorder(tasks, clock=oma.clock, prices={"m": Price(1.0, 2.0)})
    handler: EventHandler = recorder  # a recorder is an on_event handler
    result = recorder.attach(oma.run_tasks(tasks, team, on_event=recorder))
    assert_type(result, RunResult)
    assert_type(result.timeline, Timeline | None)
    timeline = recorder.timeline()
    assert_type(timeline.entries, tuple[TimelineEntry, ...])
    assert_type(timeline.dependencies, Mapping[str, tuple[str, ...]])
    assert_type(timeline.prices, Mapping[str, Price])
    assert_type(timeline.duration_s, float)
    entry = timeline.entries[0]
    assert_type(entry.kind, TimelineKind)
    assert_type(entry.at_s, float)
    assert_type(entry.to_dict(), dict[str, object])
    TimelineEntry(0.0, "exploded", "a")  # type: ignore[arg-type]  # not a kind
    assert_type(render_report(result), str)
    assert_type(render_report(result, dependencies={"b": ["a"]}, prices={}), str)
    TimelineRecorder(clock=lambda: 0.0)
    RunResult({}, timeline=Timeline())
