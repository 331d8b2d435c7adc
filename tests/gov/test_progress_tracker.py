"""The live table's model: what each task's row shows while events arrive."""

from __future__ import annotations

from aegis_adapters import Usage
from aegis_gov import Task, TaskOutputDelta, TaskRetrying, TaskStarted, TaskSucceeded
from aegis_gov._progress import ProgressTracker


def tracker() -> ProgressTracker:
    return ProgressTracker([Task("t", agent="a")], {"a": "endpoint"}, clock=lambda: 0.0)


def test_a_streaming_task_shows_the_end_of_its_last_line() -> None:
    progress = tracker()
    progress(TaskStarted("t", "a", 1))
    progress(TaskOutputDelta("t", "First line.\nSecond "))
    progress(TaskOutputDelta("t", "line, so far"))
    (row,) = progress.rows()
    assert (row.state, row.note, row.streamed_chars) == ("running", "Second line, so far", 31)
    progress(TaskOutputDelta("t", " and " + "x" * 100 + "\n\n"))
    (row,) = progress.rows()
    assert row.note.startswith("…")
    assert row.note.endswith("x" * 50)
    assert len(row.note) == 60
    progress(TaskSucceeded("t", "a", "First line.\nSecond line.", Usage(3, 4), 1, 0.5))
    (row,) = progress.rows()
    assert (row.state, row.note, row.output_tokens) == ("done", "First line.", 4)


def test_a_retry_starts_the_stream_over() -> None:
    progress = tracker()
    progress(TaskStarted("t", "a", 1))
    progress(TaskOutputDelta("t", "partial"))
    progress(TaskRetrying("t", "a", 2, 0.1, "HTTP 503"))
    (row,) = progress.rows()
    assert (row.state, row.streamed_chars, row.stream_tail) == ("retrying", 0, "")
    assert row.note == "retry in 0.10s: HTTP 503"
