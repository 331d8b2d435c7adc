"""The live table reads at 80, 120 and 200 columns: drawn by rich's recording console.

What a user watches (state, attempts, retries, tokens, time) is never cut; the note gives
way first and is gone at 80 columns; endpoints show short names and never a credential.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import pytest
from aegis_adapters import ScriptedAdapter, Usage
from aegis_breaker import BreakerStatus, CircuitState
from aegis_gov import (
    AgentConfig,
    AgentPool,
    Budget,
    FellBack,
    Limits,
    Message,
    OpenMultiAgent,
    Price,
    ProviderUnavailableError,
    RetryPolicy,
    Task,
    TaskFailed,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from aegis_gov._adaptive import AdaptiveStatus
from aegis_gov._budget import Spent
from aegis_gov._display_names import endpoint_display_name, endpoint_display_names
from aegis_gov._progress import ProgressTracker, run_with_progress
from aegis_gov._results import RunResult
from aegis_gov._status import EndpointStatus
from aegis_graph import SkipReason
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from tests.gov.conftest import FakeClock

SCRIPTED = "scripted|scripted://researcher|researcher"
SECRET = "sk-live-SECRET123"
OPENAI = f"openai|http://user:{SECRET}@localhost:1234/v1?api_key={SECRET}|gpt-4o-mini"
OLLAMA = "ollama|http://localhost:11434|llama3"
NOTE = "Three trends: agent teams, local models, reliability engineering"


def draw(tracker: ProgressTracker, width: int) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(tracker.render())
    return console.export_text()


def article_run(*, budget: Budget | None = None) -> ProgressTracker:
    """Three tasks: one done after a retry, one failed after falling back, one skipped."""
    tracker = ProgressTracker(
        [
            Task("research", agent="researcher"),
            Task("fact_check", agent="checker"),
            Task("headlines", agent="writer"),
        ],
        {"researcher": SCRIPTED, "checker": OPENAI, "writer": SCRIPTED},
        fallbacks=[OLLAMA],
        limits={"gpt-4o-mini": Limits(requests_per_minute=60, max_concurrent=2)},
        budget=budget,
        clock=lambda: 5.0,
    )
    tracker(TaskStarted("research", "researcher", 1))
    tracker(TaskRetrying("research", "researcher", 2, 0.5, "HTTP 503"))
    tracker(TaskSucceeded("research", "researcher", NOTE, Usage(300, 800), 2, 0.83))
    tracker(TaskStarted("fact_check", "checker", 1))
    tracker(FellBack("fact_check", "checker", OPENAI, OLLAMA, "HTTP 503"))
    tracker(TaskFailed("fact_check", "checker", "boom", "ProviderError", 3, 12.25))
    tracker(TaskSkipped("headlines", SkipReason.UPSTREAM_FAILED, "fact_check"))
    return tracker


def task_line(shown: str, task_id: str) -> str:
    (line,) = [line for line in shown.splitlines() if f"│ {task_id} " in line]
    return line


def first_cells(shown: str) -> str:
    """The first column's text, its wrapped lines joined by spaces."""
    return " ".join(
        line.split("│")[1].strip() for line in shown.splitlines() if line.startswith("│")
    )


@pytest.mark.parametrize("width", [80, 120, 200])
def test_what_a_user_watches_is_never_cut(width: int) -> None:
    shown = draw(article_run(), width)
    assert max(map(len, shown.splitlines())) <= width
    assert "…" not in task_line(shown, "research").split("│")[3]  # the state column
    for header in ("state", "attempts", "retries", "time"):
        assert f" {header} " in shown
    cells = [cell.strip() for cell in task_line(shown, "research").split("│")]
    assert cells[1:8] == ["research", "researcher", "done", "2", "1", "300/800", "0.8s"]
    cells = [cell.strip() for cell in task_line(shown, "fact_check").split("│")]
    assert cells[3:5] == ["failed", "3"]
    assert cells[7] == "12.2s"
    assert "skipped" in task_line(shown, "headlines")


