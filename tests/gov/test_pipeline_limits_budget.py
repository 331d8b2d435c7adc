"""[limits."model"] and [budget] tables in pipeline files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from aegis_gov import Budget, Limits, Price
from aegis_gov._cli import main
from aegis_gov._pipeline import PipelineError, parse_pipeline

AGENTS = """
[[agents]]
name = "a"
provider = "scripted"
model = "m1"

[[tasks]]
id = "t1"
agent = "a"

[[tasks]]
id = "t2"
agent = "a"
depends_on = ["t1"]
"""


def test_limits_and_budget_tables_are_read() -> None:
    pipeline = parse_pipeline(
        AGENTS
        + textwrap.dedent(
            """
            [limits."m1"]
            requests_per_minute = 600
            max_concurrent = 2

            [budget]
            max_requests = 10
            max_cost_usd = 1.5

            [budget.prices."m1"]
            input_per_million_usd = 0.15
            output_per_million_usd = 0.6
            """
        )
    )
    assert pipeline.limits == {"m1": Limits(requests_per_minute=600, max_concurrent=2)}
    assert pipeline.budget == Budget(
        max_requests=10, max_cost_usd=1.5, prices={"m1": Price(0.15, 0.6)}
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[limits]\nm1 = 5\n", """[limits]: 'm1' must be a table ([limits."model"]), got 5"""),
        (
            '[limits."m1"]\nrequests_per_minute = nan\n',
            """[limits."m1"]: 'requests_per_minute' must be a number > 0""",
        ),
        ('[limits."m1"]\nbogus = 1\n', """[limits."m1"]: unknown field 'bogus'"""),
        (
            '[budget.prices."m1"]\ninput_per_million_usd = 1\n',
            """[budget.prices."m1"]: has no 'output_per_million_usd'""",
        ),
        ("limits = 3\n", "'limits' must be a table of tables, one per model"),
        ("[budget]\nmax_requests = 0\n", "[budget]: 'max_requests' must be an integer >= 1"),
    ],
)
def test_bad_tables_get_one_line_naming_the_table(extra: str, message: str) -> None:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(extra + AGENTS)
    assert message in str(info.value)


def test_a_run_from_a_file_stops_at_its_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(AGENTS + "\n[budget]\nmax_requests = 1\n")
    out = tmp_path / "out.json"
    status = main(["run", str(path), "--plain", "--no-outputs", "--output", str(out)])
    assert status == 1  # a task was skipped
    saved = json.loads(out.read_text())
    assert saved["spent"]["requests"] == 1
    assert [t["skip_reason"] for t in saved["tasks"]] == [None, "budget_spent"]


def test_a_cost_budget_without_prices_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(AGENTS + "\n[budget]\nmax_cost_usd = 1.0\n")
    assert main(["run", str(path), "--plain"]) == 2
    run_error = capsys.readouterr().err
    assert 'add it to Budget.prices ([budget.prices."m1"]' in run_error
    # `aegis graph` calls the file valid only if `aegis run` would start it: the same error.
    assert main(["graph", str(path)]) == 2
    assert capsys.readouterr().err == run_error


def test_graph_names_the_file_once_when_a_cost_budget_cannot_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unset key variable: `aegis graph` said "p.toml: p.toml: agent 'w': ...".
    monkeypatch.delenv("AEGIS_UNSET_KEY", raising=False)
    path = tmp_path / "p.toml"
    path.write_text(
        '[budget]\nmax_cost_usd = 1.0\n[budget.prices."m"]\ninput_per_million_usd = 1\n'
        'output_per_million_usd = 1\n[[agents]]\nname = "w"\nprovider = "openai"\n'
        'model = "m"\napi_key_env = "AEGIS_UNSET_KEY"\n[[tasks]]\nid = "t"\nagent = "w"\n'
    )
    assert main(["run", str(path), "--plain"]) == 2
    run_error = capsys.readouterr().err
    assert main(["graph", str(path)]) == 2
    graph_error = capsys.readouterr().err
    assert graph_error == run_error
    assert graph_error.count(str(path)) == 1, graph_error


def test_a_fallback_equal_to_the_agent_s_own_model_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.toml"
    agents = AGENTS.replace(
        'model = "m1"\n', 'model = "m1"\nfallbacks = [{ provider = "scripted", model = "m1" }]\n'
    )
    path.write_text(agents)
    assert main(["run", str(path), "--plain"]) == 2
    error = capsys.readouterr().err
    assert "agent 'a': fallbacks[0] is the same endpoint as the agent's own adapter" in error


def test_a_limits_burst_is_read_and_checked(tmp_path: Path) -> None:
    pipeline = parse_pipeline(AGENTS + '\n[limits."m1"]\nrequests_per_minute = 600\nburst = 4\n')
    assert pipeline.limits == {"m1": Limits(requests_per_minute=600, burst=4)}
    with pytest.raises(PipelineError, match=r'\[limits."m1"\]: burst needs requests_per_minute'):
        parse_pipeline(AGENTS + '\n[limits."m1"]\nburst = 4\n')
