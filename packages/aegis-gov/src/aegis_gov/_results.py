"""What runs return: per-agent, per-task and whole-run results, JSON round-trippable.

Over 400 lines on purpose: the result values and their strict JSON reader (every field checked,
named in errors) belong together.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import re
import reprlib
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Final, Generic, NoReturn, cast, overload

import attrs
from aegis_adapters import Usage
from aegis_graph import SkipReason, TaskState
from typing_extensions import TypeVar, deprecated

from aegis_gov._budget import Price, Spent
from aegis_gov._checks import endpoint_keyed, endpoint_spelling
from aegis_gov._errors import AegisError

if TYPE_CHECKING:
    from aegis_gov._timeline import Timeline

__all__ = [
    "AgentResult",
    "ResultFormatError",
    "RunCancelledError",
    "RunOutputs",
    "RunResult",
    "TaskResult",
    "ToolCallRecord",
    "read_timeline",
]

_FORMAT_VERSION = 1
_MAX_COUNT: Final = (1 << 63) - 1
_MAX_ARGUMENT_DEPTH: Final = 64
_FINAL_STATES: Final = {s.value: s for s in (TaskState.DONE, TaskState.FAILED, TaskState.SKIPPED)}
_SHOW: Final = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 60

ValueT_co = TypeVar("ValueT_co", covariant=True, default=object)


_GROWS_IN_PLACE: Final = sys.implementation.name == "cpython"
"""Whether ``text += piece`` resizes a string held once in place (else it copies)."""

_ENCODE_BATCH: Final = 256
"""Tasks encoded per encoder call when writing compact JSON (memory: one batch's dicts)."""


class ResultFormatError(AegisError, ValueError):
    """A run result given to :meth:`RunResult.from_json` (or ``from_dict``) is malformed.

    Attributes:
        field: Where the problem is, as a path into the JSON document (``"tasks[2].attempts"``),
            or ``None`` for the document as a whole.
        problem: What is wrong, in words.
    """

    def __init__(self, field: str | None, problem: str) -> None:
        """Record where the problem is and what it is (the message shows controls as escapes)."""
        super().__init__(_visible(f"{field}: {problem}" if field else problem))
        self.field = field
        self.problem = problem


def _visible(text: str) -> str:
    r"""*text* with each unprintable character (controls, bidi overrides) as an escape (``\x1b``).

    A field path holds the file's own keys: a hostile one must not drive the terminal.
    """
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text
    )


@attrs.frozen
class ToolCallRecord:
    """One tool call an agent made, with what the tool returned (or why it failed)."""

    tool: str
    arguments: Mapping[str, object]
    result: str
    error: str | None = None


def _text_value(result: AgentResult[object]) -> object:
    return result.output


@attrs.frozen
class AgentResult(Generic[ValueT_co]):
    """An agent's answer; ``str(result)`` is the answer text.

    ``value`` is the answer as its agent's ``output_type`` (a validated object; ``output``
    is then its JSON text, and what ``==`` compares), or the text itself for an agent
    without one. ``attempts``
    counts requests made for the final answer's task (retries included); ``duration_s`` is
    wall time from first request to answer.
    """

    output: str
    agent: str
    usage: Usage = Usage()
    attempts: int = 1
    duration_s: float = 0.0
    endpoint: str = ""
    tool_calls: tuple[ToolCallRecord, ...] = ()
    value: ValueT_co = attrs.field(
        # Without a value, an answer's value is its text (as for agents without output_type).
        default=attrs.Factory(_text_value, takes_self=True),  # type: ignore[assignment]
        kw_only=True,
        eq=False,
    )

    def __str__(self) -> str:
        """The answer text."""
        return self.output


