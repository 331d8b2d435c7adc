"""A checkpoint store in Redis, for runs whose workers are spread over machines.

Keys (under a prefix, ``aegis:checkpoint`` by default): ``{prefix}:version``; ``{prefix}:runs``,
a sorted set of run ids by start time; ``{prefix}:run:{id}``, a hash of the run's record and
counters; ``{prefix}:run:{id}:tasks``, a hash of task id -> result JSON. Each commit is one
``MULTI``/``EXEC`` transaction. Needs the ``aegis-gov[redis]`` extra (redis-py).
"""

from __future__ import annotations

import functools
import importlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol, TypeVar, cast

from aegis_adapters import redact_url

from aegis_gov._checkpoint import (
    STORE_VERSION,
    CheckpointError,
    RunInfo,
    RunStatus,
    UnknownRunError,
    assemble_run,
)
from aegis_gov._results import RunResult, TaskResult
from aegis_gov._timeline import Timeline

__all__ = ["RedisCheckpoint"]

_STATUSES: Final = ("running", "finished", "cancelled")
_T = TypeVar("_T")


class _Pipeline(Protocol):
    def hset(
        self, name: str, key: str | None = None, value: object = None, mapping: object = None
    ) -> object: ...
    def hincrby(self, name: str, key: str, amount: int = 1) -> object: ...
    def zadd(self, name: str, mapping: Mapping[str, float]) -> object: ...
    def execute(self) -> list[object]: ...


class _Client(Protocol):
    def get(self, name: str) -> object: ...
    def set(self, name: str, value: str, nx: bool = False) -> object: ...  # noqa: FBT001, FBT002
    def hgetall(self, name: str) -> Mapping[bytes, bytes]: ...
    def zrevrange(self, name: str, start: int, end: int) -> list[bytes]: ...
    def pipeline(self, transaction: bool = True) -> _Pipeline: ...  # noqa: FBT001, FBT002


