"""ScriptedAdapter and EchoAdapter: documented API for users' tests and demos."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

import pytest
from aegis_adapters import (
    ChatAdapter,
    ChatResponse,
    EchoAdapter,
    Endpoint,
    Message,
    RateLimitError,
    ScriptedAdapter,
    ScriptExhaustedError,
    TextDelta,
    ToolCall,
    Usage,
)
from hypothesis import given
from hypothesis import strategies as st

from tests.adapters._support import MODES, WEATHER, Mode, run

pytestmark = pytest.mark.timeout(20)

TOOL_REPLY = ChatResponse(
    "", tool_calls=(ToolCall("c1", "get_weather", {"city": "Paris"}),), stop_reason="tool_use"
)


@pytest.mark.parametrize("mode", MODES)
def test_scripted_replies_in_order_in_every_mode(mode: Mode) -> None:
    adapter = ScriptedAdapter(["hello there world", TOOL_REPLY])

    first = run(adapter, mode, system="sys")
    second = run(adapter, mode)

    assert first.text == "hello there world"
    assert first.stop_reason == "end_turn"
    assert first.usage == Usage(3, 3)  # words of the prompt and of the reply
    assert second == TOOL_REPLY
    assert [call.system for call in adapter.calls] == ["sys", "Be brief."]
    assert adapter.calls[0].tools == (WEATHER,)
    assert adapter.calls[0].prompt == "Weather in Paris?"


def test_streams_come_in_several_chunks() -> None:
    items = list(ScriptedAdapter(["one two three"]).chat_stream([Message.user("q")]))
    assert items[:-1] == [TextDelta("one "), TextDelta("two "), TextDelta("three")]
    assert isinstance(items[-1], ChatResponse)


@pytest.mark.parametrize("mode", MODES)
def test_scripted_exceptions_are_raised_as_fresh_copies(mode: Mode) -> None:
    error = RateLimitError("scripted", "slow down", status_code=429, retry_after_s=1.0)
    adapter = ScriptedAdapter([error], cycle=True)

    raised = []
    for _ in range(2):
        with pytest.raises(RateLimitError) as caught:
            run(adapter, mode)
        raised.append(caught.value)

    assert raised[0] is not raised[1]  # no traceback piles up on one shared object
    assert raised[0].retry_after_s == 1.0
    assert raised[0].status_code == 429


def test_exhausted_script_names_the_adapter_and_call() -> None:
    adapter = ScriptedAdapter(["only"], name="planner")
    adapter.generate("a")
    with pytest.raises(ScriptExhaustedError, match=r"'planner'.*call #2.*1 replies"):
        adapter.generate("b")


def test_cycle_repeats_the_script() -> None:
    adapter = ScriptedAdapter(["a", "b"], cycle=True)
    assert [adapter.generate("x") for _ in range(5)] == ["a", "b", "a", "b", "a"]


def test_cycle_needs_a_reply() -> None:
    with pytest.raises(ValueError, match="cycle"):
        ScriptedAdapter([], cycle=True)


def test_reply_function_sees_the_conversation() -> None:
    adapter = ScriptedAdapter(lambda messages: f"{len(messages)}:{messages[-1].content}")
    assert (
        adapter.chat([Message.user("a"), Message.assistant("b"), Message.user("c")]).text == "3:c"
    )


def test_endpoint_and_protocols() -> None:
    adapter = ScriptedAdapter(name="writer")
    assert adapter.endpoint == Endpoint("scripted", "scripted://writer", "writer")
    assert adapter.endpoint.key == "scripted|scripted://writer|writer"
    assert isinstance(adapter, ChatAdapter)
    assert EchoAdapter().endpoint.provider == "echo"


def test_concurrent_callers_get_distinct_replies() -> None:
    adapter = ScriptedAdapter([str(i) for i in range(8)])
    barrier = threading.Barrier(8)
    got: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        text = adapter.generate("x")
        with lock:
            got.append(text)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(got, key=int) == [str(i) for i in range(8)]
    assert len(adapter.calls) == 8


def test_delay_really_sleeps_sync_and_async() -> None:
    adapter = ScriptedAdapter(["a"], delay_s=0.05, cycle=True)
    started = time.monotonic()
    adapter.generate("x")
    assert time.monotonic() - started >= 0.05

    async def three_at_once() -> list[str]:
        return list(await asyncio.gather(*(adapter.agenerate("x") for _ in range(3))))

    started = time.monotonic()
    assert asyncio.run(three_at_once()) == ["a"] * 3
    elapsed = time.monotonic() - started
    assert 0.05 <= elapsed < 0.15 * 3  # asyncio.sleep: the three delays overlap


def test_negative_delay_is_rejected() -> None:
    with pytest.raises(ValueError, match="delay_s"):
        EchoAdapter(delay_s=-1)


def test_offline_adapters_pickle() -> None:
    adapter = ScriptedAdapter(["a", "b"])
    adapter.generate("x")
    clone = pickle.loads(pickle.dumps(adapter))
    assert clone.generate("y") == "b"  # the script goes on where the original was
    # Recordings stay behind: a copy sent to a worker must not carry every earlier call.
    assert [c.prompt for c in clone.calls] == ["y"]
    assert [c.prompt for c in adapter.calls] == ["x"]


@given(st.text())
def test_echo_streams_back_exactly_the_prompt(text: str) -> None:
    adapter = EchoAdapter()
    assert "".join(adapter.stream(text)) == text
    assert adapter.generate(text) == text


def test_echo_answers_the_last_user_message() -> None:
    response = EchoAdapter().chat(
        [Message.user("first"), Message.assistant("x"), Message.user("last")]
    )
    assert response.text == "last"
    assert asyncio.run(EchoAdapter().agenerate("ping")) == "ping"
