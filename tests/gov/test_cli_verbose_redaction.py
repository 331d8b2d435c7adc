"""``aegis -v``: details on stderr, but never a credential written in a base URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response


def _answer(request: Request) -> Response:
    body = json.loads(request.get_data())
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": body["model"],
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
    }
    if body.get("stream"):
        return Response(
            f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n", content_type="text/event-stream"
        )
    message = {"role": "assistant", "content": "hi"}
    payload = {
        **chunk,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }
    return Response(json.dumps(payload), content_type="application/json")


def test_verbose_logs_never_show_base_url_credentials(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_handler(_answer)
    url = httpserver.url_for("/v1").replace("://", "://user:hunter2@")
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(
        textwrap.dedent(
            f"""
            [[agents]]
            name = "a"
            provider = "openai"
            model = "gpt-test"
            base_url = "{url}"
            api_key_env = "TEST_KEY"

            [[tasks]]
            id = "t"
            agent = "a"
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if "API_KEY" not in k}
    env["TEST_KEY"] = "sk-test"
    proc = subprocess.run(
        [sys.executable, "-m", "aegis_gov._cli", "-v", "run", str(pipeline), "--plain"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout
    assert len(httpserver.log) >= 1
