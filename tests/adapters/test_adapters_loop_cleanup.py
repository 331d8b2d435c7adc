"""Async SDK clients are closed on their own event loop when that loop shuts down."""

from __future__ import annotations

import asyncio
import gc
import json
import logging

import pytest
from aegis_adapters import Message, OpenAIAdapter
from pytest_httpserver import HTTPServer

from tests.adapters._support import OPENAI_REPLY as REPLY


def test_clients_close_with_their_loop(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    httpserver.expect_request("/v1/chat/completions").respond_with_data(
        json.dumps(REPLY), content_type="application/json"
    )
    adapter = OpenAIAdapter("m", api_key="k", base_url=httpserver.url_for("/v1"))
    clients = []

    async def call() -> str:
        response = await adapter.achat([Message.user("hello")])
        loop = asyncio.get_running_loop()
        clients.append(adapter._aclients[loop][0])
        return response.text

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        assert asyncio.run(call()) == "hi"
        assert asyncio.run(call()) == "hi"  # a new loop gets its own client
        gc.collect()
        asyncio.run(asyncio.sleep(0))
    assert len(clients) == 2
    assert clients[0] is not clients[1]
    assert all(client.is_closed() for client in clients)
    assert "Event loop is closed" not in caplog.text