def test_the_note_gives_way_first_and_is_gone_at_80_columns() -> None:
    narrow, middle, wide = (draw(article_run(), w) for w in (80, 120, 200))
    assert " note " not in narrow
    assert "Three trends" not in narrow
    assert "ProviderError" not in narrow
    assert " note " in middle
    assert "Three trends: agent teams" in middle
    assert NOTE not in middle  # cut with an ellipsis...
    assert "…" in task_line(middle, "research")
    assert NOTE in wide  # ...and whole where there is room
    assert "upstream 'fact_check' failed" in wide


@pytest.mark.parametrize("width", [80, 120, 200])
def test_endpoints_show_short_names_and_never_a_credential(width: int) -> None:
    shown = draw(article_run(), width)
    assert SECRET not in shown
    assert "api_key" not in shown
    assert "user" not in shown
    assert "|" not in shown.replace("│", "")  # no raw "provider|url|model" key
    assert "scripted:researcher" in shown
    assert "ollama:llama3 @ localhost:11434" in shown
    # At 80 columns a long name wraps at " @ " instead of losing its end.
    flat = first_cells(shown)
    assert "openai:gpt-4o-mini @" in flat
    assert "localhost:1234" in flat
    if width == 80:  # the limiter under the name, only when there is more to say than this
        assert "adaptive" not in shown
        assert "60 req/min, max 2 at once" in flat


def test_endpoint_rows_show_the_limiter_fallbacks_and_calls_in_flight() -> None:
    tracker = article_run()
    breaker = BreakerStatus(OPENAI, CircuitState.OPEN, None, None, 3, 3, 0, 3, 0, 0.0)
    adaptive = AdaptiveStatus(limit=2, in_flight=1, overloads=0, max_limit=2)
    learned = AdaptiveStatus(limit=4, in_flight=3, overloads=2, max_limit=8, rate_per_s=0.5)
    ollama = BreakerStatus(OLLAMA, CircuitState.CLOSED, None, None, 0, 0, 0, 0, 0, 0.0)
    tracker.observe_circuits(
        {
            OPENAI: EndpointStatus(OPENAI, breaker, adaptive),
            OLLAMA: EndpointStatus(OLLAMA, ollama, learned),
        }
    )
    for width in (80, 120, 200):
        shown = draw(tracker, width)
        assert max(map(len, shown.splitlines())) <= width
        # Its own column when wide; under the name (wrapping) when narrow.
        flat = shown + first_cells(shown)
        assert "60 req/min, max 2 at once" in flat  # declared
        assert "adaptive, 2 overloaded, learned 0.5 req/s" in flat
        assert "1/2" in shown
        assert "3/4" in shown
        assert "1 away" in shown
        assert "1 here" in shown
        assert "open" in shown
    wide = draw(tracker, 200)
    (line,) = [line for line in wide.splitlines() if "openai:gpt-4o-mini" in line]
    assert [cell.strip() for cell in line.split("│")][1:7] == [
        "openai:gpt-4o-mini @ localhost:1234",
        "open",
        "3",
        "1/2",
        "60 req/min, max 2 at once",
        "1 away",
    ]


def test_the_budget_line_counts_finished_tasks_then_shows_the_exact_total() -> None:
    prices = {"researcher": Price(1.0, 2.0), "gpt-4o-mini": Price(0.15, 0.6)}
    tracker = article_run(budget=Budget(max_total_tokens=10_000, max_requests=50, prices=prices))
    shown = draw(tracker, 120)
    # research: 2 requests, 1100 tokens, $(300*1 + 800*2)/1e6; fact_check: 3 requests.
    assert "budget: 1100 of 10000 tokens, 5 of 50 requests, $0.0019 (finished tasks so far)" in (
        shown
    )
    tracker.finish(RunResult(results={}, spent=Spent(tokens=1500, requests=6, cost_usd=0.0021)))
    shown = draw(tracker, 80)
    assert "budget: 1500 of 10000 tokens, 6 of 50 requests, $0.0021" in shown
    assert "so far" not in shown
    assert "budget" not in draw(article_run(), 120)  # no budget, no line


