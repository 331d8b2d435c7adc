"""A base URL with credentials in it: the secret appears in no key, message, event or result."""

from __future__ import annotations

import json
import logging

import pytest
from aegis_gov import (
    AgentConfig,
    AgentPool,
    OllamaAdapter,
    OpenAIAdapter,
    OpenMultiAgent,
    RetryPolicy,
    RunEvent,
    Task,
    TaskState,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

PASSWORD = "pw-SECRET-1"
KEY = "key-SECRET-2"


def _always_503(request: Request) -> Response:
    return Response(
        json.dumps({"error": "overloaded"}), status=503, content_type="application/json"
    )


@pytest.mark.parametrize("provider", ["openai", "ollama"])
def test_credentials_in_a_base_url_reach_nothing_a_user_sees(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture, provider: str
) -> None:
    httpserver.expect_request("/v1/chat/completions").respond_with_handler(_always_503)
    httpserver.expect_request("/v1/api/chat").respond_with_handler(_always_503)
    base = httpserver.url_for("/v1").replace("://", f"://user:{PASSWORD}@") + f"?api_key={KEY}"
    if provider == "openai":
        adapter: OpenAIAdapter | OllamaAdapter = OpenAIAdapter("m", base_url=base, api_key="sk-x")
    else:
        adapter = OllamaAdapter("m", base_url=base.split("?")[0])
    pool = AgentPool(max_concurrent=2, consecutive_failure_limit=1, recovery_timeout_s=60.0)
    oma = OpenMultiAgent(
        pool,
        retry=RetryPolicy(max_attempts=2, initial_delay_s=0.01, max_delay_s=0.01),
        sleep=lambda _s: None,
    )
    team = OpenMultiAgent.create_team("t", AgentConfig(name="a", adapter=adapter))
    tasks = [Task(id=f"t{i}", description="x", agent="a") for i in range(3)]
    events: list[RunEvent] = []
    with caplog.at_level(logging.DEBUG):
        result = oma.run_tasks(tasks, team, on_event=events.append)

    assert {r.status for r in result.values()} == {TaskState.FAILED}
    seen = "\n".join(
        [
            result.to_json(),
            repr(events),
            json.dumps(oma.get_status(), default=str),
            # Our loggers; an SDK's own DEBUG logs of its requests are its business.
            *(r.getMessage() for r in caplog.records if r.name.startswith("aegis")),
            repr(adapter),
            *(str(r.error) for r in result.values()),
        ]
    )
    assert PASSWORD not in seen
    assert KEY not in seen
    # The endpoint is still named, without its credentials (they are not part of it).
    assert f"{provider}|{httpserver.url_for('/v1')}|m" in seen
    assert len(httpserver.log) >= 1  # the requests were really made
