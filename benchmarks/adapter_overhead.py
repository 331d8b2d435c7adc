"""CPU time of one ``OpenAIAdapter.chat`` against the bare ``openai`` SDK call, in one run.

The loopback OpenAI-compatible server of ``traffic_governance.py`` (a healthy endpoint, no
delay) answers both. Each round times ``CALLS`` calls of each side, alternating which goes first:
the adapter's ``chat`` (request built from ``Message`` objects, the reply parsed into a
``ChatResponse``) and the SDK's ``client.chat.completions.create(...)`` with the same
arguments, whose typed reply is not read further. CPU time is ``time.process_time`` of the
whole process, so the server's share is in both sides alike. The figure is the adapter's
CPU per call against the SDK's, median over ``ROUNDS`` rounds: what the adapter adds to
the SDK's own cost (building the request from ``Message`` objects, reading the reply back
into a ``ChatResponse``, translating errors). Also the async twins, on one event loop.

Run: ``python benchmarks/adapter_overhead.py`` (about 20 s on 2 cores; needs the
``openai`` extra of aegis-adapters).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from aegis_adapters import Message
from traffic_governance import FakeProvider, adapter, loopback  # this folder's loopback server

CALLS = 200
ROUNDS = 5


def cpu_per_call(call: Callable[[], object]) -> float:
    """CPU microseconds per call of *call*, over ``CALLS`` calls."""
    start = time.process_time()
    for _ in range(CALLS):
        call()
    return (time.process_time() - start) / CALLS * 1e6


async def acpu_per_call(call: Callable[[], Any]) -> float:
    start = time.process_time()
    for _ in range(CALLS):
        await call()
    return (time.process_time() - start) / CALLS * 1e6


def report(label: str, ours: list[float], sdk: list[float]) -> None:
    ratios = [a / b for a, b in zip(ours, sdk, strict=True)]
    print(
        f"{label:6} adapter {statistics.median(ours):7.0f} us  bare SDK "
        f"{statistics.median(sdk):7.0f} us  adapter/SDK median {statistics.median(ratios):.2f}x "
        f"({min(ratios):.2f}-{max(ratios):.2f}x over {ROUNDS} rounds)"
    )


def main() -> None:
    with loopback(fast=FakeProvider()) as url:
        chat = adapter(url, "fast")
        messages = [Message(role="user", content="ping")]
        kwargs = chat._request(messages, None, (), stream=False)  # noqa: SLF001  # the same body
        client = chat._sync_client()  # noqa: SLF001  # the adapter's own client, shared pool
        sides: dict[str, Callable[[], object]] = {
            "adapter": lambda: chat.chat(messages),
            "sdk": lambda: client.chat.completions.create(**kwargs),
        }
        for call in sides.values():  # warm both: imports, the connection, the SSL context
            call()
        ours: list[float] = []
        sdk: list[float] = []
        for i in range(ROUNDS):
            order = ("adapter", "sdk") if i % 2 == 0 else ("sdk", "adapter")
            times = {name: cpu_per_call(sides[name]) for name in order}
            ours.append(times["adapter"])
            sdk.append(times["sdk"])
        report("sync", ours, sdk)

        async def arun() -> tuple[list[float], list[float]]:
            aclient = await chat._async_client()  # noqa: SLF001
            asides: dict[str, Callable[[], Any]] = {
                "adapter": lambda: chat.achat(messages),
                "sdk": lambda: aclient.chat.completions.create(**kwargs),
            }
            for call in asides.values():
                await call()
            a_ours: list[float] = []
            a_sdk: list[float] = []
            for i in range(ROUNDS):
                order = ("adapter", "sdk") if i % 2 == 0 else ("sdk", "adapter")
                times = {name: await acpu_per_call(asides[name]) for name in order}
                a_ours.append(times["adapter"])
                a_sdk.append(times["sdk"])
            return a_ours, a_sdk

        report("async", *asyncio.run(arun()))


if __name__ == "__main__":
    main()
