"""What runs return: per-agent, per-task and whole-run results, JSON round-trippable."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import cast

import attrs
from aegis_adapters import Usage
from aegis_graph import TaskState

_FORMAT_VERSION = 1


@attrs.frozen
class ToolCallRecord:
    """One tool call an agent made, with what the tool returned (or why it failed)."""

    tool: str
    arguments: Mapping[str, object]
    result: str
    error: str | None = None


@attrs.frozen
class AgentResult:
    """An agent's answer; ``str(result)`` is the answer text.

    ``attempts`` counts requests made for the final answer's task (retries included);
    ``duration_s`` is wall time from first request to answer.
    """

    output: str
    agent: str
    usage: Usage = Usage()
    attempts: int = 1
    duration_s: float = 0.0
    endpoint: str = ""
    tool_calls: tuple[ToolCallRecord, ...] = ()

    def __str__(self) -> str:
        """The answer text."""
        return self.output


@attrs.frozen
class TaskResult:
    """How one task of a run ended.

    ``status`` is DONE, FAILED or SKIPPED. A failed task has ``error`` (the message) and
    ``error_type`` (the exception class name); a skipped one has ``skip_reason`` and, for
    ``upstream_failed``, ``blamed``: the failed task at the root of the cascade.
    """

    task_id: str
    status: TaskState
    agent: str | None = None
    output: str | None = None
    error: str | None = None
    error_type: str | None = None
    usage: Usage = Usage()
    attempts: int = 0
    duration_s: float = 0.0
    blamed: str | None = None
    skip_reason: str | None = None
    tool_calls: tuple[ToolCallRecord, ...] = ()
    fingerprint: str | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable dict of this result."""
        return {
            "task_id": self.task_id,
            "status": self.status.value,
            "agent": self.agent,
            "output": self.output,
            "error": self.error,
            "error_type": self.error_type,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
            },
            "attempts": self.attempts,
            "duration_s": self.duration_s,
            "blamed": self.blamed,
            "skip_reason": self.skip_reason,
            "fingerprint": self.fingerprint,
            "tool_calls": [
                {
                    "tool": c.tool,
                    "arguments": dict(c.arguments),
                    "result": c.result,
                    "error": c.error,
                }
                for c in self.tool_calls
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TaskResult:
        """Rebuild a result from :meth:`to_dict`'s output; ``ValueError`` names a bad field."""
        try:
            usage = cast("Mapping[str, int]", data.get("usage") or {})
            calls = cast("list[Mapping[str, object]]", data.get("tool_calls") or [])
            return cls(
                task_id=str(data["task_id"]),
                status=TaskState(data["status"]),
                agent=_opt_str(data.get("agent")),
                output=_opt_str(data.get("output")),
                error=_opt_str(data.get("error")),
                error_type=_opt_str(data.get("error_type")),
                usage=Usage(
                    input_tokens=int(usage.get("input_tokens", 0)),
                    output_tokens=int(usage.get("output_tokens", 0)),
                ),
                attempts=int(cast("int", data.get("attempts", 0))),
                duration_s=float(cast("float", data.get("duration_s", 0.0))),
                blamed=_opt_str(data.get("blamed")),
                skip_reason=_opt_str(data.get("skip_reason")),
                fingerprint=_opt_str(data.get("fingerprint")),
                tool_calls=tuple(
                    ToolCallRecord(
                        tool=str(c["tool"]),
                        arguments=cast("Mapping[str, object]", c.get("arguments") or {}),
                        result=str(c.get("result", "")),
                        error=_opt_str(c.get("error")),
                    )
                    for c in calls
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed task result {data!r:.200}: {exc}") from exc


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _as_dict(value: Mapping[str, TaskResult]) -> dict[str, TaskResult]:
    return dict(value)


@attrs.frozen
class RunResult(Mapping[str, TaskResult]):
    """The outcome of :meth:`~aegis_gov.OpenMultiAgent.run_tasks`: task id -> TaskResult.

    Iterates in the order the tasks were declared. ``summary()`` has the shape of
    :meth:`aegis_graph.TaskQueue.summary`; ``to_json``/``from_json`` round-trip it.
    """

    results: Mapping[str, TaskResult] = attrs.field(converter=_as_dict)
    team: str = ""
    cancelled: bool = False

    def __getitem__(self, task_id: str) -> TaskResult:
        """The result of ``task_id``."""
        return self.results[task_id]

    def __iter__(self) -> Iterator[str]:
        """Task ids in declaration order."""
        return iter(self.results)

    def __len__(self) -> int:
        """How many tasks the run had."""
        return len(self.results)

    def summary(self) -> dict[str, int]:
        """Counts per final state name, zero counts omitted: ``{"done": 2, "failed": 1}``."""
        counts: dict[str, int] = {}
        for result in self.results.values():
            counts[result.status.value] = counts.get(result.status.value, 0) + 1
        return counts

    @property
    def usage(self) -> Usage:
        """Tokens used by every task of the run together."""
        total = Usage()
        for result in self.results.values():
            total = total + result.usage
        return total

    @property
    def ok(self) -> bool:
        """True when every task is DONE."""
        return all(r.status is TaskState.DONE for r in self.results.values())

    def outputs(self) -> dict[str, str]:
        """The output of every DONE task, by task id."""
        return {
            task_id: r.output or ""
            for task_id, r in self.results.items()
            if r.status is TaskState.DONE
        }

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable dict of the whole run."""
        return {
            "format": _FORMAT_VERSION,
            "team": self.team,
            "cancelled": self.cancelled,
            "summary": self.summary(),
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
            },
            "tasks": [r.to_dict() for r in self.results.values()],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The run as JSON text (see :meth:`from_json`)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RunResult:
        """Rebuild a run from :meth:`to_dict`'s output; ``ValueError`` says what is wrong."""
        if data.get("format") != _FORMAT_VERSION:
            raise ValueError(
                f"unsupported run result format {data.get('format')!r} "
                f"(this version reads format {_FORMAT_VERSION})"
            )
        tasks = data.get("tasks")
        if not isinstance(tasks, list):
            raise ValueError("run result has no 'tasks' list")  # noqa: TRY004  # from_json promises ValueError
        results = [TaskResult.from_dict(cast("Mapping[str, object]", t)) for t in tasks]
        return cls(
            results={r.task_id: r for r in results},
            team=str(data.get("team", "")),
            cancelled=bool(data.get("cancelled", False)),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> RunResult:
        """Parse :meth:`to_json`'s output; ``ValueError`` for anything else."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"run result is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("run result JSON must be an object")  # noqa: TRY004  # (same)
        return cls.from_dict(cast("Mapping[str, object]", data))
