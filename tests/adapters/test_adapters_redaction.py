"""Credentials written into a base URL never leave the adapter: keys, messages, reprs."""

from __future__ import annotations

import json
import pickle

import hypothesis.strategies as st
import pytest
from aegis_adapters import (
    AnthropicAdapter,
    Endpoint,
    LLMError,
    Message,
    OllamaAdapter,
    OpenAIAdapter,
    ProviderUnavailableError,
    redact_text,
    redact_url,
)
from hypothesis import given
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.adapters._support import refused_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://user:sk-1@host:8080/v1", "http://***@host:8080/v1"),
        ("https://sk-only@api.example.com", "https://***@api.example.com"),
        (
            "https://h/v1?api_key=k1&api-version=2024-10-21",
            "https://h/v1?api_key=***&api-version=2024-10-21",
        ),
        ("https://h/v1?token=t&sig=s&x=1", "https://h/v1?token=***&sig=***&x=1"),
        ("http://u:p@[::1]:11434?key=k", "http://***@[::1]:11434?key=***"),
        ("http://localhost:11434", "http://localhost:11434"),
        ("https://api.anthropic.com", "https://api.anthropic.com"),
        ("scripted://writer", "scripted://writer"),
        ("not a url at all", "not a url at all"),
        # Shapes an adversarial review found getting through:
        ("http://user:ab/cdSECRET@127.0.0.1:1/v1", "http://***@127.0.0.1:1/v1"),
        ("https://h/v1?k%65y=SECRET", "https://h/v1?k%65y=***"),
        ("https://h/v1#api_key=SECRET", "https://h/v1#api_key=***"),
        ("https://h/v1?a=1&bearer=SECRET", "https://h/v1?a=1&bearer=***"),
        ("https://h/v1?private=SECRET", "https://h/v1?private=***"),
        ("https://h/sk-SECRET12345678/v1", "https://h/***/v1"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert redact_url(expected) == expected  # idempotent


def test_redact_text_finds_urls_inside_messages() -> None:
    text = (
        "HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: "
        "/v1?api_key=sk-SECRET/api/chat (see http://bob:hunter2@h/ for details)"
    )
    redacted = redact_text(text)
    assert "sk-SECRET" not in redacted
    assert "hunter2" not in redacted
    assert "host='h', port=1" in redacted


secrets = st.text(
    alphabet=st.characters(
        min_codepoint=0x30, max_codepoint=0x7A, exclude_characters="@/?#&=;:[]\\`^"
    ),
    min_size=6,
    max_size=30,
)


@given(password=secrets, key=secrets)
def test_no_secret_survives_in_an_endpoint(password: str, key: str) -> None:
    url = f"http://user:{password}@example.test:8080/v1?api_key={key}&api-version=1"
    for adapter in (
        OpenAIAdapter("m", base_url=url, api_key="sk-x"),
        AnthropicAdapter("m", base_url=url, api_key="sk-x"),
        OllamaAdapter("m", base_url=url),
    ):
        shown = " ".join((adapter.endpoint.key, str(adapter.endpoint), repr(adapter)))
        shown += repr(adapter.endpoint)
        assert password not in shown.replace("example.test", "")
        assert key not in shown.replace("example.test", "").replace("api-version", "")
        assert "example.test:8080" in shown
    endpoint = Endpoint("openai", url, "m")
    assert endpoint == Endpoint("openai", redact_url(url), "m")


def test_ollama_still_sends_the_credentials_it_hides(httpserver: HTTPServer) -> None:
    seen: list[str | None] = []

    def handler(request: Request) -> Response:
        seen.append(request.headers.get("Authorization"))
        body = {"model": "m", "message": {"role": "assistant", "content": "hi"}, "done": True}
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/api/chat", method="POST").respond_with_handler(handler)
    url = httpserver.url_for("/").rstrip("/").replace("://", "://alice:s3cr3t-pw@")
    adapter = OllamaAdapter("m", base_url=url)
    assert adapter.chat([Message.user("x")]).text == "hi"
    assert seen
    assert seen[0] is not None
    assert seen[0].startswith("Basic ")
    assert "s3cr3t-pw" not in repr(adapter)
    # A pickled adapter (for process executors) keeps the real URL and still hides it.
    clone = pickle.loads(pickle.dumps(adapter))
    assert clone.chat([Message.user("x")]).text == "hi"
    assert "s3cr3t-pw" not in repr(clone)


@pytest.mark.parametrize("make", [OllamaAdapter, OpenAIAdapter, AnthropicAdapter])
def test_connection_errors_do_not_quote_credentials(make: type) -> None:
    url = refused_url().replace("://", "://bob:pw-SECRET@") + "/v1?api_key=key-SECRET"
    adapter = make("m", base_url=url, **({} if make is OllamaAdapter else {"api_key": "sk-x"}))
    with pytest.raises(LLMError) as info:
        adapter.chat([Message.user("x")])
    assert isinstance(info.value, ProviderUnavailableError)
    assert "SECRET" not in str(info.value)
    assert "SECRET" not in info.value.provider_message


@pytest.mark.parametrize(
    ("url", "spelled"),
    [
        (
            "http://[::1]:8080/v1/models/claude@20250514",
            "http://[::1]:8080/v1/models/claude@20250514",
        ),
        ("http://[2001:db8::1]:8443/v1/models/m@v2", "http://[2001:db8::1]:8443/v1/models/m@v2"),
        ("http://[::1]/v1@x", "http://[::1]/v1@x"),
        ("http://hostA?tag=a:b@shared", "http://hosta?tag=a:b@shared"),
        ("http://hostA/?tag=a:b@shared", "http://hosta?tag=a:b@shared"),
        ("http://hostA#x:y@z", "http://hosta#x:y@z"),
        ("http://h:8080/p:q@x", "http://h:8080/p:q@x"),
    ],
)
def test_an_at_sign_after_the_host_is_not_a_password(url: str, spelled: str) -> None:
    # Found by an adversarial review: "x:y@z" after the host was read as userinfo, so
    # "http://[::1]:8080/v1/models/claude@20250514" became the endpoint "http://20250514",
    # and servers with different hosts were one endpoint.
    assert Endpoint("openai", url, "m").base_url == spelled
    assert redact_url(url) == url
    assert redact_text(f"see {url} there") == f"see {url} there"
    # With credentials before the host, they still go, and the host stays.
    with_credentials = url.replace("://", "://user:pw-SECRET@")
    assert Endpoint("openai", with_credentials, "m").base_url == spelled
    assert redact_url(with_credentials) == url.replace("://", "://***@")
    assert "SECRET" not in redact_text(f"see {with_credentials} there")


def test_hosts_differing_before_an_at_sign_are_different_endpoints() -> None:
    urls = [
        "http://[::1]:8080/v1/models/claude@20250514",
        "http://[::2]:9090/other/claude@20250514",
        "http://[::2]:9090/v1/models/claude@20250514",
        "http://hostA?tag=a:b@shared",
        "http://hostB?tag=a:b@shared",
        "http://hostA#x:y@z",
        # Found by a later review: only ASCII names counted as a host, so these merged too.
        "http://bücherA?tag=a:b@shared",
        "http://bücherB?tag=a:b@shared",
        "http://münchen-a.example:8080?x=a:b@shared",
        "http://münchen-b.example:8080?x=a:b@shared",
        "http://a!b?x=1:2@shared",
        "http://a$b?x=1:2@shared",
        # Hosts whose first label looks like an API key ("sk-...") were both "***".
        "http://sk-aaaaaaaa1.example.com/v1",
        "http://sk-bbbbbbbb2.example.com/v1",
    ]
    assert len({Endpoint("openai", url, "m") for url in urls}) == len(urls)


def test_a_password_with_a_slash_is_still_redacted_and_a_path_key_too() -> None:
    # The wider host names above must not let a careless password through: "pa/ss" is not
    # a port, so "user:pa/ss@" is still taken for userinfo. And a key in the path still goes,
    # after a double slash too.
    assert "SECRET" not in Endpoint("openai", "http://user:pa/SECRET@host/v1", "m").key
    assert "SECRET" not in redact_text("see http://user:pa/SECRET@host/v1")
    assert "sk-SECRET" not in redact_url("http://host//sk-SECRET12345/v1")
    assert "sk-SECRET" not in Endpoint("openai", "http://host/sk-SECRET12345/v1", "m").key


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("1http://u:SECRET@h/v1", "1http://***@h/v1"),
        ("see xhttp://u:SECRET@h", "see xhttp://***@h"),
        ("a1b2https://u:SECRET@h", "a1b2https://***@h"),
        ("+.-http://SECRET@h", "+.-http://***@h"),
        ("http://u:SECRET@h and https://k:SECRET@g", "http://***@h and https://***@g"),
    ],
)
def test_a_scheme_after_digits_or_letters_is_still_found(text: str, redacted: str) -> None:
    assert redact_text(text) == redacted


def test_a_long_message_holding_an_at_sign_is_redacted_in_one_pass() -> None:
    # Found by an adversarial review: the scheme was tried at every letter of a long run,
    # each try reading the rest of it, so a 40 KB provider error holding an '@' took 3 s
    # to redact (in LLMError's constructor) and 200 KB over a minute. Now each run is tried
    # once, from its start: this returns at once (it did not finish in a minute before).
    text = "write to admin@example.com: " + "A" * 200_000 + " http://u:SECRET@h"
    assert redact_text(text).endswith(" http://***@h")