def _skip_reason(value: SkipReason | str | None) -> SkipReason | None:
    """A skip reason from its value (``"cancelled"``) or itself."""
    return None if value is None else SkipReason(value)


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
    skip_reason: SkipReason | None = attrs.field(default=None, converter=_skip_reason)
    tool_calls: tuple[ToolCallRecord, ...] = ()
    fingerprint: str | None = None
    endpoint: str | None = None
    """The endpoint that answered a DONE task (a fallback's, if the task fell over)."""
    definition: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    """Digests of each part of the task's definition when it ran (see ``plan_resume``)."""
    input_digest: str | None = None
    """A digest of the prompt the task was given: its description and upstream outputs."""
    value: object = attrs.field(default=None, kw_only=True, eq=False)
    """A DONE task's answer as its agent's ``output_type``: the validated object in the run
    that made it, its JSON data (``dict``, ``list``...) once read back by ``from_json``;
    None for an agent without an ``output_type`` (its answer is ``output``). Not compared by
    ``==``: ``output`` holds the same answer as JSON text."""

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable dict of this result (``value`` as JSON data, when there is one)."""
        return {
            "task_id": self.task_id,
            "status": self.status.value,
            "agent": self.agent,
            "output": self.output,
            **({"value": _json_data(self.value)} if self.value is not None else {}),
            "error": self.error,
            "error_type": self.error_type,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
            },
            "attempts": self.attempts,
            "duration_s": self.duration_s,
            "blamed": self.blamed,
            "skip_reason": None if self.skip_reason is None else self.skip_reason.value,
            "fingerprint": self.fingerprint,
            "endpoint": self.endpoint,
            **({"definition": dict(self.definition)} if self.definition else {}),
            **({"input_digest": self.input_digest} if self.input_digest is not None else {}),
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
        """Rebuild a result from :meth:`to_dict`'s output.

        Raises:
            ResultFormatError: a ``ValueError`` whose ``field`` names the first bad field.
        """
        return _task_from_dict(data, "")


_OPTIONAL_STR: Final = (
    "agent",
    "output",
    "error",
    "error_type",
    "blamed",
    "fingerprint",
    "endpoint",
    "input_digest",
)


def _is_count(value: object) -> bool:
    return value is None or (type(value) is int and 0 <= value <= _MAX_COUNT)


def _fast_task(data: object) -> TaskResult | None:  # noqa: C901, PLR0911, PLR0912  # one pass
    """The common case, checked in one pass: a well-formed task with no tool calls.

    Returns None whenever anything is unusual; the field-by-field reader then either builds
    the same value or raises the error naming the field.
    """
    if type(data) is not dict:
        return None
    get = data.get
    task_id, status, usage = get("task_id"), get("status"), get("usage")
    if type(task_id) is not str or not task_id:
        return None
    if type(status) is not str or status not in _FINAL_STATES:  # (a list is not hashable)
        return None
    calls = get("tool_calls")
    if calls is not None and (type(calls) is not list or calls):
        return None  # tool calls, or a falsy non-array (false, 0, ""): checked field by field
    if get("skip_reason") is not None or get("value") is not None:
        return None  # the field-by-field reader checks these
    for key in _OPTIONAL_STR:
        value = get(key)
        if value is not None and type(value) is not str:
            return None
    if usage is None:
        usage = {}
    elif type(usage) is not dict:
        return None
    tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
    attempts, duration = get("attempts"), get("duration_s")
    if not (_is_count(tokens_in) and _is_count(tokens_out) and _is_count(attempts)):
        return None
    if duration is None:
        duration = 0.0
    elif type(duration) is not float or not 0 <= duration < math.inf:
        return None
    definition = get("definition")
    if definition is None:
        definition = {}
    elif type(definition) is not dict or any(type(v) is not str for v in definition.values()):
        return None
    return TaskResult(
        task_id=task_id,
        status=_FINAL_STATES[status],
        agent=get("agent"),
        output=get("output"),
        error=get("error"),
        error_type=get("error_type"),
        usage=Usage(input_tokens=tokens_in or 0, output_tokens=tokens_out or 0),
        attempts=attempts or 0,
        duration_s=duration,
        blamed=get("blamed"),
        fingerprint=get("fingerprint"),
        endpoint=_endpoint_read_back(get("endpoint")),
        definition=definition,
        input_digest=get("input_digest"),
    )


@overload
def _endpoint_read_back(key: str) -> str: ...
@overload
def _endpoint_read_back(key: str | None) -> str | None: ...
def _endpoint_read_back(key: str | None) -> str | None:
    """An endpoint key read from a result, spelled as endpoints are now.

    Results written before endpoints dropped credentials spell a URL's userinfo
    ``http://***@host`` and a credential parameter ``?key=***``: respelled, such an
    endpoint is the one a run makes today (its endpoint-keyed prices apply, a report shows
    one endpoint, not two). Only those keys are respelled: others are already spelled so.
    """
    if key is None or "***" not in key:  # what older versions redacted credentials to
        return key
    return endpoint_spelling(key)


def _task_from_dict(data: object, where: str) -> TaskResult:
    fast = _fast_task(data)
    if fast is not None:
        return fast
    fields = _Object(data, where)
    usage = fields.table("usage")
    calls: list[ToolCallRecord] = []
    for i, item in enumerate(fields.array("tool_calls")):
        call = _Object(item, fields.path(f"tool_calls[{i}]"))
        arguments = call.table("arguments")
        _check_depth(arguments.data, arguments.where)
        calls.append(
            ToolCallRecord(
                tool=call.required_str("tool"),
                arguments=arguments.data,
                result=call.optional_str("result") or "",
                error=call.optional_str("error"),
            )
        )
    status = fields.required_str("status")
    if status not in _FINAL_STATES:
        _fail(fields.path("status"), f"must be one of {', '.join(map(repr, _FINAL_STATES))}")
    task_id = fields.required_str("task_id")
    if not task_id:
        _fail(fields.path("task_id"), "must not be empty")
    return TaskResult(
        task_id=task_id,
        status=_FINAL_STATES[status],
        agent=fields.optional_str("agent"),
        output=fields.optional_str("output"),
        error=fields.optional_str("error"),
        error_type=fields.optional_str("error_type"),
        usage=Usage(
            input_tokens=usage.count("input_tokens"), output_tokens=usage.count("output_tokens")
        ),
        attempts=fields.count("attempts"),
        duration_s=fields.seconds("duration_s"),
        blamed=fields.optional_str("blamed"),
        skip_reason=fields.skip_reason("skip_reason"),
        fingerprint=fields.optional_str("fingerprint"),
        endpoint=_endpoint_read_back(fields.optional_str("endpoint")),
        tool_calls=tuple(calls),
        definition=fields.strings("definition"),
        input_digest=fields.optional_str("input_digest"),
        value=_value(fields),
    )


def _json_data(value: object) -> object:
    """A structured answer as JSON data (pydantic knows models, dataclasses, dates...)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    from pydantic_core import to_jsonable_python  # noqa: PLC0415  # structured runs only

    return to_jsonable_python(value)


