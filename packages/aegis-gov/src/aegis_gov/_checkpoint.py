"""Checkpoint stores: every finished task committed the moment it finishes.

:class:`CheckpointStore` is what a run writes to; :class:`Checkpoint` is the embedded default
(SQLite from the standard library, WAL mode, one transaction per finished task, several runs
and processes may write at once). ``RedisCheckpoint`` (in ``_checkpoint_redis``) shares one
store between machines.

Over 400 lines on purpose: the protocol, the run record and the SQLite store (its setup,
upgrade and lock handling included) are one unit a reader checks together; the Redis store
lives apart.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Protocol, runtime_checkable

import attrs

from aegis_gov._budget import Spent
from aegis_gov._errors import AegisError
from aegis_gov._results import ResultFormatError, RunResult, TaskResult, read_timeline
from aegis_gov._timeline import Timeline

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "RunInfo",
    "RunStatus",
    "TimelineUnreadableError",
    "UnknownRunError",
    "new_run_id",
]

STORE_VERSION: Final = 1
"""The layout version this aegis writes and reads; a newer store is refused, not guessed at."""

RunStatus = Literal["running", "finished", "cancelled"]
"""Where a stored run is: still running (or killed before it could say), or ended."""


class CheckpointError(AegisError):
    """A checkpoint store cannot be used: unreadable, corrupt, from a newer aegis, or full.

    The message names the store (its path or URL) and what is wrong.
    """


class TimelineUnreadableError(CheckpointError):
    """A stored run's timeline cannot be read; ``result`` is the run without it (not public).

    Only a report needs the timeline: ``aegis report`` draws the run without it, with a note,
    and a resume uses the tasks as they are.
    """

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result


class UnknownRunError(CheckpointError, LookupError):
    """No run with this id is in the store; ``known`` lists the most recent ones."""

    def __init__(self, store: str, run_id: str, known: Sequence[str]) -> None:
        """Record the store, the id asked for and the ids of the latest runs."""
        hint = f"; latest: {', '.join(known[:5])}" if known else "; the store has no runs"
        super().__init__(f"{store}: no run with id {run_id!r}{hint}")
        self.run_id: str = run_id
        self.known: tuple[str, ...] = tuple(known)


@attrs.frozen
class RunInfo:
    """One run in a checkpoint store, as ``aegis runs`` lists it.

    Attributes:
        run_id: the run's id (sortable: it starts with the UTC start time).
        name: what ran (the pipeline file for the ``aegis`` command, else the team's name).
        team: the team's name.
        started_at: when the run started, in seconds since the epoch.
        status: ``"running"`` also for a run killed before it could record its end.
        finished_at: when it ended (None while running or if it was killed).
        resumed_from: the run whose results it kept, if it resumed one.
        host, pid: where it ran, to tell a live run from a killed one.
        counts: finished tasks per final state (``{"done": 3, "failed": 1}``).
        tasks: how many tasks the run has in all.
        input_tokens, output_tokens: used by its finished tasks.
        cost_usd: what it spent, when it had a budget with prices and ended.
        fingerprint: a digest of every task's definition: two runs with the same fingerprint
            ran the same pipeline (the same tasks, prompts, models and tools).
    """

    run_id: str
    name: str
    team: str
    started_at: float
    status: RunStatus = "running"
    finished_at: float | None = None
    resumed_from: str | None = None
    host: str = ""
    pid: int = 0
    counts: Mapping[str, int] = attrs.field(factory=dict, hash=False)
    tasks: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    fingerprint: str = ""

    @property
    def killed(self) -> bool:
        """True when the run says it is running but its process on this host is gone."""
        if self.status != "running" or self.host != socket.gethostname() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # it exists but is not ours to signal
            return False
        return False


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a run commits its progress; implement it to plug in another store.

    Every method may be called from the thread driving a run; a store used by several runs
    at once must be safe for that. Errors are raised as :class:`CheckpointError`.
    """

    @property
    def label(self) -> str | None:
        """The name runs written through this handle are recorded under (None: the team's)."""
        ...

    def begin(self, run: RunInfo, task_ids: Sequence[str], kept: Sequence[TaskResult]) -> None:
        """Record a new run, its tasks in declaration order and the results it keeps."""
        ...

    def record(self, run_id: str, results: Sequence[TaskResult]) -> None:
        """Commit finished tasks' results, durably, before returning."""
        ...

    def end(self, run_id: str, result: RunResult) -> None:
        """Record that the run ended (finished or cancelled) and what it spent."""
        ...

    def load(self, run_id: str) -> RunResult:
        """The run as far as it got; tasks that never finished are in ``unfinished``."""
        ...

    def runs(self) -> list[RunInfo]:
        """Every run in the store, the most recent first."""
        ...


def new_run_id(now: float | None = None) -> str:
    """A fresh run id: the UTC start time and six random hex digits (``20261202-081512-3fa9c1``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS aegis_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS aegis_runs (
    run_id TEXT PRIMARY KEY, name TEXT NOT NULL, team TEXT NOT NULL,
    started_at REAL NOT NULL, finished_at REAL, status TEXT NOT NULL,
    resumed_from TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL,
    task_ids TEXT NOT NULL, spent TEXT, fingerprint TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS aegis_tasks (
    run_id TEXT NOT NULL, task_id TEXT NOT NULL, status TEXT NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    result TEXT NOT NULL, PRIMARY KEY (run_id, task_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aegis_timelines (run_id TEXT PRIMARY KEY, timeline TEXT NOT NULL);
"""


class Checkpoint:
    """The embedded checkpoint store: one SQLite file (created if missing).

    WAL mode with ``synchronous=NORMAL``: a commit survives the process being killed at any
    moment (``kill -9``, an OOM kill); a power cut may lose the last commits. Pass
    ``durable=True`` for ``synchronous=FULL`` (an fsync per finished task) when it must
    survive that too. Several runs, in threads or processes, may write to one file at once.

    Raises:
        CheckpointError: the file cannot be opened, is not an aegis store (or is corrupt),
            or was written by a newer aegis.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, label: str | None = None, durable: bool = False
    ) -> None:
        """Open (or create) the store at *path*; runs are recorded under *label*."""
        self.path: Path = Path(path)
        self._label = label
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise CheckpointError(f"{self.path}: cannot open the checkpoint store: {exc}") from None
        try:
            self._setup_when_free(durable=durable)
        except BaseException:
            self._db.close()
            raise

    def _setup_when_free(self, *, durable: bool) -> None:
        """Set the file up, waiting while another process sets it up at the same moment.

        Switching a new file to WAL takes an exclusive lock that SQLite does not wait for
        (its busy timeout does not apply), so two runs creating one store at once retry.
        """
        deadline = time.monotonic() + _SETUP_WAIT_S
        pause = 0.005
        while (busy := self._try_setup(durable=durable)) is not None:
            if time.monotonic() >= deadline:
                raise CheckpointError(f"{self.path}: cannot set up the checkpoint store: {busy}")
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def _try_setup(self, *, durable: bool) -> sqlite3.OperationalError | None:
        """Set the file up; the error if another process held it (other errors raise)."""
        try:
            self._setup(durable=durable)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise CheckpointError(
                    f"{self.path}: not an aegis checkpoint store, or corrupt: {exc}"
                ) from None
            return exc
        return None

    @property
    def label(self) -> str | None:
        """The name runs are recorded under (None: the team's name)."""
        return self._label

    def _fail(self, exc: BaseException, doing: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: cannot {doing}: {exc}")

    def _setup(self, *, durable: bool) -> None:
        """Switch to WAL, then check or create the tables (busy errors raise as they are).

        Another program's database is refused before anything in it is changed: switching
        to WAL rewrites the file's header.
        """
        try:
            self._refuse_foreign()
            (mode,) = self._db.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                self._db.execute("PRAGMA journal_mode=WAL").fetchall()
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            with self._transaction():
                self._check_or_create()
        except sqlite3.OperationalError:
            raise  # _try_setup tells a busy file from a corrupt one
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(
                f"{self.path}: not an aegis checkpoint store, or corrupt: {exc}"
            ) from None

    def _tables(self) -> set[str]:
        return {
            name
            for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }

    def _refuse_foreign(self) -> None:
        """Raise :class:`CheckpointError` for another program's (non-empty) SQLite database."""
        tables = self._tables()
        if tables and "aegis_meta" not in tables:
            raise CheckpointError(
                f"{self.path}: an SQLite database of something else, not an aegis "
                f"checkpoint store (it has tables {', '.join(sorted(tables)[:3])})"
            )

    def _check_or_create(self) -> None:
        """Refuse another program's database or a newer store; create or upgrade ours."""
        db = self._db
        self._refuse_foreign()  # again, in the transaction: another process may have written
        tables = self._tables()
        if tables:
            row = db.execute("SELECT value FROM aegis_meta WHERE key = 'version'").fetchone()
            version = "" if row is None else str(row[0])
            if not version.isdigit() or int(version) != STORE_VERSION:
                newer = version.isdigit() and int(version) > STORE_VERSION
                raise CheckpointError(
                    f"{self.path}: checkpoint store version {version or 'missing'!s:.20} "
                    + (
                        f"was written by a newer aegis (this one reads {STORE_VERSION})"
                        if newer
                        else f"is not one this aegis reads ({STORE_VERSION})"
                    )
                )
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        columns = {row[1] for row in db.execute("PRAGMA table_info(aegis_runs)")}
        if "fingerprint" not in columns:  # stores written before runs had one
            db.execute("ALTER TABLE aegis_runs ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''")
        db.execute("INSERT OR IGNORE INTO aegis_meta VALUES ('version', ?)", (str(STORE_VERSION),))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def begin(self, run: RunInfo, task_ids: Sequence[str], kept: Sequence[TaskResult]) -> None:
        """Record a new run, its tasks in declaration order and the results it keeps."""
        with self._lock:
            try:
                with self._transaction():
                    self._db.execute(
                        "INSERT INTO aegis_runs "
                        "VALUES (?, ?, ?, ?, NULL, 'running', ?, ?, ?, ?, NULL, ?)",
                        (
                            run.run_id,
                            run.name,
                            run.team,
                            run.started_at,
                            run.resumed_from,
                            run.host,
                            run.pid,
                            json.dumps(list(task_ids)),
                            run.fingerprint,
                        ),
                    )
                    self._insert(run.run_id, kept)
            except (sqlite3.Error, ValueError) as exc:
                raise self._fail(exc, f"record run {run.run_id!r}") from None

    def _insert(self, run_id: str, results: Sequence[TaskResult]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO aegis_tasks VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    json.dumps(result.task_id),  # a lone surrogate cannot be stored as text
                    result.status.value,
                    result.usage.input_tokens,
                    result.usage.output_tokens,
                    json.dumps(result.to_dict(), allow_nan=False),
                )
                for result in results
            ],
        )

    def record(self, run_id: str, results: Sequence[TaskResult]) -> None:
        """Commit finished tasks' results in one transaction."""
        with self._lock:
            try:
                with self._transaction():
                    self._insert(run_id, results)
            except (sqlite3.Error, ValueError, TypeError) as exc:
                raise self._fail(exc, f"record results of run {run_id!r}") from None

    def end(self, run_id: str, result: RunResult) -> None:
        """Record that the run ended and what it spent."""
        spent = None if result.spent is None else json.dumps(result.spent.to_dict())
        with self._lock:
            try:
                with self._transaction():
                    self._db.execute(
                        "UPDATE aegis_runs SET status = ?, finished_at = ?, spent = ? "
                        "WHERE run_id = ?",
                        (
                            "cancelled" if result.cancelled else "finished",
                            time.time(),
                            spent,
                            run_id,
                        ),
                    )
            except sqlite3.Error as exc:
                raise self._fail(exc, f"record the end of run {run_id!r}") from None

    def save_timeline(self, run_id: str, timeline: Timeline) -> None:
        """Keep the run's :class:`~aegis_gov.Timeline` (``load`` puts it on the result)."""
        text = json.dumps(timeline.to_dict(), allow_nan=False)
        with self._lock:
            try:
                with self._transaction():
                    self._db.execute(
                        "INSERT OR REPLACE INTO aegis_timelines VALUES (?, ?)", (run_id, text)
                    )
            except sqlite3.Error as exc:
                raise self._fail(exc, f"record the timeline of run {run_id!r}") from None

    def load(self, run_id: str) -> RunResult:
        """The run as far as it got (see :meth:`CheckpointStore.load`).

        Raises:
            UnknownRunError: no run has this id.
            CheckpointError: a stored result is unreadable (the message names the task).
        """
        with self._lock:
            try:
                run = self._db.execute(
                    "SELECT team, status, task_ids, spent FROM aegis_runs WHERE run_id = ?",
                    (run_id,),
                ).fetchone()
                rows = (
                    self._db.execute(
                        "SELECT task_id, result FROM aegis_tasks WHERE run_id = ?", (run_id,)
                    ).fetchall()
                    if run is not None
                    else []
                )
                timeline = self._db.execute(
                    "SELECT timeline FROM aegis_timelines WHERE run_id = ?", (run_id,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise self._fail(exc, f"read run {run_id!r}") from None
        if run is None:
            raise UnknownRunError(str(self.path), run_id, [r.run_id for r in self.runs()])
        team, status, task_ids, spent = run
        return assemble_run(
            str(self.path),
            run_id,
            team=team,
            status=status,
            task_ids=json.loads(task_ids),
            stored={json.loads(key): text for key, text in rows},
            spent=spent,
            timeline=None if timeline is None else timeline[0],
        )

    def runs(self) -> list[RunInfo]:
        """Every run in the store, the most recent first."""
        with self._lock:
            try:
                runs = self._db.execute(
                    "SELECT run_id, name, team, started_at, status, finished_at, resumed_from, "
                    "host, pid, task_ids, spent, fingerprint FROM aegis_runs "
                    "ORDER BY started_at DESC, run_id DESC"
                ).fetchall()
                totals = self._db.execute(
                    "SELECT run_id, status, COUNT(*), SUM(input_tokens), SUM(output_tokens) "
                    "FROM aegis_tasks GROUP BY run_id, status"
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._fail(exc, "list runs") from None
        counts: dict[str, dict[str, int]] = {}
        tokens: dict[str, tuple[int, int]] = {}
        for run_id, status, count, tokens_in, tokens_out in totals:
            counts.setdefault(run_id, {})[status] = count
            before = tokens.get(run_id, (0, 0))
            tokens[run_id] = (before[0] + tokens_in, before[1] + tokens_out)
        return [
            RunInfo(
                run_id=run_id,
                name=name,
                team=team,
                started_at=started,
                status=status,
                finished_at=finished,
                resumed_from=resumed,
                host=host,
                pid=pid,
                counts=counts.get(run_id, {}),
                tasks=len(json.loads(task_ids)),
                input_tokens=tokens.get(run_id, (0, 0))[0],
                output_tokens=tokens.get(run_id, (0, 0))[1],
                cost_usd=_cost(spent),
                fingerprint=fingerprint,
            )
            for (
                run_id,
                name,
                team,
                started,
                status,
                finished,
                resumed,
                host,
                pid,
                task_ids,
                spent,
                fingerprint,
            ) in runs
        ]

    def close(self) -> None:
        """Close the file; the store cannot be used afterwards."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Checkpoint:  # noqa: PYI034  # Self needs Python 3.11
        """Use the store in a ``with`` block; it closes at the end."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()

    def __repr__(self) -> str:
        """``Checkpoint('runs.db')``."""
        return f"Checkpoint({str(self.path)!r})"


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


_SETUP_WAIT_S: Final = 30.0


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _cost(spent: str | bytes | None) -> float | None:
    if not spent:
        return None
    value = json.loads(spent).get("cost_usd")
    return float(value) if isinstance(value, (int, float)) else None


def assemble_run(
    store: str,
    run_id: str,
    *,
    team: str,
    status: str,
    task_ids: Sequence[str],
    stored: Mapping[str, str | bytes],
    spent: str | bytes | None,
    timeline: str | bytes | None = None,
) -> RunResult:
    """A :class:`RunResult` from a store's rows (shared by the stores; not public)."""
    results: dict[str, TaskResult] = {}
    for task_id in task_ids:
        text = stored.get(task_id)
        if text is None:
            continue
        try:
            results[task_id] = TaskResult.from_dict(json.loads(text))
        except (ValueError, ResultFormatError) as exc:
            raise CheckpointError(
                f"{store}: run {run_id!r}: the stored result of task {task_id!r} is unreadable: "
                f"{exc}"
            ) from None
    spent_value = None
    if spent:
        table = json.loads(spent)
        cost = table.get("cost_usd")
        spent_value = Spent(
            tokens=int(table.get("tokens", 0)),
            requests=int(table.get("requests", 0)),
            cost_usd=None if cost is None else float(cost),
        )
    result = RunResult(
        results=results,
        team=team,
        cancelled=status == "cancelled",
        spent=spent_value,
        run_id=run_id,
        unfinished=[task_id for task_id in task_ids if task_id not in results],
    )
    if timeline is None:
        return result
    try:
        return attrs.evolve(result, timeline=read_timeline(json.loads(timeline), "timeline"))
    except ValueError as exc:  # ResultFormatError included
        raise TimelineUnreadableError(
            f"{store}: run {run_id!r}: the stored timeline is unreadable: {exc}", result
        ) from None
