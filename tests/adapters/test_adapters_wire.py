"""Each provider adapter end to end, through its real SDK (or requests) and a loopback server."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import pytest
from aegis_adapters import (
    ChatAdapter,
    ChatResponse,
    InvalidRequestError,
    LLMAdapter,
    ToolCall,
    Usage,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.adapters._support import CONVERSATION, MODES, SYSTEM, WIRES, Mode, Wire, run

pytestmark = pytest.mark.timeout(20)


def _serve(httpserver: HTTPServer, wire: Wire, *, stream_body: str | None = None) -> None:
    def handler(request: Request) -> Response:
        body = json.loads(request.data)
        if body.get("stream"):
            return Response(stream_body or wire.stream_ok, content_type=wire.stream_type)
        return Response(json.dumps(wire.reply), content_type="application/json")

    httpserver.expect_request(wire.path, method="POST").respond_with_handler(handler)


def _sent(httpserver: HTTPServer) -> dict[str, Any]:
    assert len(httpserver.log) == 1  # max_retries=0: one call, one request
    body: dict[str, Any] = json.loads(httpserver.log[0][0].data)
    return body


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_reply_with_text_tool_call_usage_and_stop_reason(
    httpserver: HTTPServer, wire: Wire, mode: Mode
) -> None:
    _serve(httpserver, wire)
    adapter = wire.make(httpserver.url_for("").rstrip("/"))
    deltas: list[str] = []

    response = run(adapter, mode, deltas=deltas)

    assert response.text == "Hello world"
    assert [(c.name, dict(c.arguments)) for c in response.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert all(c.id for c in response.tool_calls)
    assert response.usage == Usage(12, 7)
    assert response.stop_reason == "tool_use"
    assert response.model is not None
    assert response.model.endswith("-test")
    if mode in {"stream", "astream"}:
        assert deltas == ["Hello", " world"]
    wire.check_request(_sent(httpserver), mode in {"stream", "astream"})


@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_a_conversation_with_tool_results_is_sent_in_the_providers_shape(
    httpserver: HTTPServer, wire: Wire
) -> None:
    _serve(httpserver, wire)
    adapter = wire.make(httpserver.url_for("").rstrip("/"))

    adapter.chat(CONVERSATION, system=SYSTEM)

    wire.check_conversation(_sent(httpserver))


@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_prompt_level_api_sync_and_async(httpserver: HTTPServer, wire: Wire) -> None:
    import asyncio  # noqa: PLC0415

    _serve(httpserver, wire)
    adapter = wire.make(httpserver.url_for("").rstrip("/"))
    assert isinstance(adapter, ChatAdapter)
    assert isinstance(adapter, LLMAdapter)

    async def both() -> tuple[str, list[str]]:
        return await adapter.agenerate("hi"), [c async for c in adapter.astream("hi")]

    assert adapter.generate("hi", system="s") == "Hello world"
    assert list(adapter.stream("hi")) == ["Hello", " world"]
    assert asyncio.run(both()) == ("Hello world", ["Hello", " world"])
    first = json.loads(httpserver.log[0][0].data)
    assert "tools" not in first


@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_concurrent_calls_from_threads_share_one_adapter(
    httpserver: HTTPServer, wire: Wire
) -> None:
    _serve(httpserver, wire)
    adapter = wire.make(httpserver.url_for("").rstrip("/"))
    barrier = threading.Barrier(6)
    results: list[ChatResponse] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        response = run(adapter, "stream")
        with lock:
            results.append(response)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.text for r in results] == ["Hello world"] * 6
    assert len(httpserver.log) == 6


@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_adapters_pickle_after_use(httpserver: HTTPServer, wire: Wire) -> None:
    import pickle  # noqa: PLC0415

    _serve(httpserver, wire)
    adapter = wire.make(httpserver.url_for("").rstrip("/"))
    adapter.chat(CONVERSATION)

    clone = pickle.loads(pickle.dumps(adapter))

    assert clone.endpoint == adapter.endpoint
    assert clone.chat(CONVERSATION).tool_calls[0].name == "get_weather"
    assert "sk-test" not in repr(clone)


def test_openai_stream_usage_can_be_turned_off(httpserver: HTTPServer) -> None:
    from tests.adapters._support import OPENAI  # noqa: PLC0415

    _serve(httpserver, OPENAI)
    adapter = OPENAI.make(httpserver.url_for("").rstrip("/"), stream_usage=False)

    run(adapter, "stream")

    assert "stream_options" not in _sent(httpserver)


def test_anthropic_text_only_reply_is_end_turn(httpserver: HTTPServer) -> None:
    from tests.adapters._support import ANTHROPIC  # noqa: PLC0415

    reply = dict(ANTHROPIC.reply)
    reply["content"] = [{"type": "text", "text": "Hi"}]
    reply["stop_reason"] = "end_turn"
    httpserver.expect_request(ANTHROPIC.path).respond_with_json(reply)

    response = ANTHROPIC.make(httpserver.url_for("").rstrip("/")).chat(CONVERSATION[:1])

    assert response == ChatResponse("Hi", usage=Usage(12, 7), stop_reason="end_turn",
                                    model="claude-test")  # fmt: skip


def test_tool_call_values_are_frozen_copies() -> None:
    arguments = {"city": "Paris"}
    call = ToolCall("1", "get_weather", arguments)
    arguments["city"] = "Rome"
    assert call.arguments == {"city": "Paris"}


@pytest.mark.parametrize("mode", MODES)
def test_openai_calls_go_through_a_create_that_tracing_wrapped(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, mode: Mode
) -> None:
    # A non-streamed call skips the SDK's create while it is the SDK's own (see
    # OpenAIAdapter._post); tracing integrations (Sentry, Datadog, OpenTelemetry) wrap it to
    # record every call, and must still see each one, with the SDK's typed reply.
    import functools  # noqa: PLC0415

    from openai.resources.chat.completions import (  # noqa: PLC0415
        AsyncCompletions,
        Completions,
    )

    from tests.adapters._support import OPENAI  # noqa: PLC0415

    seen: list[str] = []

    def traced(cls: Any) -> None:  # the SDK's classes are untyped here
        original = cls.create
        if mode.startswith("a"):

            @functools.wraps(original)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                result = await original(*args, **kwargs)
                seen.append(type(result).__name__)
                return result

        else:

            @functools.wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                result = original(*args, **kwargs)
                seen.append(type(result).__name__)
                return result

        monkeypatch.setattr(cls, "create", wrapper)

    traced(AsyncCompletions if mode.startswith("a") else Completions)
    _serve(httpserver, OPENAI)

    response = run(OPENAI.make(httpserver.url_for("").rstrip("/")), mode)

    assert seen == ["Stream" if mode == "stream" else "AsyncStream" if mode == "astream"
                    else "ChatCompletion"]  # fmt: skip
    assert (response.text, response.usage) == ("Hello world", Usage(12, 7))
    OPENAI.check_request(_sent(httpserver), mode in {"stream", "astream"})


@pytest.mark.parametrize("mode", ["chat", "achat"])
def test_openai_subclass_adding_create_arguments_still_gets_them_sent(
    httpserver: HTTPServer, mode: Mode
) -> None:
    # Found by an adversarial review: a subclass adding the SDK's extra_body in _request had
    # it sent as a literal "extra_body" field, and one passing extra_headers from _create
    # had them dropped, once non-streamed calls skipped create.
    from aegis_adapters import OpenAIAdapter  # noqa: PLC0415

    from tests.adapters._support import OPENAI  # noqa: PLC0415

    class WithExtraBody(OpenAIAdapter):
        def _request(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            sent = super()._request(*args, **kwargs)
            sent["extra_body"] = {"top_k": 5}
            return sent

    class WithHeader(OpenAIAdapter):
        def _create(self, client: Any, kwargs: dict[str, Any]) -> Any:
            return super()._create(client, {**kwargs, "extra_headers": {"X-Trace": "t1"}})

    _serve(httpserver, OPENAI)
    url = httpserver.url_for("").rstrip("/") + "/v1"
    for adapter in (WithExtraBody("m", base_url=url), WithHeader("m", base_url=url)):
        httpserver.clear_log()
        response = run(adapter, mode)
        assert response.text == "Hello world"
        request = httpserver.log[0][0]
        body = json.loads(request.data)
        assert "extra_body" not in body
        if isinstance(adapter, WithExtraBody):
            assert body["top_k"] == 5
        else:
            assert request.headers.get("X-Trace") == "t1"


def test_openai_create_mocked_on_the_client_itself_sees_the_call(httpserver: HTTPServer) -> None:
    # The same for a create replaced on the client's completions object, as
    # mock.patch.object(client.chat.completions, "create") does.
    from unittest import mock  # noqa: PLC0415

    from tests.adapters._support import OPENAI  # noqa: PLC0415

    _serve(httpserver, OPENAI)
    from aegis_adapters import OpenAIAdapter  # noqa: PLC0415

    adapter = OPENAI.make(httpserver.url_for("").rstrip("/"))
    assert isinstance(adapter, OpenAIAdapter)
    completions = adapter._sync_client().chat.completions  # the one it uses
    with mock.patch.object(completions, "create", wraps=completions.create) as create:
        response = run(adapter, "chat")
    assert create.call_count == 1
    assert response.text == "Hello world"


_USAGE_FIELDS = re.compile(
    r'"(input_tokens|output_tokens|prompt_tokens|completion_tokens|total_tokens'
    r'|prompt_eval_count|eval_count)": \d+'
)


def _serve_with_usage(httpserver: HTTPServer, wire: Wire, count: str) -> None:
    """Serve *wire*'s reply and stream with every usage count replaced by *count* (JSON)."""

    def absurd(text: str) -> str:
        return _USAGE_FIELDS.sub(lambda m: f'"{m.group(1)}": {count}', text)

    reply, stream = absurd(json.dumps(wire.reply)), absurd(wire.stream_ok)
    assert count in reply
    assert count in stream

    def handler(request: Request) -> Response:
        if json.loads(request.data).get("stream"):
            return Response(stream, content_type=wire.stream_type)
        return Response(reply, content_type="application/json")

    httpserver.expect_request(wire.path, method="POST").respond_with_handler(handler)