def _value(fields: _Object) -> object:
    value = fields.data.get("value")
    if value is not None:
        _check_depth(value, fields.path("value"))
    return value


def _fail(field: str | None, problem: str) -> NoReturn:
    raise ResultFormatError(field or None, problem)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {_SHOW.repr(value)}"
    if isinstance(value, str):
        return f"the string {_SHOW.repr(value)}"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


class _Object:
    """One JSON object of a run result, read field by field; each error names the field."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            _fail(where, f"must be an object, got {_kind(data)}")
        self.data = cast("Mapping[str, object]", data)
        self.where = where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def skip_reason(self, key: str) -> SkipReason | None:
        value = self.optional_str(key)
        if value is None:
            return None
        try:
            return SkipReason(value)
        except ValueError:
            known = ", ".join(reason.value for reason in SkipReason)
            _fail(self.path(key), f"must be one of {known} or null, got {value!r:.40}")

    def optional_str(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None or isinstance(value, str):
            return value
        _fail(self.path(key), f"must be a string or null, got {_kind(value)}")

    def required_str(self, key: str) -> str:
        value = self.data.get(key)
        if isinstance(value, str):
            return value
        if key not in self.data:
            _fail(self.path(key), "is missing")
        _fail(self.path(key), f"must be a string, got {_kind(value)}")

    def count(self, key: str) -> int:
        """A whole number from 0 to 2**63 - 1; missing or null is 0."""
        value = self.data.get(key)
        if value is None:
            return 0
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_COUNT:
            return value
        _fail(self.path(key), f"must be a whole number from 0 to 2**63 - 1, got {_kind(value)}")

    def seconds(self, key: str) -> float:
        """A finite number >= 0; missing or null is 0.0."""
        value = self.data.get(key)
        if value is None:
            return 0.0
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if math.isfinite(number) and number >= 0:
                return number
        _fail(self.path(key), f"must be a finite number >= 0, got {_kind(value)}")

    def flag(self, key: str) -> bool:
        value = self.data.get(key, False)
        if isinstance(value, bool):
            return value
        _fail(self.path(key), f"must be true or false, got {_kind(value)}")

    def strings(self, key: str) -> dict[str, str]:
        """An object of strings; missing or null is empty."""
        table = self.table(key)
        for name, value in table.data.items():
            if not isinstance(value, str):
                _fail(table.path(name), f"must be a string, got {_kind(value)}")
        return dict(cast("Mapping[str, str]", table.data))

    def table(self, key: str) -> _Object:
        value = self.data.get(key)
        return _Object({} if value is None else value, self.path(key))

    def array(self, key: str) -> list[object]:
        value = self.data.get(key)
        if value is None:
            return []
        if isinstance(value, list):
            return cast("list[object]", value)
        _fail(self.path(key), f"must be an array, got {_kind(value)}")


def _check_depth(value: object, where: str) -> None:
    """Refuse tool-call arguments nested deeper than writing them back could manage."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_ARGUMENT_DEPTH:
            _fail(where, f"nested more than {_MAX_ARGUMENT_DEPTH} levels deep")
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in cast("Mapping[str, object]", item).values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in cast("list[object]", item))


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large result is built or read.

    Building 100k small dicts and values sets off collection after collection over a heap
    that only grows (the values hold no cycles); that was over half the time of ``from_json``.
    The collector runs again right after (if it was on).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _as_dict(value: Mapping[str, TaskResult]) -> dict[str, TaskResult]:
    return dict(value)


