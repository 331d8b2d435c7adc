"""Real servers for the scale-out tests: a redis-server per session (or per test) on loopback.

The tests skip, saying why, only when the ``redis-server`` binary is missing
(``apt-get install -y redis-server``). No fakes: every test talks to a real server.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process on 127.0.0.1, without persistence, that can stop and restart."""

    def __init__(self, directory: Path) -> None:
        if REDIS_SERVER is None:
            pytest.skip("redis-server binary not found: apt-get install -y redis-server")
        self.binary = REDIS_SERVER
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        assert self.process is None
        process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                "",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        seen: list[str] = []
        for line in process.stdout:  # the log says when the server is ready; no polling
            seen.append(line)
            if "Ready to accept connections" in line:
                break
        else:
            process.wait()
            raise RuntimeError(f"redis-server did not start:\n{''.join(seen)}")
        # Keep draining the log so the server never blocks on a full pipe.
        drain = subprocess.Popen(["cat"], stdin=process.stdout, stdout=subprocess.DEVNULL)
        process.stdout.close()
        self._drain = drain
        self.process = process

    def stop(self) -> None:
        """Stop the server (SIGTERM) and wait for it to exit."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        process.wait(timeout=10)
        self._drain.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server shared by the session; tests use distinct breaker names."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test, which may stop and restart it."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
