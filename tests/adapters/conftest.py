"""Fixtures of the adapter tests: raw socket servers that drop or stall."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.adapters._support import RawServer

RawFactory = Callable[[Callable[[socket.socket, threading.Event], None]], RawServer]


@pytest.fixture
def raw_server() -> Iterator[RawFactory]:
    servers: list[RawServer] = []

    def start(respond: Callable[[socket.socket, threading.Event], None]) -> RawServer:
        server = RawServer(respond)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