@pytest.mark.parametrize("count", [2**64 - 1, 10**400], ids=["uint64-underflow", "10**400"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
def test_a_usage_count_no_call_can_have_is_read_as_not_reported(
    httpserver: HTTPServer, wire: Wire, mode: Mode, count: int
) -> None:
    # Found by an adversarial review: a gateway's uint64 underflow (2**64 - 1) went into the
    # result, which the checkpoint store and RunResult.from_json then refused (2**63 - 1 at
    # most), and 10**400 (valid JSON) crashed every budgeted run with an OverflowError.
    _serve_with_usage(httpserver, wire, str(count))

    response = run(wire.make(httpserver.url_for("").rstrip("/")), mode)

    assert response.text == "Hello world"
    assert response.usage == Usage(0, 0)


@pytest.mark.parametrize("count", [2**64 - 1, 10**400], ids=["uint64-underflow", "10**400"])
@pytest.mark.parametrize("mode", MODES)
def test_an_absurd_openai_usage_read_through_the_sdks_typed_reply_is_not_reported(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, mode: Mode, count: int
) -> None:
    # With create wrapped (as tracing integrations do), a reply comes through the SDK's typed
    # ChatCompletion instead of the raw JSON: the same bound applies there.
    import functools  # noqa: PLC0415

    from openai.resources.chat.completions import (  # noqa: PLC0415
        AsyncCompletions,
        Completions,
    )

    from tests.adapters._support import OPENAI  # noqa: PLC0415

    calls: list[int] = []
    for cls in (Completions, AsyncCompletions):
        original = cls.create
        if cls is AsyncCompletions:

            @functools.wraps(original)
            async def wrapper(*args: Any, __create: Any = original, **kwargs: Any) -> Any:
                calls.append(1)
                return await __create(*args, **kwargs)

        else:

            @functools.wraps(original)
            def wrapper(*args: Any, __create: Any = original, **kwargs: Any) -> Any:
                calls.append(1)
                return __create(*args, **kwargs)

        monkeypatch.setattr(cls, "create", wrapper)

    _serve_with_usage(httpserver, OPENAI, str(count))

    response = run(OPENAI.make(httpserver.url_for("").rstrip("/")), mode)

    assert calls == [1]
    assert (response.text, response.usage) == ("Hello world", Usage(0, 0))


_NOT_INTEGERS = {"str": '"5000"', "bool": "true", "float": "5000.0", "digits": "1" + "0" * 5000}
"""Usage counts that are not plain JSON integers: the last is past Python's 4300-digit limit."""


@pytest.mark.parametrize("count", _NOT_INTEGERS.values(), ids=_NOT_INTEGERS.keys())
@pytest.mark.parametrize("mode", MODES)
def test_a_usage_count_ollama_sends_that_is_not_an_integer_is_read_as_not_reported(
    httpserver: HTTPServer, mode: Mode, count: str
) -> None:
    # Found by an adversarial review: an integer of more than 4300 digits (past Python's
    # int-string conversion limit) failed the whole call with a permanent error, though the
    # answer was fine. The adapter parses this JSON itself: the number stays text, which
    # as_int reads as not reported, like any other unreadable count.
    from tests.adapters._support import OLLAMA  # noqa: PLC0415

    _serve_with_usage(httpserver, OLLAMA, count)

    response = run(OLLAMA.make(httpserver.url_for("").rstrip("/")), mode)

    assert (response.text, response.usage) == ("Hello world", Usage(0, 0))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", WIRES[:2], ids=lambda w: w.name)
def test_a_usage_count_past_the_int_limit_in_an_sdk_reply_is_a_named_malformed_response(
    httpserver: HTTPServer, wire: Wire, mode: Mode
) -> None:
    # The SDK parses the JSON and fails before the adapter sees it: the error says the
    # response is malformed, and why.
    _serve_with_usage(httpserver, wire, _NOT_INTEGERS["digits"])

    with pytest.raises(InvalidRequestError, match=rf"{wire.name}: malformed response: .*4300 dig"):
        run(wire.make(httpserver.url_for("").rstrip("/")), mode)


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_later_empty_usage_in_an_openai_stream_keeps_the_real_one(
    httpserver: HTTPServer, mode: Mode
) -> None:
    # Found by an adversarial review: a chunk with "usage": {} after the real usage chunk
    # (some gateways repeat the field) wiped it to Usage(0, 0), so the call was billed by
    # estimate. Counts are taken one by one: a later unreadable or missing one keeps the last.
    openai = next(wire for wire in WIRES if wire.name == "openai")
    extra = (
        'data: {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, '
        '"model": "gpt-test", "choices": [], "usage": {}}\n\n'
    )
    stream = openai.stream_ok.replace("data: [DONE]", extra + "data: [DONE]", 1)
    assert stream.count('"usage"') == 2
    httpserver.expect_request(openai.path, method="POST").respond_with_data(
        stream, content_type=openai.stream_type
    )

    response = run(openai.make(httpserver.url_for("").rstrip("/")), mode)

    assert response.usage == Usage(12, 7)
