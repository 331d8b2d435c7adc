"""Declared limits per model: requests and tokens paced before each request."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Sequence

import attrs
import pytest
from aegis_adapters import AnthropicAdapter
from aegis_gov import (
    AdaptiveStatus,
    AgentConfig,
    AgentPool,
    Budget,
    ChatResponse,
    Limits,
    Message,
    OpenAIAdapter,
    OpenMultiAgent,
    Price,
    RetryPolicy,
    ScriptedAdapter,
    Task,
    TaskState,
    Usage,
)
from aegis_gov._budget import BudgetMeter
from aegis_gov._progress_view import EndpointRow
from pytest_httpserver import HTTPServer

from tests.gov.conftest import FakeClock
from tests.gov.fake_providers import serve_anthropic

NO_USAGE = Usage()
LIMIT_60 = Limits(requests_per_minute=60)


def _recording(clock: FakeClock, times: list[float], usage: Usage = NO_USAGE) -> ScriptedAdapter:
    def reply(_messages: Sequence[Message]) -> ChatResponse:
        times.append(clock.now)
        return ChatResponse("ok", usage=usage)

    return ScriptedAdapter(reply, name="gpt-test")


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
@pytest.mark.parametrize("key", ["gpt-test", "scripted:gpt-test"])
def test_requests_per_minute_are_paced_first_come_first_served(
    clock: FakeClock, use_async: bool, key: str
) -> None:
    times: list[float] = []
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=1, clock=clock),
        default_adapter=_recording(clock, times),
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        clock=clock,
        limits={key: Limits(requests_per_minute=6)},
    )
    tasks = [Task(f"t{i}", agent="w") for i in range(10)]
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    result = asyncio.run(oma.arun_tasks(tasks, team)) if use_async else oma.run_tasks(tasks, team)
    assert {r.status for r in result.values()} == {TaskState.DONE}
    # Spaced evenly: one every ten seconds.
    assert times == pytest.approx([0, 10, 20, 30, 40, 50, 60, 70, 80, 90])


@pytest.mark.parametrize(("burst", "expected"), [(None, [0, 0.5, 1, 1.5]), (3, [0, 0, 0, 0.5])])
def test_a_declared_rate_is_spaced_evenly_unless_a_burst_is_declared(
    clock: FakeClock, burst: float | None, expected: list[float]
) -> None:
    # Found by counting what the traffic benchmark's server saw: a second's worth sent at once
    # (20 at 1,200 a minute) drew 429s from a provider that takes two at a time; every 429 of
    # a declared run came in its first second.
    times: list[float] = []
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=8, clock=clock),
        default_adapter=_recording(clock, times),
        sleep=clock.sleep,
        clock=clock,
        limits={"gpt-test": Limits(requests_per_minute=120, burst=burst)},
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    oma.run_tasks([Task(f"t{i}", agent="w") for i in range(4)], team)
    assert sorted(times) == pytest.approx(expected)


def test_a_limit_that_matches_no_model_of_a_run_is_named(clock: FakeClock) -> None:
    oma = OpenMultiAgent(
        AgentPool(clock=clock),
        default_adapter=ScriptedAdapter(["ok"], name="gpt-test"),
        clock=clock,
        limits={"gpt-tset": Limits(requests_per_minute=60)},  # a typo
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    with pytest.warns(UserWarning, match=r"limits\['gpt-tset'\] matches no model .*'gpt-test'\?"):
        oma.run_tasks([Task("a", agent="w")], team)


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
def test_two_keys_naming_one_model_with_different_limits_are_named(
    clock: FakeClock, use_async: bool
) -> None:
    # Found by an adversarial review: {"m": 6/min, "scripted:m": 6000/min} was taken
    # silently, and which one applied was written nowhere.
    model = ScriptedAdapter(["ok"], name="gpt-test", cycle=True)
    slow, fast = Limits(requests_per_minute=6), Limits(requests_per_minute=6000)
    oma = OpenMultiAgent(
        AgentPool(clock=clock),
        default_adapter=model,
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        clock=clock,
        limits={"gpt-test": slow, f"{model.endpoint.provider}:gpt-test": fast},
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for run in range(2):  # said once, not at every run
            tasks = [Task(f"a{run}", agent="w")]
            if use_async:
                asyncio.run(oma.arun_tasks(tasks, team))
            else:
                oma.run_tasks(tasks, team)
    said = [w for w in caught if "different values" in str(w.message)]
    assert len(said) == 1
    assert str(said[0].message) == (
        "limits 'scripted:gpt-test', 'gpt-test' all name the endpoint "
        f"{model.endpoint.key!r} with different values: only limits['scripted:gpt-test'] "
        "applies (an endpoint key wins over 'provider:model', which wins over a model name)"
    )
    if not use_async:  # (a coroutine's frames start at the event loop)
        assert said[0].filename == __file__  # it points at the caller's line
    # A single agent's call says so too, pointing at its caller.
    lone = OpenMultiAgent(
        default_adapter=model, limits={"gpt-test": slow, "scripted:gpt-test": fast}
    )
    with pytest.warns(UserWarning, match="different values") as agent_warned:
        lone.run_agent(AgentConfig(name="w"), "hi")
    assert agent_warned[0].filename == __file__
    # The same limits under two names are no conflict.
    same = OpenMultiAgent(
        default_adapter=model, limits={"gpt-test": fast, "scripted:gpt-test": fast}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same.run_tasks(
            [Task("b", agent="w")], OpenMultiAgent.create_team("t", AgentConfig(name="w"))
        )


def test_a_fallback_equal_to_the_primary_is_refused() -> None:
    model = ScriptedAdapter(["ok"], name="gpt-test")
    oma = OpenMultiAgent(default_adapter=model)
    agent = AgentConfig(name="w", fallbacks=[model])
    team = OpenMultiAgent.create_team("t", agent)
    with pytest.raises(ValueError, match=r"agent 'w': fallbacks\[0\] is the same endpoint"):
        oma.run_tasks([Task("a", agent="w")], team)


@pytest.mark.parametrize(
    ("usage", "prompt"),
    [
        # Each call reports 600 tokens; 1,200 a minute allows two calls a minute.
        (Usage(500, 100), ""),
        # Found by an adversarial review: an input count the adapter cannot read (2**41,
        # 1e400, "10000": read as 0) beside a real output count of 1 made the bucket refund
        # the whole input estimate, so calls of about 600 tokens each went at once. The
        # unread count is estimated on its own (2,400 characters: about 600 tokens).
        (Usage(0, 1), "x" * 2400),
    ],
    ids=["reported", "input-unreadable"],
)
def test_tokens_per_minute_use_the_reported_usage(
    clock: FakeClock, usage: Usage, prompt: str
) -> None:
    times: list[float] = []
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=1, clock=clock),
        default_adapter=_recording(clock, times, usage=usage),
        sleep=clock.sleep,
        clock=clock,
        limits={"gpt-test": Limits(tokens_per_minute=1200)},
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    result = oma.run_tasks([Task(f"t{i}", prompt, agent="w") for i in range(4)], team)
    assert {r.status for r in result.values()} == {TaskState.DONE}
    assert times[0] == 0
    # After the first two calls used the bucket up, later calls wait for it to refill.
    assert times[-1] >= 29.0


def test_a_declared_max_concurrent_replaces_the_adaptive_limit(clock: FakeClock) -> None:
    adapter = ScriptedAdapter(["ok"], name="gpt-test")
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=8, clock=clock),
        default_adapter=adapter,
        clock=clock,
        limits={"gpt-test": Limits(max_concurrent=2)},
    )
    oma.run_agent(AgentConfig(name="w"), "hi")
    adaptive = oma.get_status().endpoints[adapter.endpoint.key].adaptive
    assert adaptive is not None
    assert (adaptive.limit, adaptive.max_limit) == (2, 2)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="requests_per_minute must be positive"):
        Limits(requests_per_minute=0)
    with pytest.raises(TypeError, match="max_concurrent must be an int"):
        Limits(max_concurrent=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="burst must be at least 1"):
        Limits(requests_per_minute=60, burst=0.5)
    with pytest.raises(ValueError, match="burst needs requests_per_minute"):
        Limits(tokens_per_minute=60, burst=2)
    with pytest.raises(TypeError, match=r"limits\['m'\] must be a Limits"):
        OpenMultiAgent(limits={"m": 5})  # type: ignore[dict-item]


def test_a_rate_too_small_to_wait_for_is_refused_or_bounded(clock: FakeClock) -> None:
    # A second adversarial pass: 1e-300 requests a minute crashed with OverflowError, and
    # tiny rates waited without bound.
    with pytest.raises(ValueError, match=r"requests_per_minute must be at least 0\.001"):
        Limits(requests_per_minute=1e-300)
    times: list[float] = []
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=1, clock=clock),
        default_adapter=_recording(clock, times),
        sleep=clock.sleep,
        clock=clock,
        retry=RetryPolicy(max_total_delay_s=60.0),
        limits={"gpt-test": Limits(requests_per_minute=0.01)},  # one every 100 minutes
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    result = oma.run_tasks([Task("a", agent="w"), Task("b", agent="w")], team)
    assert result["a"].status is TaskState.DONE
    assert result["b"].status is TaskState.FAILED
    assert result["b"].error_type == "RateLimitExceededError"
    assert len(times) == 1


def test_a_task_given_up_while_waiting_its_turn_sends_nothing(clock: FakeClock) -> None:
    # Its thread cannot be killed: once the run has given it up (past its deadline), it must
    # not send when its turn comes.
    threads_before = set(threading.enumerate())
    release = threading.Event()
    times: list[float] = []

    def sleep(_seconds: float) -> None:
        clock.now += 100.0  # past the task's deadline: the driver gives the task up
        release.wait(timeout=10)

    oma = OpenMultiAgent(
        AgentPool(max_concurrent=2, clock=clock),
        default_adapter=_recording(clock, times),
        sleep=sleep,
        clock=clock,
        limits={"gpt-test": Limits(requests_per_minute=1)},
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="w"))
    result = oma.run_tasks([Task("a", agent="w"), Task("b", agent="w")], team, task_timeout_s=30.0)
    assert result["b"].error_type == "DeadlineExceededError"
    release.set()
    oma.close()
    for worker in set(threading.enumerate()) - threads_before:  # this run's, not others'
        worker.join(timeout=10)
    assert len(times) == 1  # only a's request: b, given up while waiting, sent nothing


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "asyncio"])
def test_requests_waiting_their_turn_show_as_paced(clock: FakeClock, use_async: bool) -> None:
    adapter = ScriptedAdapter(["first", "second"], name="gpt-test")
    key = adapter.endpoint.key
    seen: list[int] = []

    def paced() -> int:
        adaptive = oma.get_status().endpoints[key].adaptive
        assert adaptive is not None
        return adaptive.paced

    def sleep(seconds: float) -> None:
        seen.append(paced())  # read while the second request waits its turn
        clock.sleep(seconds)

    async def async_sleep(seconds: float) -> None:
        sleep(seconds)

    oma = OpenMultiAgent(
        default_adapter=adapter,
        limits={"gpt-test": Limits(requests_per_minute=60)},
        sleep=sleep,
        async_sleep=async_sleep,
        clock=clock,
    )
    agent = AgentConfig(name="w")
    for _ in range(2):
        if use_async:
            asyncio.run(oma.arun_agent(agent, "hi"))
        else:
            oma.run_agent(agent, "hi")
    assert seen == [1]  # one wait, of the second request, and it showed
    assert clock.sleeps == [pytest.approx(1.0)]
    assert paced() == 0


def test_the_live_tables_limiter_column_shows_requests_paced() -> None:
    row = EndpointRow(
        "scripted|scripted://m|m",
        "scripted:m",
        declared=Limits(requests_per_minute=240),
        adaptive=AdaptiveStatus(limit=4, in_flight=1, overloads=0, max_limit=4, paced=2),
    )
    assert row.limiter() == "240 req/min, adaptive, 2 paced"
    assert row.adaptive is not None
    held = attrs.evolve(row, adaptive=attrs.evolve(row.adaptive, held_s=12.2))
    assert held.limiter() == "240 req/min, adaptive, 2 paced, held 13 s by Retry-After"


def test_one_endpoint_spelled_two_ways_shares_its_breaker_and_declared_limit(
    httpserver: HTTPServer, clock: FakeClock
) -> None:
    # "http://127.0.0.1:P/" and "HTTP://127.0.0.1:P" reach one server; as two endpoints they
    # had two breakers and two buckets, and a limit keyed by one spelling missed the other.
    times: list[float] = []

    def answer(_body: dict[str, object]) -> str:
        times.append(clock.now)
        return "ok"

    serve_anthropic(httpserver, answer)
    url = httpserver.url_for("/")
    assert url.endswith("/")
    spelled = [url, url.rstrip("/").replace("http://", "HTTP://")]
    agents = [
        AgentConfig(f"a{i}", adapter=AnthropicAdapter("claude-t", api_key="k", base_url=u))
        for i, u in enumerate(spelled)
    ]
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=1, clock=clock),
        sleep=clock.sleep,
        clock=clock,
        limits={f"anthropic|{url.upper().replace('HTTP://', 'http://')}|claude-t": LIMIT_60},
    )
    team = OpenMultiAgent.create_team("t", *agents)
    tasks = [Task(f"t{i}", agent=f"a{i % 2}") for i in range(4)]
    result = oma.run_tasks(tasks, team)
    assert result.summary() == {"done": 4}
    # One endpoint: one breaker, and one bucket of 60 a minute for both agents.
    assert list(oma.get_status().endpoints) == [f"anthropic|{url.rstrip('/')}|claude-t"]
    assert times == pytest.approx([0, 1, 2, 3])


def test_two_limits_keys_naming_one_endpoint_must_agree() -> None:
    same = {"openai|http://h/v1|m": LIMIT_60, "openai|HTTP://H:80/v1/|m": LIMIT_60}
    assert list(OpenMultiAgent(limits=same)._caller._limits) == ["openai|http://h/v1|m"]
    with pytest.raises(ValueError, match=r"limits\['openai\|HTTP://H:80/v1/\|m'\] and "):
        OpenMultiAgent(limits={**same, "openai|HTTP://H:80/v1/|m": Limits(max_concurrent=2)})


def test_keys_naming_one_endpoint_never_quote_its_credentials() -> None:
    # The conflict message quoted both keys as written, password included.
    secret = "sk-LIVE-SECRET-123456"
    with pytest.raises(ValueError, match="credentials are not part of it") as info:
        OpenMultiAgent(
            limits={
                f"openai|https://u:{secret}@api.x.com/v1|m": LIMIT_60,
                f"openai|https://u:{secret}@API.x.com/v1/|m": Limits(max_concurrent=2),
            }
        )
    assert secret not in str(info.value)
    with pytest.raises(TypeError) as bad:
        OpenMultiAgent(limits={f"openai|https://h/v1?api_key={secret}|m": 5})  # type: ignore[dict-item]
    assert secret not in str(bad.value)


def test_prices_keyed_by_endpoint_match_however_the_url_is_spelled() -> None:
    # Found by an adversarial review: the docs' Azure example with a trailing slash, priced by
    # its endpoint key as written, was refused up front ("a cost budget needs a price").
    url = "https://my-resource.openai.azure.com/openai/v1/"
    budget = Budget(max_cost_usd=1.0, prices={f"openai|{url}|gpt-x": Price(1.0, 1.0)})
    assert list(budget.prices) == [f"openai|{url.rstrip('/')}|gpt-x"]
    meter = BudgetMeter(budget)
    endpoint = OpenAIAdapter("gpt-x", base_url=url, api_key="k").endpoint
    meter.check_prices([(endpoint, endpoint.key)])  # no ValueError: the price is found


@pytest.mark.parametrize("key_url", ["plain", "with credentials"])
def test_a_url_with_credentials_is_one_endpoint_with_the_same_url_without(
    httpserver: HTTPServer, clock: FakeClock, key_url: str
) -> None:
    # Found by an adversarial review: "http://user:pw@host/v1" was the endpoint
    # "http://***@host/v1", so the same server with and without credentials in its URL was
    # two endpoints (two breakers, two limits), and a limits key written with the plain URL
    # matched nothing. Credentials are not part of an endpoint.
    secret = "pw-SECRET-42"
    times: list[float] = []

    def answer(_body: dict[str, object]) -> str:
        times.append(clock.now)
        return "ok"

    serve_anthropic(httpserver, answer)
    plain = httpserver.url_for("/").rstrip("/")
    with_credentials = plain.replace("http://", f"http://user:{secret}@")
    adapters = [
        AnthropicAdapter("claude-t", api_key="k", base_url=u) for u in (with_credentials, plain)
    ]
    agents = [AgentConfig(f"a{i}", adapter=adapter) for i, adapter in enumerate(adapters)]
    key = f"anthropic|{plain if key_url == 'plain' else with_credentials}|claude-t"
    oma = OpenMultiAgent(
        AgentPool(max_concurrent=1, clock=clock), sleep=clock.sleep, clock=clock,
        limits={key: LIMIT_60},
    )  # fmt: skip
    team = OpenMultiAgent.create_team("t", *agents)
    tasks = [Task(f"t{i}", agent=f"a{i % 2}") for i in range(4)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = oma.run_tasks(tasks, team)
    assert [str(w.message) for w in caught] == []  # the key matches
    assert result.summary() == {"done": 4}
    assert [adapter.endpoint.key for adapter in adapters] == [f"anthropic|{plain}|claude-t"] * 2
    # One endpoint: one breaker, and one bucket of 60 a minute for both agents.
    assert list(oma.get_status().endpoints) == [f"anthropic|{plain}|claude-t"]
    assert times == pytest.approx([0, 1, 2, 3])
    assert secret not in repr(oma.get_status())
    assert secret not in result.to_json()


def test_limits_keys_differing_only_by_credentials_name_one_endpoint() -> None:
    # Two keys for one URL, with and without credentials, are one key; with different
    # values they are refused, without quoting the credentials.
    plain, secret = "openai|http://h:8080/v1|m", "pw-SECRET-43"
    spelled = plain.replace("http://", f"http://u:{secret}@")
    same = {plain: LIMIT_60, spelled: LIMIT_60}
    assert list(OpenMultiAgent(limits=same)._caller._limits) == [plain]
    with pytest.raises(ValueError, match="credentials are not part of it") as info:
        OpenMultiAgent(limits={plain: LIMIT_60, spelled: Limits(requests_per_minute=61)})
    assert secret not in str(info.value)
    assert f"'{plain}'" in str(info.value)


def test_the_live_table_shows_a_limit_keyed_by_another_spelling_of_the_url() -> None:
    from aegis_gov._progress import ProgressTracker  # noqa: PLC0415

    endpoint = "openai|http://h:8080/v1|m"
    for key in (endpoint, "openai|HTTP://u:pw@H:8080/v1/|m"):
        tracker = ProgressTracker(
            [Task("t", agent="a")], {"a": endpoint}, clock=lambda: 0.0, limits={key: LIMIT_60}
        )
        assert [row.declared for row in tracker.endpoint_rows()] == [LIMIT_60]


def test_keys_differing_only_by_credentials_are_told_apart_by_their_places() -> None:
    # Found by an adversarial review: both keys read "openai|http://***@h/v1|m" once
    # redacted, so the message did not say which two lines were meant.
    limits = {
        "openai|http://u:pw-SECRET-1@h/v1|m": LIMIT_60,
        "m": LIMIT_60,
        "openai|http://u:pw-SECRET-2@h/v1|m": Limits(requests_per_minute=61),
    }
    with pytest.raises(ValueError, match="credentials are not part of it") as info:
        OpenMultiAgent(limits=limits)
    message = str(info.value)
    assert "SECRET" not in message
    assert "(the 3rd and the 1st key of limits, in the order written)" in message


@pytest.mark.parametrize("password", ["p@SECRET", "p'SECRET", "p SECRET"])
def test_a_key_that_is_not_an_endpoint_key_is_quoted_without_its_password(
    password: str,
) -> None:
    # Found by an adversarial review: such a key was redacted as free text, where a URL's
    # userinfo ends at the first '@', quote or space, and the rest of the password showed.
    with pytest.raises(TypeError) as bad:
        OpenMultiAgent(limits={f"openai|http://user:{password}@host/v1": 5})  # type: ignore[dict-item]
    assert "SECRET" not in str(bad.value)
    assert "http://***@host/v1" in str(bad.value)


@pytest.mark.parametrize(
    "url",
    ["https://h/v1?pw=SECRET-1", "https://h/v1?pass=SECRET-1", "https://h/v1?sk-abcSECRET12345=1",
     "https://h/gsk_SECRET1234567890/v1", "https://user:123/abcSECRET@host/v1"],
)  # fmt: skip
def test_a_key_is_quoted_with_its_model_and_without_its_credentials(url: str) -> None:
    # Found by an adversarial review: these credentials were quoted, and a credential's
    # value ("?pw=...|m") ran on over the model, which was then not quoted.
    from aegis_gov._checks import shown_key  # noqa: PLC0415

    shown = shown_key(f"openai|{url}|m")
    assert "SECRET" not in shown
    assert shown.startswith("openai|https://")
    assert shown.endswith("|m")
    with pytest.raises(TypeError) as bad:
        OpenMultiAgent(limits={f"openai|{url}|m": 5})  # type: ignore[dict-item]
    assert "SECRET" not in str(bad.value)