class RedisCheckpoint:
    """A checkpoint store in Redis (``CheckpointStore``); one server shared by many machines.

    Args:
        url: where Redis is (``redis://host:6379/0``); ignored when *client* is given.
        client: a ``redis.Redis`` to use instead of connecting to *url*.
        prefix: the key prefix, to keep several stores on one server apart.
        label: the name runs are recorded under (None: the team's name).

    Raises:
        CheckpointError: Redis cannot be reached, or the store there was written by a newer
            aegis (or the prefix's keys hold something else).
        ModuleNotFoundError: redis-py is not installed (``aegis-gov[redis]``).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: object | None = None,
        prefix: str = "aegis:checkpoint",
        label: str | None = None,
    ) -> None:
        """Connect and check the store's version."""
        self._redis = importlib.import_module("redis")
        if client is None:
            client = self._redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
            self.where: str = f"{redact_url(url)} ({prefix})"
        else:
            self.where = f"redis ({prefix})"
        self._client = cast("_Client", client)
        self._prefix = prefix
        self._label = label
        version = self._call(self._version, "read the store's version")
        if version != STORE_VERSION:
            newer = version > STORE_VERSION
            raise CheckpointError(
                f"{self.where}: checkpoint store version {version} "
                + (
                    f"was written by a newer aegis (this one reads {STORE_VERSION})"
                    if newer
                    else f"is not one this aegis reads ({STORE_VERSION})"
                )
            )

    @property
    def label(self) -> str | None:
        """The name runs are recorded under (None: the team's name)."""
        return self._label

    def _version(self) -> int:
        key = f"{self._prefix}:version"
        self._client.set(key, str(STORE_VERSION), nx=True)
        raw = self._client.get(key)
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if not text.isdigit():
            raise CheckpointError(f"{self.where}: {key} holds {text!r:.40}, not a store version")
        return int(text)

    def _call(self, action: Callable[[], _T], doing: str) -> _T:
        try:
            return action()
        except CheckpointError:
            raise
        except self._redis.RedisError as exc:
            raise CheckpointError(f"{self.where}: cannot {doing}: {exc}") from None

    def _run_key(self, run_id: str) -> str:
        return f"{self._prefix}:run:{run_id}"

    def begin(self, run: RunInfo, task_ids: Sequence[str], kept: Sequence[TaskResult]) -> None:
        """Record a new run, its tasks in declaration order and the results it keeps."""

        def write() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(
                self._run_key(run.run_id),
                mapping={
                    "name": run.name,
                    "team": run.team,
                    "started_at": repr(run.started_at),
                    "status": "running",
                    "resumed_from": run.resumed_from or "",
                    "host": run.host,
                    "pid": str(run.pid),
                    "task_ids": json.dumps(list(task_ids)),
                    "fingerprint": run.fingerprint,
                },
            )
            pipe.zadd(f"{self._prefix}:runs", {run.run_id: run.started_at})
            self._add(pipe, run.run_id, kept)
            pipe.execute()

        self._call(write, f"record run {run.run_id!r}")

    def _add(self, pipe: _Pipeline, run_id: str, results: Sequence[TaskResult]) -> None:
        key = self._run_key(run_id)
        for result in results:
            text = json.dumps(result.to_dict(), allow_nan=False)
            pipe.hset(f"{key}:tasks", json.dumps(result.task_id), text)
            pipe.hincrby(key, f"count:{result.status.value}", 1)
            pipe.hincrby(key, "input_tokens", result.usage.input_tokens)
            pipe.hincrby(key, "output_tokens", result.usage.output_tokens)

    def record(self, run_id: str, results: Sequence[TaskResult]) -> None:
        """Commit finished tasks' results in one transaction."""

        def write() -> None:
            pipe = self._client.pipeline(transaction=True)
            self._add(pipe, run_id, results)
            pipe.execute()

        try:
            self._call(write, f"record results of run {run_id!r}")
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.where}: cannot record run {run_id!r}: {exc}") from None

    def end(self, run_id: str, result: RunResult) -> None:
        """Record that the run ended and what it spent."""

        def write() -> None:
            pipe = self._client.pipeline(transaction=True)
            fields = {
                "status": "cancelled" if result.cancelled else "finished",
                "finished_at": repr(time.time()),
            }
            if result.spent is not None:
                fields["spent"] = json.dumps(result.spent.to_dict())
            pipe.hset(self._run_key(run_id), mapping=fields)
            pipe.execute()

        self._call(write, f"record the end of run {run_id!r}")

    def save_timeline(self, run_id: str, timeline: Timeline) -> None:
        """Keep the run's :class:`~aegis_gov.Timeline` (``load`` puts it on the result)."""
        text = json.dumps(timeline.to_dict(), allow_nan=False)

        def write() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(self._run_key(run_id), mapping={"timeline": text})
            pipe.execute()

        self._call(write, f"record the timeline of run {run_id!r}")

    def load(self, run_id: str) -> RunResult:
        """The run as far as it got; tasks that never finished are in ``unfinished``.

        Raises:
            UnknownRunError: no run has this id.
            CheckpointError: a stored result is unreadable (the message names the task).
        """
        key = self._run_key(run_id)
        run = _text(self._call(lambda: self._client.hgetall(key), f"read run {run_id!r}"))
        if not run:
            raise UnknownRunError(self.where, run_id, [r.run_id for r in self.runs()])
        stored = _text(
            self._call(lambda: self._client.hgetall(f"{key}:tasks"), f"read run {run_id!r}")
        )
        return assemble_run(
            self.where,
            run_id,
            team=run.get("team", ""),
            status=run.get("status", "running"),
            task_ids=json.loads(run.get("task_ids", "[]")),
            stored={json.loads(key): text for key, text in stored.items()},
            spent=run.get("spent"),
            timeline=run.get("timeline"),
        )

    def runs(self) -> list[RunInfo]:
        """Every run in the store, the most recent first."""
        ids = self._call(lambda: self._client.zrevrange(f"{self._prefix}:runs", 0, -1), "list runs")
        infos = []
        for raw_id in ids:
            run_id = raw_id.decode()
            key = self._run_key(run_id)
            run = _text(self._call(functools.partial(self._client.hgetall, key), "list runs"))
            if not run:
                continue
            status = run.get("status", "running")
            spent = json.loads(run["spent"]) if run.get("spent") else {}
            cost = spent.get("cost_usd")
            infos.append(
                RunInfo(
                    run_id=run_id,
                    name=run.get("name", ""),
                    team=run.get("team", ""),
                    started_at=float(run.get("started_at", "0")),
                    status=cast("RunStatus", status if status in _STATUSES else "running"),
                    finished_at=float(run["finished_at"]) if run.get("finished_at") else None,
                    resumed_from=run.get("resumed_from") or None,
                    host=run.get("host", ""),
                    pid=int(run.get("pid", "0")),
                    counts={
                        name.removeprefix("count:"): int(value)
                        for name, value in run.items()
                        if name.startswith("count:")
                    },
                    tasks=len(json.loads(run.get("task_ids", "[]"))),
                    input_tokens=int(run.get("input_tokens", "0")),
                    output_tokens=int(run.get("output_tokens", "0")),
                    cost_usd=float(cost) if isinstance(cost, (int, float)) else None,
                    fingerprint=run.get("fingerprint", ""),
                )
            )
        return infos

    def __repr__(self) -> str:
        """``RedisCheckpoint(<where>)``."""
        return f"RedisCheckpoint({self.where!r})"


def _text(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {key.decode(): value.decode() for key, value in raw.items()}
