"""Pipeline files: what a valid file becomes, and one clear error for every kind of mistake."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aegis_adapters import EchoAdapter, LLMError, Message, RateLimitError, ScriptedAdapter
from aegis_gov import AgentConfig, OllamaAdapter, OpenAIAdapter, RunResult
from aegis_gov._cli import main
from aegis_gov._pipeline import Pipeline, PipelineError, load_pipeline, parse_pipeline
from aegis_gov._pipeline_schema import PIPELINE_SCHEMA, SCRIPTED_ERRORS
from hypothesis import given
from hypothesis import strategies as st

EXAMPLES = Path(__file__).parents[2] / "examples"

MINIMAL = """
[[agents]]
name = "a"
provider = "echo"

[[tasks]]
id = "t1"
agent = "a"

[[tasks]]
id = "t2"
depends_on = ["t1"]
"""


def scripted_with_file_read(reply: str) -> str:
    """MINIMAL with agent a scripted, allowed file_read, and *reply* as its only reply."""
    return MINIMAL.replace(
        'provider = "echo"', f'provider = "scripted"\ntools = ["file_read"]\nreplies = [{reply}]'
    )


def parse(text: str) -> Pipeline:
    return parse_pipeline(text, path="p.toml")


def error_of(text: str) -> PipelineError:
    with pytest.raises(PipelineError) as info:
        parse(text)
    return info.value


def test_minimal_file_fills_in_defaults() -> None:
    pipeline = parse(MINIMAL)
    assert pipeline.name == "pipeline"
    assert [t.id for t in pipeline.tasks] == ["t1", "t2"]
    # With a single agent, a task may leave out "agent".
    assert pipeline.tasks[1].agent == "a"
    assert pipeline.tasks[1].depends_on == ("t1",)
    assert pipeline.max_concurrent == 4
    assert pipeline.stop_on_failure is False
    team = pipeline.team()
    assert isinstance(team["a"].adapter, EchoAdapter)
    assert pipeline.queue().generations() == [["t1"], ["t2"]]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_is_valid(path: Path) -> None:
    pipeline = load_pipeline(path)
    assert pipeline.tasks
    assert pipeline.path == str(path)
    assert {t.agent for t in pipeline.tasks} <= {a.name for a in pipeline.agents}


def test_article_example_is_the_articles_graph() -> None:
    pipeline = load_pipeline(EXAMPLES / "article.toml")
    assert pipeline.queue().generations() == [["research"], ["draft"], ["translate", "publish"]]
    assert [a.name for a in pipeline.agents] == ["researcher", "writer", "translator", "publisher"]


def test_providers_become_their_adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key")
    pipeline = load_pipeline(EXAMPLES / "mixed-providers.toml")
    team = pipeline.team()
    writer, translator, publisher = team["writer"], team["translator"], team["publisher"]
    assert isinstance(writer.adapter, OllamaAdapter)
    assert writer.adapter.endpoint.model == "qwen2.5:14b"
    assert isinstance(translator.adapter, OpenAIAdapter)
    assert translator.adapter.endpoint.base_url == "http://localhost:1234/v1"
    assert isinstance(publisher.adapter, OpenAIAdapter)
    assert publisher.adapter.endpoint.base_url.startswith("https://my-resource.openai.azure.com")
    pool = pipeline.pool()
    assert pool.max_concurrent == 3
    assert pipeline.retry.max_attempts == 4
    assert pipeline.consecutive_failure_limit == 3


def test_unset_api_key_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    pipeline = load_pipeline(EXAMPLES / "mixed-providers.toml")
    with pytest.raises(PipelineError, match="AZURE_OPENAI_API_KEY") as info:
        pipeline.team()
    assert info.value.entry == "agent 'publisher'"
    assert str(info.value).startswith(str(EXAMPLES / "mixed-providers.toml"))


def test_with_provider_puts_every_agent_offline() -> None:
    pipeline = load_pipeline(EXAMPLES / "mixed-providers.toml").with_provider("echo")
    team = pipeline.team()
    assert all(isinstance(agent.adapter, EchoAdapter) for agent in team.values())
    # Each agent is its own endpoint (named after it).
    keys = {a.adapter.endpoint.key for a in team.values() if isinstance(a.adapter, EchoAdapter)}
    assert len(keys) == 4


@pytest.mark.parametrize("model", [None, "stand-in"])
def test_a_dry_run_of_a_priced_pipeline_costs_nothing(
    model: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--provider echo` is the dry run; a cost budget asked for a price of each agent's
    # offline stand-in (keyed by the agent's name) and refused to start.
    text = """
    [budget]
    max_cost_usd = 1.0
    [budget.prices."gpt-4o"]
    input_per_million_usd = 2.5
    output_per_million_usd = 10
    [[agents]]
    name = "w"
    provider = "openai"
    model = "gpt-4o"
    [[tasks]]
    id = "t"
    agent = "w"
    """
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(text, encoding="utf-8")
    output = tmp_path / "out.json"
    override = ["--provider", "echo"] + ([] if model is None else ["--model", model])
    argv = ["run", str(pipeline), *override, "--plain", "--no-checkpoint", "--output", str(output)]
    assert main(argv) == 0, capsys.readouterr().out
    spent = RunResult.from_json(output.read_text(encoding="utf-8")).spent
    assert spent is not None
    assert spent.cost_usd == 0.0
    assert spent.requests == 1


def test_auto_provider_leaves_the_adapter_to_the_run() -> None:
    pipeline = parse(MINIMAL.replace('provider = "echo"', 'provider = "auto"'))
    agent: AgentConfig = pipeline.team()["a"]
    assert agent.adapter is None


def test_scripted_replies_include_simulated_errors() -> None:
    pipeline = parse(
        """
        [[agents]]
        name = "a"
        provider = "scripted"
        replies = [{ error = "rate_limit", retry_after_s = 2.5 }, "fine", { text = "again" }]
        [[tasks]]
        id = "t"
        """
    )
    adapter = pipeline.team()["a"].adapter
    assert isinstance(adapter, ScriptedAdapter)
    with pytest.raises(RateLimitError) as info:
        adapter.generate("x")
    assert info.value.retry_after_s == 2.5
    assert info.value.status_code == 429
    assert adapter.generate("x") == "fine"
    assert adapter.generate("x") == "again"


def test_scripted_replies_can_call_tools() -> None:
    pipeline = parse(
        """
        [tools]
        root = "."
        [[agents]]
        name = "a"
        provider = "scripted"
        tools = ["file_read", "memory_store"]
        replies = [
            { text = "Looking.", tool_calls = [
                { name = "file_read", arguments = { path = "notes.txt" } },
                { name = "memory_store", arguments = { key = "k", value = "v" } },
            ] },
            { tool_calls = [{ name = "file_read" }] },
        ]
        [[tasks]]
        id = "t"
        """
    )
    adapter = pipeline.team()["a"].adapter
    assert isinstance(adapter, ScriptedAdapter)
    first = adapter.chat([Message("user", "x")])
    assert first.text == "Looking."
    assert first.stop_reason == "tool_use"
    assert [(c.id, c.name, dict(c.arguments)) for c in first.tool_calls] == [
        ("call_0_0", "file_read", {"path": "notes.txt"}),
        ("call_0_1", "memory_store", {"key": "k", "value": "v"}),
    ]
    second = adapter.chat([Message("user", "x")])
    assert second.text == ""
    assert [(c.id, c.name, dict(c.arguments)) for c in second.tool_calls] == [
        ("call_1_0", "file_read", {})
    ]


def test_settings_tables() -> None:
    pipeline = parse(
        """
        name = "custom"
        stop_on_failure = true
        max_concurrent = 2
        [retry]
        max_attempts = 5
        initial_delay_s = 0.1
        [breaker]
        consecutive_failure_limit = 1
        recovery_timeout_s = 0.5
        [tools]
        shell_allowlist = ["echo"]
        """
        + MINIMAL
    )
    assert pipeline.name == "custom"
    assert pipeline.stop_on_failure is True
    assert pipeline.retry.max_attempts == 5
    assert pipeline.retry.initial_delay_s == 0.1
    assert pipeline.pool().max_concurrent == 2
    assert pipeline.pool(max_concurrent=7).max_concurrent == 7
    assert pipeline.shell_allowlist == ("echo",)
    assert "shell" in pipeline.tool_registry().names()


@pytest.mark.parametrize(
    ("text", "entry", "problem"),
    [
        ("[[agents]\nname = 'a'", None, "invalid TOML"),
        ('nmae = "x"\n' + MINIMAL, None, "unknown field 'nmae' (did you mean 'name'?)"),
        (
            MINIMAL.replace('provider = "echo"', 'provider = "echo"\nmodle = "m"'),
            "agent 'a'",
            "unknown field 'modle' (did you mean 'model'?)",
        ),
        (
            MINIMAL.replace('agent = "a"', 'agent = "a"\ndepend_on = []'),
            "task 't1'",
            "unknown field 'depend_on' (did you mean 'depends_on'?)",
        ),
        (
            MINIMAL.replace('agent = "a"', 'agent = "b"'),
            "task 't1'",
            "agent 'b' is not declared; expected one of 'a'",
        ),
        (
            MINIMAL.replace('["t1"]', '["t11"]'),
            "task 't2'",
            "depends on unknown task 't11' (did you mean 't1'?)",
        ),
        (
            MINIMAL.replace('agent = "a"', 'agent = "a"\ndepends_on = ["t2"]'),
            "task 't1'",
            "dependency cycle: t1 -> t2 -> t1",
        ),
        (
            MINIMAL.replace('id = "t2"\ndepends_on = ["t1"]', 'id = "t1"'),
            "task 't1'",
            "this id is used by more than one task",
        ),
        (
            MINIMAL.replace('provider = "echo"', 'provider = "gemini"'),
            "agent 'a'",
            "unknown provider 'gemini'",
        ),
        (MINIMAL.replace('name = "a"', "name = 3"), "agents[0]", "'name' must be a string"),
        (MINIMAL.replace('id = "t2"', 'description = "x"'), "tasks[1]", "has no 'id'"),
        ("max_concurrent = 0\n" + MINIMAL, None, "'max_concurrent' must be an integer >= 1"),
        ('stop_on_failure = "yes"\n' + MINIMAL, None, "'stop_on_failure' must be true or false"),
        (
            MINIMAL.replace('["t1"]', '"t1"'),
            "task 't2'",
            "'depends_on' must be a list of strings",
        ),
        (
            MINIMAL.replace('["t1"]', '["t1", "t1"]'),
            "task 't2'",
            "depends on 't1' twice",
        ),
        (
            MINIMAL.replace('provider = "echo"', 'provider = "echo"\ntools = ["fiel_read"]'),
            "agent 'a'",
            "unknown tool 'fiel_read' (did you mean 'file_read'?)",
        ),
        (
            MINIMAL.replace('provider = "echo"', 'provider = "echo"\nreplies = ["x"]'),
            "agent 'a'",
            "'replies' is only for provider = \"scripted\"",
        ),
        (
            MINIMAL.replace(
                'provider = "echo"', 'provider = "scripted"\nreplies = [{error="boom"}]'
            ),
            "agent 'a', replies[0]",
            "unknown error 'boom'",
        ),
        (
            MINIMAL.replace('provider = "echo"', 'provider = "scripted"\nreplies = [{}]'),
            "agent 'a', replies[0]",
            "needs 'text', 'tool_calls' or 'error'",
        ),
        (
            scripted_with_file_read('{ error = "auth", tool_calls = [{ name = "file_read" }] }'),
            "agent 'a', replies[0]",
            "'error' cannot be combined with 'text' or 'tool_calls'",
        ),
        (
            scripted_with_file_read("{ tool_calls = [] }"),
            "agent 'a', replies[0]",
            "'tool_calls' must be a non-empty list of tables",
        ),
        (
            scripted_with_file_read('{ tool_calls = ["file_read"] }'),
            "agent 'a', replies[0], tool_calls[0]",
            "must be a table, got 'file_read'",
        ),
        (
            scripted_with_file_read("{ tool_calls = [{ arguments = {} }] }"),
            "agent 'a', replies[0], tool_calls[0]",
            "has no 'name'",
        ),
        (
            scripted_with_file_read('{ tool_calls = [{ name = "file_read", args = {} }] }'),
            "agent 'a', replies[0], tool_calls[0]",
            "unknown field 'args' (did you mean 'arguments'?)",
        ),
        (
            scripted_with_file_read(
                '{ tool_calls = [{ name = "file_read", arguments = "x.txt" }] }'
            ),
            "agent 'a', replies[0], tool_calls[0]",
            "'arguments' must be a table, got 'x.txt'",
        ),
        (
            scripted_with_file_read('{ tool_calls = [{ name = "file_reed" }] }'),
            "agent 'a', replies[0]",
            (
                "calls tool 'file_reed', which the agent does not list in 'tools' "
                "(did you mean 'file_read'?)"
            ),
        ),
        (
            "[retry]\nmax_attempts = 0\n" + MINIMAL,
            "[retry]",
            "'max_attempts' must be an integer >= 1",
        ),
        ("[breaker]\nlimit = 1\n" + MINIMAL, "[breaker]", "unknown field 'limit'"),
        ('[[tasks]]\nid = "t"\n', None, "declares no agents"),
        ('[[agents]]\nname = "a"\n', None, "declares no tasks"),
        (
            '[[agents]]\nname = "a"\n[[agents]]\nname = "a"\n[[tasks]]\nid = "t"\nagent = "a"',
            "agent 'a'",
            "this name is used by more than one agent",
        ),
        (
            '[[agents]]\nname = "a"\n[[agents]]\nname = "b"\n[[tasks]]\nid = "t"\n',
            "task 't'",
            "has no 'agent'",
        ),
    ],
)
def test_mistakes_name_the_entry_and_the_problem(
    text: str, entry: str | None, problem: str
) -> None:
    error = error_of(text)
    assert error.path == "p.toml"
    assert error.entry == entry
    assert problem in error.problem
    assert str(error).startswith("p.toml: ")
    assert "\n" not in str(error).strip() or "invalid TOML" in str(error)


def test_toml_syntax_error_has_the_line() -> None:
    error = error_of('[[agents]]\nname = "a"\nprovider = \n')
    assert "line 3" in error.problem


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="cannot read the file") as info:
        load_pipeline(tmp_path / "nope.toml")
    assert info.value.path == str(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"name = '\xff'\n")
    with pytest.raises(PipelineError, match="not UTF-8"):
        load_pipeline(bad)


def test_default_name_is_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "nightly-report.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert load_pipeline(path).name == "nightly-report"


def with_agent_field(line: str) -> str:
    return MINIMAL.replace('provider = "echo"', f'provider = "echo"\n{line}')


def scripted_reply(reply: str, tools: str = "[]") -> str:
    return MINIMAL.replace(
        'provider = "echo"', f'provider = "scripted"\ntools = {tools}\nreplies = [{reply}]'
    )


@pytest.mark.parametrize(
    ("text", "entry", "problem"),
    [
        ("[retry]\nmax_attempts = inf\n" + MINIMAL, "[retry]", "'max_attempts' must be an integer"),
        ("[retry]\nmax_attempts = 101\n" + MINIMAL, "[retry]", "<= 100, got 101"),
        ("[retry]\nmax_attempts = 2.0\n" + MINIMAL, "[retry]", "must be an integer"),
        ("[retry]\ninitial_delay_s = nan\n" + MINIMAL, "[retry]", "got nan"),
        ("[retry]\nmultiplier = inf\n" + MINIMAL, "[retry]", "'multiplier' must be a number"),
        ("[retry]\nmax_delay_s = 1e300\n" + MINIMAL, "[retry]", "<= 86400"),
        ("[retry]\nmax_total_delay_s = -1\n" + MINIMAL, "[retry]", ">= 0 and <= 86400"),
        (
            "max_concurrent = 99999999999999999999\n" + MINIMAL,
            None,
            "'max_concurrent' must be an integer >= 1 and <= 1024",
        ),
        ("max_concurrent = 9223372036854775807\n" + MINIMAL, None, "<= 1024"),
        ("max_concurrent = 100000000\n" + MINIMAL, None, "<= 1024"),
        ("[breaker]\nrecovery_timeout_s = nan\n" + MINIMAL, "[breaker]", "got nan"),
        ("[breaker]\nconsecutive_failure_limit = 10001\n" + MINIMAL, "[breaker]", "<= 10000"),
        (with_agent_field("delay_s = nan"), "agent 'a'", "'delay_s' must be a number >= 0"),
        (with_agent_field("delay_s = inf"), "agent 'a'", "got inf"),
        (with_agent_field("timeout_s = nan"), "agent 'a'", "'timeout_s' must be a number > 0"),
        (with_agent_field("timeout_s = 99999999999999999999"), "agent 'a'", "<= 86400"),
        (with_agent_field("temperature = nan"), "agent 'a'", "'temperature' must be a number"),
        (with_agent_field("temperature = -0.5"), "agent 'a'", ">= 0 and <= 2"),
        (with_agent_field("max_tokens = 10000000"), "agent 'a'", "<= 1000000"),
        (with_agent_field("max_tool_rounds = 1001"), "agent 'a'", "<= 1000"),
        (
            scripted_reply('{ error = "rate_limit", retry_after_s = nan }'),
            "agent 'a', replies[0]",
            "'retry_after_s' must be a number >= 0",
        ),
        (
            scripted_reply(
                '{ tool_calls = [{ name = "file_read", arguments = { when = 1979-05-27 } }] }',
                tools='["file_read"]',
            ),
            "agent 'a', replies[0], tool_calls[0]",
            "the TOML date/time 1979-05-27 has no JSON form",
        ),
        (
            scripted_reply(
                '{ tool_calls = [{ name = "file_read", arguments = { x = [[nan]] } }] }',
                tools='["file_read"]',
            ),
            "agent 'a', replies[0], tool_calls[0]",
            "nan is not a JSON number",
        ),
        (
            scripted_reply(
                '{ tool_calls = [{ name = "file_read", arguments = { x = '
                + "[" * 40
                + "]" * 40
                + " } }] }",
                tools='["file_read"]',
            ),
            "agent 'a', replies[0], tool_calls[0]",
            "nested more than 32 levels deep",
        ),
        ("x = " + "[" * 1000 + "]" * 1000 + "\n" + MINIMAL, None, "nested too deeply"),
        ("x = " + "{a=" * 1000 + "1" + "}" * 1000 + "\n" + MINIMAL, None, "nested too deeply"),
        ('name = "' + "n" * 5000 + '"\nmodel = 1\n' + MINIMAL, None, "unknown field 'model'"),
    ],
)
def test_numbers_and_values_are_bounded(text: str, entry: str | None, problem: str) -> None:
    error = error_of(text)
    assert error.entry == entry
    assert problem in error.problem, error.problem
    assert "\n" not in str(error)
    assert len(str(error)) < 400


def test_a_huge_value_is_shown_cut_short() -> None:
    error = error_of(MINIMAL.replace('name = "a"', "name = [" + "1, " * 100_000 + "]"))
    assert error.entry == "agents[0]"
    assert len(str(error)) < 200


def test_bounds_at_the_limit_are_accepted() -> None:
    pipeline = parse(
        "max_concurrent = 1024\n[retry]\nmax_attempts = 100\nmax_delay_s = 86400\n"
        + with_agent_field("temperature = 2\ndelay_s = 0\nmax_tokens = 1000000")
    )
    assert pipeline.max_concurrent == 1024
    assert pipeline.retry.max_attempts == 100
    assert pipeline.agents[0].temperature == 2.0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.timeout(20)
def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "p.toml"
    os.mkfifo(fifo)
    with pytest.raises(PipelineError, match="not a regular file") as info:
        load_pipeline(fifo)
    assert info.value.entry is None
    assert str(info.value).startswith(f"{fifo}: cannot read the file: ")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
@pytest.mark.timeout(20)
def test_a_device_is_refused_without_reading_it() -> None:
    with pytest.raises(PipelineError, match="not a regular file"):
        load_pipeline("/dev/zero")


def test_a_directory_and_a_huge_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="it is a directory"):
        load_pipeline(tmp_path)
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * (1 << 20) + b"\n" + MINIMAL.encode())
    with pytest.raises(PipelineError, match="larger than the 1 MiB limit"):
        load_pipeline(big)


def test_unknown_dependency_when_every_task_has_one() -> None:
    # The graph's cycle walk used to trip over this shape with a bare ValueError.
    error = error_of(
        '[[agents]]\nname = "a"\nprovider = "echo"\n[[tasks]]\nid = "b"\ndepends_on = ["a"]\n'
    )
    assert error.entry == "task 'b'"
    assert error.problem == "depends on unknown task 'a'"


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(PIPELINE_SCHEMA)


@pytest.mark.parametrize(
    ("text", "entry", "problem"),
    [
        ('agents = 3\n[[tasks]]\nid = "t"', None, "'agents' must be an array of tables"),
        ("retry = 3\n" + MINIMAL, None, "'retry' must be a table ([retry]), got 3"),
        ("agents = []\n[[tasks]]\nid = 't'", None, "declares no agents"),
        (MINIMAL.replace('name = "a"', 'name = ""'), "agents[0]", "has no 'name'"),
        (
            MINIMAL.replace('provider = "echo"', "provider = 3"),
            "agent 'a'",
            "'provider' must be a string, got 3",
        ),
        (with_agent_field("max_tokens = true"), "agent 'a'", "must be an integer >= 1"),
        (with_agent_field("tools = ['memory_store', 1]"), "agent 'a'", "a list of strings"),
        (
            MINIMAL.replace('provider = "echo"', 'provider = "scripted"\nreplies = [3]'),
            "agent 'a', replies[0]",
            "must be a string or a table, got 3",
        ),
        (
            MINIMAL.replace('provider = "echo"', 'provider = "scripted"\nreplies = ["x", {txt=1}]'),
            "agent 'a', replies[1]",
            "unknown field 'txt' (did you mean 'text'?)",
        ),
        (
            "[tools]\nroot = 1979-05-27\n" + MINIMAL,
            "[tools]",
            "'root' must be a string, got datetime.date(1979, 5, 27)",
        ),
    ],
)
def test_schema_errors_are_worded_like_the_rest(text: str, entry: str | None, problem: str) -> None:
    error = error_of(text)
    assert error.entry == entry
    assert problem in error.problem, error.problem
    assert "\n" not in str(error)


def _bounded_fields() -> list[tuple[str, str, dict[str, Any]]]:
    """Every number in the schema with bounds: where it is written, its name, its schema."""
    properties = PIPELINE_SCHEMA["properties"]
    tables = {"top": properties, "retry": properties["retry"]["properties"]}
    tables["breaker"] = properties["breaker"]["properties"]
    tables["agent"] = properties["agents"]["items"]["properties"]
    return [
        (where, key, schema)
        for where, fields in tables.items()
        for key, schema in sorted(fields.items())
        if "maximum" in schema
    ]


def _with_value(where: str, key: str, value: object) -> str:
    text = "true" if value is True else repr(value).replace("'", '"')  # TOML spellings
    line = f"{key} = {text}"
    if where == "agent":
        return with_agent_field(line)
    return (f"[{where}]\n" if where != "top" else "") + f"{line}\n" + MINIMAL


@given(field=st.sampled_from(_bounded_fields()), data=st.data())
def test_every_bound_in_the_schema_holds_and_is_named(
    field: tuple[str, str, dict[str, Any]], data: st.DataObject
) -> None:
    where, key, schema = field
    exclusive = "exclusiveMinimum" in schema
    high, low = schema["maximum"], schema["exclusiveMinimum" if exclusive else "minimum"]

    def too_low(value: float) -> bool:
        # -0.0 is not below a minimum of 0, but is not above an exclusive minimum of 0 either.
        return value < low or exclusive

    if schema["type"] == "integer":
        inside: st.SearchStrategy[object] = st.integers(low, high)
        outside = st.integers(high + 1) | st.integers(max_value=low - 1) | st.floats(low, high)
    else:
        inside = st.floats(low, high, exclude_min=exclusive)
        outside = (
            st.floats(min_value=high, exclude_min=True)
            | st.floats(max_value=low).filter(too_low)
            | st.sampled_from([math.nan, math.inf, -math.inf, True, "1"])
        )
    good = data.draw(inside, label="inside")
    parse(_with_value(where, key, good))
    bad = data.draw(outside, label="outside")
    error = error_of(_with_value(where, key, bad))
    assert error.problem.startswith(f"'{key}' must be "), error.problem
    assert error.entry == {"top": None, "agent": "agent 'a'"}.get(where, f"[{where}]")


def test_every_scripted_error_the_schema_allows_can_be_raised() -> None:
    text = MINIMAL.replace('provider = "echo"', 'provider = "scripted"\nreplies = [{error="x"}]')
    for name in SCRIPTED_ERRORS:
        pipeline = parse(text.replace('error="x"', f'error="{name}"'))
        adapter = pipeline.team()["a"].adapter
        assert isinstance(adapter, ScriptedAdapter)
        with pytest.raises(LLMError, match=f"simulated {name} error"):
            adapter.generate("x")


def test_pipelines_and_the_demo_count_breaker_failures_by_the_facade_s_rule() -> None:
    # Found by an adversarial review: `aegis run` and the demos built their pools with a rule
    # of their own (every retryable error counts), so a burst of 429s opened the circuit
    # there, which the facade's default rule no longer does.
    from aegis_gov._caller import counts_against_breaker  # noqa: PLC0415
    from aegis_gov._demo import offline_demo, provider_demo  # noqa: PLC0415

    pipeline = load_pipeline(EXAMPLES / "article.toml")
    assert pipeline.pool().settings.is_failure is counts_against_breaker
    assert offline_demo().oma.pool.settings.is_failure is counts_against_breaker
    demo = provider_demo(EchoAdapter(), "echo")
    assert demo.oma.pool.settings.is_failure is counts_against_breaker
