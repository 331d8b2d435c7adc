"""What ties a run to its checkpoint store: each task's definition, and the run's record."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from aegis_adapters import is_chat_adapter
from aegis_graph import Task

from aegis_gov._caller import Route
from aegis_gov._results import RunCancelledError, RunResult
from aegis_gov._resume import agent_parts, digest, task_parts
from aegis_gov._run import RunState

if TYPE_CHECKING:
    from aegis_gov._checkpoint import CheckpointStore

__all__ = ["checkpointed", "definitions"]

logger = logging.getLogger(__name__)


_GENERATION: Final = ("max_tokens", "temperature", "top_p", "options")
"""Adapter settings that change what the model answers (not timeouts or retries)."""


def _model(route: Route) -> str:
    """The agent's model and generation settings, stable across processes.

    A custom adapter is named by its class, not its id; ``max_tokens``, ``temperature``,
    ``top_p`` and Ollama's ``options`` are part of it where the adapter has them.
    """
    adapter = route.adapter
    if is_chat_adapter(adapter):
        name = adapter.endpoint.key
    else:
        name = f"custom:{type(adapter).__module__}.{type(adapter).__qualname__}"
    settings = {key: getattr(adapter, key) for key in _GENERATION if hasattr(adapter, key)}
    return f"{name} {json.dumps(settings, sort_keys=True, default=repr)}" if settings else name


def _output(route: Route) -> str:
    """The agent's output settings that shape its answer: its output type's JSON Schema."""
    schema = route.agent.output_schema
    return "" if schema is None else json.dumps(dict(schema.schema), sort_keys=True)


def definitions(
    tasks: Sequence[Task], routes: Mapping[str, Route], *, tool_root: str = ""
) -> Mapping[str, Mapping[str, str]]:
    """Each task's definition digests (see :func:`aegis_gov._resume.definition`).

    The agent's parts are digested once per agent, not once per task. *tool_root* is where
    the registry's built-in tools read and run: part of an agent's tools when it has any.
    A task's own parts are digested when first read — a resume or a checkpoint reads them all
    before the run; otherwise only a result that is written out or compared does.
    """
    by_agent: dict[str, dict[str, str]] = {}
    for name, route in routes.items():
        by_agent[name] = agent_parts(
            name,
            system_prompt=route.agent.system_prompt,
            model=_model(route),
            tools=[
                *(
                    (spec.name, spec.description, json.dumps(spec.input_schema, sort_keys=True))
                    for spec in route.tools
                ),
                *((("root", tool_root),) if route.tools else ()),
            ],
            output=_output(route),
        )
    return _Definitions({task.id: task for task in tasks}, by_agent)


class _Definitions(Mapping[str, Mapping[str, str]]):
    """Tasks' definition digests by task id, each made when first read."""

    __slots__ = ("_agents", "_made", "_tasks", "_unknown")

    def __init__(self, tasks: dict[str, Task], agents: dict[str, dict[str, str]]) -> None:
        self._tasks = tasks
        self._agents = agents
        self._unknown: dict[str, str] | None = None  # an unknown agent's: refused right after
        self._made: dict[str, _TaskDefinition] = {}

    def __getitem__(self, task_id: str) -> Mapping[str, str]:
        made = self._made.get(task_id)
        if made is None:
            task = self._tasks[task_id]
            agent = self._agents.get(task.agent or "")
            if agent is None:
                agent = self._unknown = self._unknown or agent_parts("")
            made = self._made.setdefault(task_id, _TaskDefinition(task, agent))
        return made

    def get(self, task_id: str, default: object = None) -> object:  # type: ignore[override]
        """``self[task_id]``, or *default* for an unknown task (Mapping's, without a raise)."""
        made = self._made.get(task_id)
        if made is not None:
            return made
        task = self._tasks.get(task_id)
        if task is None:
            return default
        agent = self._agents.get(task.agent or "")
        if agent is None:
            return self[task_id]
        return self._made.setdefault(task_id, _TaskDefinition(task, agent))

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)


class _TaskDefinition(Mapping[str, str]):
    """One task's definition digests (:func:`~aegis_gov._resume.task_parts`), made when read.

    Reads, compares, prints and pickles as the dict it stands for.
    """

    __slots__ = ("_agent", "_parts", "_task")

    def __init__(self, task: Task, agent: dict[str, str]) -> None:
        self._task: Task | None = task
        self._agent: dict[str, str] | None = agent
        self._parts: dict[str, str] | None = None

    def _made(self) -> dict[str, str]:
        parts = self._parts
        if parts is None:  # two threads may both digest: same answer, no harm
            task, agent = self._task, self._agent
            if task is None or agent is None:  # another thread just made them
                parts = self._parts
                assert parts is not None  # noqa: S101  # set before the task was let go
                return parts
            parts = self._parts = task_parts(task, agent)
            self._task = self._agent = None  # the digests are all a result keeps of the task
        return parts

    def __getitem__(self, part: str) -> str:
        return self._made()[part]

    def __iter__(self) -> Iterator[str]:
        return iter(self._made())

    def __len__(self) -> int:
        return len(self._made())

    def __repr__(self) -> str:
        return repr(self._made())

    def __reduce__(self) -> tuple[type[dict[str, str]], tuple[dict[str, str]]]:
        return dict, (self._made(),)


@contextlib.contextmanager
def checkpointed(
    store: CheckpointStore | None, state: RunState, resumed_from: str | None
) -> Iterator[None]:
    """Record the run in *store* while the block runs it: begin, every result, end.

    The kept results of a resumed run are copied into the new run, so each stored run is
    complete on its own. A run stopped by Ctrl-C is recorded cancelled; one that dies
    (a bug, ``kill -9``) stays ``running``, and resuming it re-runs only what had not finished.
    """
    if store is None:
        yield
        return
    import socket  # noqa: PLC0415  # a run with no store loads neither sqlite3 nor socket

    from aegis_gov._checkpoint import RunInfo, new_run_id  # noqa: PLC0415

    run_id = new_run_id()
    store.begin(
        RunInfo(
            run_id=run_id,
            name=store.label or state.team.name,
            team=state.team.name,
            started_at=time.time(),
            resumed_from=resumed_from,
            host=socket.gethostname(),
            pid=os.getpid(),
            fingerprint=_pipeline_fingerprint(state),
        ),
        [task.id for task in state.queue.tasks],
        list(state.results.values()),
    )
    state.run_id = run_id
    state.record = lambda results: store.record(run_id, results)
    try:
        yield
    except RunCancelledError as exc:
        _end(store, run_id, exc.result)
        raise
    except BaseException:  # asyncio cancellation (recorded cancelled) or a crash (left running)
        if state.cancelled:
            _end(store, run_id, state.result())
        raise
    _end(store, run_id, state.result())


def _pipeline_fingerprint(state: RunState) -> str:
    """A digest of every task's definition, independent of the order tasks were declared in."""
    parts = sorted((task_id, sorted(parts.items())) for task_id, parts in state.definitions.items())
    return digest(repr(parts))


def _end(store: CheckpointStore, run_id: str, result: RunResult) -> None:
    try:
        store.end(run_id, result)
    except Exception:  # every task is already committed; only the end mark is missing
        logger.exception("checkpoint: could not record the end of run %r", run_id)
