"""A loopback OpenAI-compatible server on asyncio that answers every request after a delay.

Unlike pytest-httpserver (a thread per connection), it holds a thousand concurrent requests
cheaply, and it counts how many were in flight at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class SlowOpenAIServer:
    """Serves ``POST /v1/chat/completions`` on 127.0.0.1 after ``latency_s`` per request."""

    def __init__(
        self, latency_s: float, answer: Callable[[dict[str, object]], str] | None = None
    ) -> None:
        self.latency_s = latency_s
        self.answer = answer
        self.bodies: list[dict[str, object]] = []
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="slow-openai", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=2048)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = json.loads(await reader.readexactly(length)) if length else {}
                self.requests += 1
                self.bodies.append(body)
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                await asyncio.sleep(self.latency_s)
                self.in_flight -= 1
                text = self.answer(body) if self.answer is not None else "pong"
                if body.get("stream"):
                    writer.write(_sse(text, str(body.get("model", "m"))))
                    await writer.drain()
                    continue
                payload = json.dumps(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", "m"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                    }
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the server is shutting down
        finally:
            writer.close()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def _sse(text: str, model: str) -> bytes:
    """A whole streamed answer in OpenAI's server-sent events, as one HTTP response."""

    def chunk(delta: dict[str, object], finish: str | None, usage: object = None) -> str:
        event = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            event = {**event, "choices": [], "usage": usage}
        return f"data: {json.dumps(event)}\n\n"

    body = (
        chunk({"role": "assistant", "content": text}, None)
        + chunk({}, "stop")
        + chunk({}, None, {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
        + "data: [DONE]\n\n"
    ).encode()
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


@contextmanager
def slow_openai_server(
    latency_s: float, answer: Callable[[dict[str, object]], str] | None = None
) -> Iterator[SlowOpenAIServer]:
    server = SlowOpenAIServer(latency_s, answer)
    server.start()
    try:
        yield server
    finally:
        server.stop()
