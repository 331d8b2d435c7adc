"""What does recording a run's timeline cost? (issue 20: the run report)

10,000 independent instant tasks, run three ways, interleaved: without an ``on_event``
handler, with an empty handler (the peer: what any handler costs, since events are only
built when there is one), and with a ``TimelineRecorder``. CPU time (``time.process_time``),
median of the repeats. Then the recorded result's JSON size, against the same result
without its timeline, and the time ``render_report`` takes for it.

A run without a recorder runs no new code: the recorder is only an ``on_event`` handler.

Run: ``python benchmarks/timeline_overhead.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import attrs
from aegis_gov import (
    AgentConfig,
    AgentPool,
    Message,
    OpenMultiAgent,
    RunEvent,
    RunResult,
    ScriptedAdapter,
    Task,
    Team,
    TimelineRecorder,
    render_report,
)

TASKS = 10_000
REPEATS = 5


def reply(messages: Sequence[Message]) -> str:  # noqa: ARG001  # an instant model
    return "ok"


def nothing(event: RunEvent) -> None:  # noqa: ARG001  # the empty handler
    return


def run(tasks: list[Task], handler: str) -> tuple[float, RunResult]:
    team = Team("bench", [AgentConfig("w", adapter=ScriptedAdapter(reply))])
    oma = OpenMultiAgent(pool=AgentPool(max_concurrent=8))
    recorder = TimelineRecorder(tasks, clock=oma.clock)
    on_event: Callable[[RunEvent], None] | None = {
        "none": None,
        "empty": nothing,
        "recorder": recorder,
    }[handler]
    start = time.process_time()
    result = oma.run_tasks(tasks, team, on_event=on_event, stream=False)
    if handler == "recorder":
        result = recorder.attach(result)
    return time.process_time() - start, result


def main() -> None:
    tasks = [Task(f"t{i}", "work", agent="w") for i in range(TASKS)]
    times: dict[str, list[float]] = {"none": [], "empty": [], "recorder": []}
    recorded: RunResult | None = None
    run(tasks, "none")  # warm up
    for _ in range(REPEATS):
        for handler, spent in times.items():
            elapsed, result = run(tasks, handler)
            spent.append(elapsed)
            if handler == "recorder":
                recorded = result
    median = {handler: statistics.median(values) for handler, values in times.items()}
    for handler, value in median.items():
        print(f"{handler:>9}: {value * 1000:8.1f} ms CPU for {TASKS:,} tasks")
    print(f"recorder / empty handler: {median['recorder'] / median['empty']:.3f}x")
    print(f"recorder / no handler:    {median['recorder'] / median['none']:.3f}x")
    assert recorded is not None
    with_timeline = len(recorded.to_json())
    without = len(attrs.evolve(recorded, timeline=None).to_json())
    print(f"result JSON: {with_timeline:,} bytes with the timeline, {without:,} without "
          f"({with_timeline / without:.2f}x)")  # fmt: skip
    start = time.process_time()
    page = render_report(recorded)
    print(f"render_report: {(time.process_time() - start) * 1000:.0f} ms CPU, "
          f"{len(page):,} characters")  # fmt: skip


if __name__ == "__main__":
    main()
