"""Bridges from a producer that delivers chunks to an iterator a caller reads them from."""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import attrs

from aegis_gov._outcome import Failure, Outcome

__all__ = ["astream_chunks", "stream_chunks"]


@attrs.frozen
class _Done:
    """End of a stream handed from producer to consumer, with the error that ended it."""

    error: BaseException | None


def _end(outcome: Outcome) -> _Done:
    return _Done(outcome.error if isinstance(outcome, Failure) else None)


def stream_chunks(
    produce: Callable[[Callable[[str], None]], Outcome], *, name: str
) -> Iterator[str]:
    """Run ``produce(deliver)`` on a helper thread and yield what it delivers as it comes.

    The iterator ends when the producer does, raising the error of a :class:`Failure`
    outcome. The thread starts on the first ``next``; closing the iterator early lets the
    producer finish unread.
    """
    chunks: queue.SimpleQueue[str | _Done] = queue.SimpleQueue()

    def work() -> None:
        try:
            chunks.put(_end(produce(chunks.put)))
        except BaseException as exc:  # noqa: BLE001  # handed to the consumer
            chunks.put(_Done(exc))

    threading.Thread(target=work, name=name, daemon=True).start()
    while True:
        item = chunks.get()
        if isinstance(item, _Done):
            if item.error is not None:
                raise item.error
            return
        yield item


async def astream_chunks(
    produce: Callable[[Callable[[str], None]], Awaitable[Outcome]],
) -> AsyncIterator[str]:
    """Async twin of :func:`stream_chunks`: the producer runs as a task on the same loop."""
    import asyncio  # noqa: PLC0415  # asyncio loads with the async API

    chunks: asyncio.Queue[str | _Done] = asyncio.Queue()

    async def work() -> None:
        try:
            chunks.put_nowait(_end(await produce(chunks.put_nowait)))
        except Exception as exc:  # noqa: BLE001  # handed to the consumer
            chunks.put_nowait(_Done(exc))

    producer = asyncio.ensure_future(work())
    try:
        while True:
            item = await chunks.get()
            if isinstance(item, _Done):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        if not producer.done():
            producer.cancel()