def test_two_endpoints_with_the_same_short_name_are_told_apart() -> None:
    keys = [
        "openai|http://localhost:1234/v1|m",
        "openai|http://localhost:1234/openai/v1|m",
        "openai|https://localhost:1234/v1|m",
        "custom:Mine@1f",
        "custom:Mine@2e",
    ]
    names = endpoint_display_names(keys)
    assert len(set(names.values())) == len(keys)
    assert (
        names["openai|http://localhost:1234/openai/v1|m"] == "openai:m @ localhost:1234/openai/v1"
    )
    assert {names["custom:Mine@1f"], names["custom:Mine@2e"]} == {"custom:Mine", "custom:Mine #2"}
    assert endpoint_display_name(OPENAI) == "openai:gpt-4o-mini @ localhost:1234"
    assert endpoint_display_name("echo|echo://echo|echo") == "echo:echo"
    assert (
        endpoint_display_name("ollama|http://[::1]:11434|llama3") == "ollama:llama3 @ [::1]:11434"
    )


names = st.text(
    st.sampled_from("abcxyz_-.0123456789é漢字"), min_size=1, max_size=40
)  # 漢字: two cells each


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(80, 260),
    task_id=names,
    agent=names,
    model=names,
    note=st.text(max_size=200),
)
def test_at_any_width_the_watched_columns_stay_whole(
    width: int, task_id: str, agent: str, model: str, note: str
) -> None:
    key = f"openai|http://user:{SECRET}@example.com:8080/v1|{model}"
    tracker = ProgressTracker([Task(task_id, agent=agent)], {agent: key}, clock=lambda: 0.0)
    tracker(TaskStarted(task_id, agent, 1))
    tracker(TaskRetrying(task_id, agent, 2, 0.1, note))
    tracker(TaskSucceeded(task_id, agent, note, Usage(12345, 67890), 12, 1234.5))
    shown = draw(tracker, width)
    assert SECRET not in shown
    assert max(cell_len(line) for line in shown.splitlines()) <= width
    (line,) = [line for line in shown.splitlines() if "12345/67890" in line]
    cells = [cell.strip() for cell in line.split("│")]
    assert cells[3:8] == ["done", "12", "1", "12345/67890", "1234.5s"]
    (endpoint,) = [line for line in shown.splitlines() if "│ closed " in line]
    assert [cell.strip() for cell in endpoint.split("│")][2:4] == ["closed", "0"]
    # Whole: wrapped (at " @ ", or inside a long model name) but never cut.
    assert f"openai:{model}@example.com:8080" in first_cells(shown).replace(" ", "")


def test_run_with_progress_draws_the_last_frame_with_the_exact_spending() -> None:
    adapter = ScriptedAdapter([f"{NOTE}\nmore"], name="researcher")
    oma = OpenMultiAgent()
    team = oma.create_team("t", AgentConfig(name="researcher", adapter=adapter))
    console = Console(record=True, width=80, file=io.StringIO(), force_terminal=True)
    result = run_with_progress(
        oma,
        [Task("research", agent="researcher")],
        team,
        console=console,
        live=True,
        budget=Budget(max_requests=5),
    )
    shown = console.export_text()
    assert result.spent is not None
    assert result.spent.requests == 1
    assert "scripted:researcher" in shown
    assert "done" in shown
    assert "1 of 5 requests" in shown
    assert shown.rstrip().endswith(f"{result.spent.tokens} tokens, 1 of 5 requests")


def test_a_fall_back_in_a_real_run_shows_on_both_endpoints(clock: FakeClock) -> None:
    def down(_messages: Sequence[Message]) -> str:
        raise ProviderUnavailableError("primary", "HTTP 503")

    primary = ScriptedAdapter(down, name="primary")
    backup = ScriptedAdapter(["from the backup"], name="backup")
    oma = OpenMultiAgent(
        AgentPool(clock=clock, consecutive_failure_limit=100),
        retry=RetryPolicy(max_attempts=1),
        sleep=clock.sleep,
        clock=clock,
    )
    team = oma.create_team("t", AgentConfig(name="w", adapter=primary, fallbacks=[backup]))
    console = Console(record=True, width=120, file=io.StringIO(), force_terminal=True)
    result = run_with_progress(oma, [Task("t", agent="w")], team, console=console, live=True)
    assert result["t"].output == "from the backup"
    shown = console.export_text()
    last_frame = shown[shown.rindex("tasks") :]
    (line,) = [line for line in last_frame.splitlines() if "scripted:primary" in line]
    assert "1 away" in line
    (line,) = [line for line in last_frame.splitlines() if "scripted:backup" in line]
    assert "1 here" in line