def _task_ids(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


class RunOutputs(dict[str, str]):
    """A run's outputs by task id: what :attr:`RunResult.outputs` gives, a ``dict`` subclass.

    Callable only so that code written when ``outputs`` was a method keeps working: the call
    returns a plain ``dict``, as the method did. A pickle of it loads as a plain ``dict``.
    """

    __slots__ = ()

    @deprecated("RunResult.outputs is a property now: write result.outputs, not result.outputs()")
    def __call__(self) -> dict[str, str]:
        """Deprecated: a plain ``dict`` copy of these outputs, as the old method returned."""
        return dict(self)

    def __reduce__(self) -> tuple[type[dict[str, str]], tuple[dict[str, str]]]:
        """Pickle as a plain ``dict``, so loading needs no aegis."""
        return (dict, (dict(self),))


@attrs.frozen
class RunResult(Mapping[str, TaskResult]):
    """The outcome of :meth:`~aegis_gov.OpenMultiAgent.run_tasks`: task id -> TaskResult.

    Iterates in the order the tasks were declared. ``summary()`` has the shape of
    :meth:`aegis_graph.TaskQueue.summary`; ``to_json``/``from_json`` round-trip it.
    """

    results: Mapping[str, TaskResult] = attrs.field(converter=_as_dict)
    team: str = ""
    cancelled: bool = False
    spent: Spent | None = None
    """What the run spent against its budget (None: it had none)."""
    run_id: str | None = None
    """The run's id in its checkpoint store (None: the run was not checkpointed)."""
    unfinished: tuple[str, ...] = attrs.field(default=(), converter=_task_ids)
    """Tasks of a run read back from a checkpoint store that never finished: the run was
    killed (or is still going) before they did. They have no entry in the mapping."""
    timeline: Timeline | None = attrs.field(default=None, eq=False, kw_only=True)
    """When each task started, waited, retried and ended, if the run was recorded by a
    :class:`~aegis_gov.TimelineRecorder` (``aegis run`` always records); not compared by
    ``==``."""

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
        usages = [result.usage for result in self.results.values()]
        return Usage(sum(u.input_tokens for u in usages), sum(u.output_tokens for u in usages))

    @property
    def ok(self) -> bool:
        """True when every task is DONE."""
        return all(r.status is TaskState.DONE for r in self.results.values())

    @property
    def outputs(self) -> RunOutputs:
        """The output of every DONE task, by task id (a new dict at each access).

        A property, like :attr:`ok` and :attr:`usage`. It used to be a method: code that
        still calls it, ``result.outputs()``, gets the same dict and a ``DeprecationWarning``.
        """
        return RunOutputs(
            (task_id, r.output or "")
            for task_id, r in self.results.items()
            if r.status is TaskState.DONE
        )

    def to_dict(self, *, tasks: bool = True) -> dict[str, object]:
        """A JSON-serialisable dict of the whole run (``tasks=False``: with an empty array)."""
        return {
            "format": _FORMAT_VERSION,
            "team": self.team,
            "cancelled": self.cancelled,
            "summary": self.summary(),
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
            },
            "tasks": [r.to_dict() for r in self.results.values()] if tasks else [],
            **({"spent": self.spent.to_dict()} if self.spent is not None else {}),
            **({"run_id": self.run_id} if self.run_id is not None else {}),
            **({"unfinished": list(self.unfinished)} if self.unfinished else {}),
            **({"timeline": self.timeline.to_dict()} if self.timeline is not None else {}),
        }

    def to_json(self, *, indent: int | None = None) -> str:
        """The run as JSON text (see :meth:`from_json`): compact, or indented by ``indent``.

        Compact text is encoded a batch of tasks at a time and, on CPython, grown in place,
        so a large run is held once as text, never also as a tree of dicts or as the pieces
        of the text. :meth:`write_json` writes the same text to a file without holding it.

        Raises:
            ValueError: a tool call's arguments (or a task's ``value``) hold NaN or an
                infinity, which JSON cannot express (and :meth:`from_json` would refuse).
            TypeError: a tool call's arguments hold a value with no JSON form.
        """
        if indent is not None:
            with _collector_paused():
                tree = self.to_dict()
            return json.dumps(tree, indent=indent, ensure_ascii=False, allow_nan=False)
        if not _GROWS_IN_PLACE:
            return "".join(self._compact_json())
        # CPython appends to a string nobody else holds in place (it resizes the buffer), so
        # the text is held once; "".join would hold every piece and the joined text at once.
        text = ""
        for piece in self._compact_json():
            text += piece
        return text

    def write_json(self, stream: IO[str], *, indent: int | None = None) -> None:
        """Write :meth:`to_json`'s text to the text *stream*, one task at a time.

        The text is the same as ``to_json(indent=indent)``; compact, it is written task by
        task (a batch of a few hundred at a time), so memory stays that of one batch's text
        however large the run (indented, the run's tree of dicts is built first, as for
        ``to_json``). Pass a file opened with ``encoding="utf-8"``.

        Raises:
            ValueError, TypeError: as :meth:`to_json`; the text written before the batch
                holding the bad task is then in *stream*.
        """
        if indent is not None:
            with _collector_paused():
                tree = self.to_dict()
            json.dump(tree, stream, indent=indent, ensure_ascii=False, allow_nan=False)
            return
        write = stream.write
        for piece in self._compact_json():
            write(piece)

    def _compact_json(self) -> Iterator[str]:
        """The pieces of the compact text: the run's fields around each task's object."""
        encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
        # Keys are written in order and "tasks" is the only one holding an empty array, and a
        # string value cannot contain the unescaped quote this looks for: one exact place.
        before, after = encode(self.to_dict(tasks=False)).split('"tasks": []', 1)
        yield before
        yield '"tasks": ['
        results = list(self.results.values())
        with _collector_paused():
            # Tasks are encoded a batch at a time (one encoder call per batch, not per task):
            # a list's items are joined by the same ", " as the run's, so the text is the same.
            for start in range(0, len(results), _ENCODE_BATCH):
                if start:
                    yield ", "
                batch = results[start : start + _ENCODE_BATCH]
                yield encode([result.to_dict() for result in batch])[1:-1]
        yield "]"
        yield after

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RunResult:
        """Rebuild a run from :meth:`to_dict`'s output.

        Raises:
            ResultFormatError: a ``ValueError`` whose ``field`` names the first bad field
                (``"tasks[2].attempts"``).
        """
        fields = _Object(data, "")
        _check_format(fields)
        if not isinstance(fields.data.get("tasks"), list):
            _fail("tasks", "missing: a run result has a 'tasks' array")
        return cls._assemble(fields, _read_tasks(fields.array("tasks")))

    @classmethod
    def _assemble(cls, fields: _Object, results: dict[str, TaskResult]) -> RunResult:
        """The run from its checked top-level fields and its tasks' results."""
        spent = None
        if fields.data.get("spent") is not None:
            table = fields.table("spent")
            cost = table.data.get("cost_usd")
            spent = Spent(
                tokens=table.count("tokens"),
                requests=table.count("requests"),
                cost_usd=None if cost is None else table.seconds("cost_usd"),
            )
        unfinished = fields.array("unfinished")
        seen: set[str] = set()
        for i, item in enumerate(unfinished):
            if not isinstance(item, str):
                _fail(f"unfinished[{i}]", f"must be a task id, got {_kind(item)}")
            if item in seen or item in results:
                again = "appears more than once" if item in seen else "is a finished task"
                _fail(f"unfinished[{i}]", f"{item!r} {again}")
            seen.add(item)
        return cls(
            results=results,
            team=fields.optional_str("team") or "",
            cancelled=fields.flag("cancelled"),
            spent=spent,
            run_id=fields.optional_str("run_id"),
            unfinished=cast("list[str]", unfinished),
            timeline=read_timeline(fields.data.get("timeline"), "timeline"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> RunResult:
        """Parse :meth:`to_json`'s output (bytes must be UTF-8).

        Raises:
            ResultFormatError: a ``ValueError`` for anything else, naming the bad field (or
                saying why the text is not JSON at all). NaN and Infinity are refused.
        """
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as exc:
                _fail(None, f"run result is not UTF-8 text ({exc.reason} at byte {exc.start})")
        with _collector_paused():
            try:
                streamed = _stream(text)
            except RecursionError:
                _fail(None, "run result is not valid JSON: nested too deeply")
            except ValueError as exc:  # JSONDecodeError, NaN, an integer of thousands of digits
                if isinstance(exc, ResultFormatError):
                    raise
                _fail(None, f"run result is not valid JSON: {exc}")
            if streamed is None:  # not an object: say what it is, as the whole-text reader does
                return cls.from_dict(_load_object(text))
            fields, results = streamed
            if results is None:
                if not isinstance(fields.data.get("tasks"), list):
                    _fail("tasks", "missing: a run result has a 'tasks' array")
                results = _read_tasks(fields.array("tasks"))
            return cls._assemble(fields, results)


def read_timeline(data: object, where: str) -> Timeline | None:
    """A :class:`Timeline` from its ``to_dict`` data (None stays None), every field checked.

    Raises:
        ResultFormatError: naming the bad field (``"timeline.entries[3].at_s"``).
    """
    if data is None:
        return None
    # A run without a timeline (the library's default) never loads the module.
    from aegis_gov._timeline import TIMELINE_KINDS, Timeline, TimelineEntry  # noqa: PLC0415

    fields = _Object(data, where)
    entries = []
    for i, item in enumerate(fields.array("entries")):
        entry = _Object(item, fields.path(f"entries[{i}]"))
        kind = entry.required_str("kind")
        if kind not in TIMELINE_KINDS:
            _fail(entry.path("kind"), f"must be one of {', '.join(sorted(TIMELINE_KINDS))}")
        if "at_s" not in entry.data:
            _fail(entry.path("at_s"), "is missing")
        entries.append(
            TimelineEntry(
                at_s=entry.seconds("at_s"),
                kind=kind,  # type: ignore[arg-type]  # checked above
                subject=entry.required_str("subject"),
                attempt=entry.count("attempt"),
                delay_s=entry.seconds("delay_s"),
                endpoint=_endpoint_read_back(entry.optional_str("endpoint")) or "",
                error=entry.optional_str("error") or "",
                state=entry.optional_str("state") or "",
                previous_state=entry.optional_str("previous_state") or "",
            )
        )
    dependencies: dict[str, tuple[str, ...]] = {}
    graph = fields.table("dependencies")
    for task_id in graph.data:
        deps = graph.array(task_id)
        for j, dep in enumerate(deps):
            if not isinstance(dep, str):
                _fail(graph.path(f"{task_id}[{j}]"), f"must be a task id, got {_kind(dep)}")
        dependencies[task_id] = tuple(cast("list[str]", deps))
    return Timeline(entries=entries, dependencies=dependencies, prices=_read_prices(fields))


def _read_prices(fields: _Object) -> dict[str, Price]:
    """A timeline's ``prices``, keyed by endpoints as they are spelled now."""
    written: dict[str, Price] = {}
    table = fields.table("prices")
    for name in table.data:
        pair = table.array(name)
        if len(pair) != 2:  # noqa: PLR2004  # input and output price
            _fail(table.path(name), "must be [input, output] US dollars per million tokens")
        pair_fields = _Object({"input": pair[0], "output": pair[1]}, table.path(name))
        written[name] = Price(pair_fields.seconds("input"), pair_fields.seconds("output"))
    # Keys written as "http://***@host" by older versions respell to today's endpoint: two
    # of them may now name one endpoint. One price is kept for both; different prices are
    # refused, naming both keys, rather than one silently replacing the other.
    try:
        return endpoint_keyed(fields.path("prices"), written, Price)
    except ValueError as exc:
        _fail(fields.path("prices"), str(exc))


def _load_object(text: str) -> Mapping[str, object]:
    """The whole text parsed at once, which must be an object (errors as ``from_json``'s)."""
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        _fail(None, "run result is not valid JSON: nested too deeply")
    except ValueError as exc:
        _fail(None, f"run result is not valid JSON: {exc}")
    if not isinstance(data, dict):
        _fail(None, f"run result JSON must be an object, got {_kind(data)}")
    return cast("Mapping[str, object]", data)


def _skip(text: str, pos: int) -> int:
    """The position after any JSON whitespace at *pos*."""
    match = _SPACE.match(text, pos)
    return match.end() if match is not None else pos


_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)
_SPACE: Final = re.compile(r"[ \t\n\r]*")


def _check_format(fields: _Object) -> None:
    version = fields.data.get("format")
    if type(version) is not int or version != _FORMAT_VERSION:
        _fail(
            "format",
            f"unsupported run result format {_SHOW.repr(version)} "
            f"(this version reads format {_FORMAT_VERSION})",
        )


def _read_tasks(items: Iterable[object]) -> dict[str, TaskResult]:
    results: dict[str, TaskResult] = {}
    for i, item in enumerate(items):
        result = _task_from_dict(item, f"tasks[{i}]")
        if result.task_id in results:
            _fail(f"tasks[{i}].task_id", f"{result.task_id!r} appears more than once")
        results[result.task_id] = result
    return results


def _stream(text: str) -> tuple[_Object, dict[str, TaskResult] | None] | None:
    """Read a run's JSON object key by key, turning each task into a result as it is read.

    Only one task's parsed dict is alive at a time, so reading a large run costs about the
    size of its results, not of a whole tree of dicts as well. Returns None when the text is
    not an object; the results are None when the tasks were read before a valid ``format``
    (they are then checked afterwards, in the usual order).
    """
    decode = _DECODER.raw_decode
    pos = _skip(text, 0)
    if text[pos : pos + 1] != "{":
        return None
    pos = _skip(text, pos + 1)
    head: dict[str, object] = {}
    results: dict[str, TaskResult] | None = None
    if text[pos : pos + 1] == "}":
        pos += 1
    else:
        while True:
            key, pos = _key(text, pos)
            if key == "tasks" and text[pos : pos + 1] == "[" and "format" in head:
                _check_format(_Object(head, ""))
                results, pos = _stream_tasks(text, pos)
                head[key] = []
            else:
                head[key], pos = decode(text, pos)
                if key == "tasks":
                    results = None  # read again, in full, after the format is checked
            pos = _skip(text, pos)
            separator = text[pos : pos + 1]
            pos = _skip(text, pos + 1)
            if separator == "}":
                break
            if separator != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
    if _skip(text, pos) != len(text):
        raise json.JSONDecodeError("Extra data", text, pos)
    fields = _Object(head, "")
    _check_format(fields)
    return fields, results


def _key(text: str, pos: int) -> tuple[str, int]:
    """An object's key at *pos* and where its value starts (after the colon)."""
    key, pos = _DECODER.raw_decode(text, pos)
    if not isinstance(key, str):
        raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, pos)
    pos = _skip(text, pos)
    if text[pos : pos + 1] != ":":
        raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
    return key, _skip(text, pos + 1)


def _stream_tasks(text: str, pos: int) -> tuple[dict[str, TaskResult], int]:
    """The ``tasks`` array starting at *pos* (its ``[``), read one task at a time."""
    decode = _DECODER.raw_decode
    results: dict[str, TaskResult] = {}
    pos = _skip(text, pos + 1)
    if text[pos : pos + 1] == "]":
        return results, pos + 1
    i = 0
    while True:
        item, pos = decode(text, pos)
        result = _task_from_dict(item, f"tasks[{i}]")
        if result.task_id in results:
            _fail(f"tasks[{i}].task_id", f"{result.task_id!r} appears more than once")
        results[result.task_id] = result
        i += 1
        pos = _skip(text, pos)
        separator = text[pos : pos + 1]
        pos = _skip(text, pos + 1)
        if separator == "]":
            return results, pos
        if separator != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)


class RunCancelledError(AegisError):
    """A run was cancelled; ``result`` holds everything that finished before it stopped."""

    def __init__(self, result: RunResult) -> None:
        """Attach the partial result."""
        summary = result.summary()
        super().__init__(f"run cancelled; partial result: {summary}")
        self.result = result
