"""The live table's model: what each task's row shows while events arrive."""

from __future__ import annotations

from collections.abc import Iterator

from aegis_adapters import ProviderUnavailableError, Usage
from aegis_gov import (
    AgentConfig,
    FellBack,
    OpenMultiAgent,
    RetryPolicy,
    RunEvent,
    Task,
    TaskOutputDelta,
    TaskRetrying,
    TaskStarted,
    TaskSucceeded,
)
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


def test_a_fallback_starts_the_stream_over() -> None:
    # The chunks of a dropped stream, then the fallback endpoint's answer from its start:
    # the row showed both run together ("a b x y").
    progress = tracker()
    progress(TaskStarted("t", "a", 1))
    progress(TaskOutputDelta("t", "a b "))
    progress(FellBack("t", "a", "endpoint", "backup", "dropped"))
    progress(TaskOutputDelta("t", "x y"))
    (row,) = progress.rows()
    assert (row.streamed_chars, row.stream_tail, row.note) == (3, "x y", "x y")


def test_a_runs_events_say_where_a_dropped_stream_starts_over() -> None:
    # What TaskOutputDelta promises consumers: chunks after a TaskRetrying or FellBack of the
    # task are its answer from the start.
    class Dropping:
        def __init__(self, chunks: list[str], drops: int) -> None:
            self.chunks, self.drops = chunks, drops

        def generate(self, prompt: str, *, system: str | None = None) -> str:
            return "".join(self.chunks)

        def stream(self, prompt: str, *, system: str | None = None) -> Iterator[str]:
            yield self.chunks[0]
            if self.drops:
                self.drops -= 1
                raise ProviderUnavailableError("custom", "connection dropped mid-stream")
            yield from self.chunks[1:]

    primary = Dropping(["a ", "b ", "c"], drops=2)
    agent = AgentConfig("w", adapter=primary, fallbacks=[Dropping(["x ", "y"], drops=0)])
    oma = OpenMultiAgent(sleep=lambda _s: None, retry=RetryPolicy(max_attempts=2))
    answer: list[str] = []

    def consume(event: RunEvent) -> None:
        if isinstance(event, TaskRetrying | FellBack):
            answer.clear()
        elif isinstance(event, TaskOutputDelta):
            answer.append(event.text)

    team = OpenMultiAgent.create_team("t", agent)
    result = oma.run_tasks([Task("t", agent="w")], team, on_event=consume, stream=True)
    assert result["t"].output == "x y" == "".join(answer)


def test_model_text_is_shown_literally_never_as_markup_or_terminal_commands() -> None:
    # An adversarial review: "[/]" in a model's answer crashed the live table (and the run's
    # --output was lost); "[link=...]" became a real hyperlink; ESC sequences reached the
    # terminal.
    import io  # noqa: PLC0415

    from aegis_gov import ToolCalled  # noqa: PLC0415
    from aegis_gov._progress import PlainLog  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415

    hostile = "[/] x [link=https://e.x/]d[/link] \x1b]0;T\x07"
    progress = ProgressTracker(
        [Task("[/]t", agent="a")], {"a": "[bold]endpoint"}, clock=lambda: 0.0
    )
    progress(TaskStarted("[/]t", "a", 1))
    progress(TaskSucceeded("[/]t", "a", hostile, Usage(1, 1), 1, 0.1))
    console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
    console.print(progress.render())
    shown = console.export_text()
    assert "[/] x [link=https://e.x/]d[/link]" in shown
    assert "\x1b]0;" not in console.export_text(styles=True)
    assert "\\x1b]0;T\\x07" in shown

    stream = io.StringIO()
    log = PlainLog(stream, clock=lambda: 0.0)
    log(ToolCalled("t", "a", "x\n[  0.50s] t: FORGED done\x1b]0;TITLE\x07", {}, "r", None))
    written = stream.getvalue()
    assert written.count("\n") == 1  # one line, whatever the model wrote
    assert "\x1b" not in written
    assert "\x07" not in written


def test_fallbacks_and_adaptive_limits_show_in_the_table_and_the_log() -> None:
    from aegis_breaker import BreakerStatus, CircuitState  # noqa: PLC0415
    from aegis_gov import FellBack  # noqa: PLC0415
    from aegis_gov._adaptive import AdaptiveStatus  # noqa: PLC0415
    from aegis_gov._progress import describe_event  # noqa: PLC0415
    from aegis_gov._status import EndpointStatus  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415

    progress = tracker()
    progress(TaskStarted("t", "a", 1))
    fell = FellBack("t", "a", "endpoint", "backup|b|m", "HTTP 503")
    progress(fell)
    (row,) = progress.rows()
    assert row.note == "fell back to backup:m"  # the table's short name
    # The plain log keeps the full key, which names exactly where the calls went.
    assert describe_event(fell) == ("t: falling back from endpoint to backup|b|m after: HTTP 503")
    breaker = BreakerStatus("endpoint", CircuitState.CLOSED, None, None, 0, 0, 0, 0, 0, 0.0)
    adaptive = AdaptiveStatus(limit=2, in_flight=1, overloads=3, max_limit=8)
    progress.observe_circuits({"endpoint": EndpointStatus("endpoint", breaker, adaptive)})
    console = Console(record=True, width=200)
    console.print(progress.render())
    shown = console.export_text()
    assert "in flight" in shown
    assert "1/2" in shown
    assert "adaptive, 3 overloaded" in shown
    assert "backup:m" in shown
    assert "1 here" in shown  # the fall-back taken, on the endpoint it went to
    assert "1 away" in shown
