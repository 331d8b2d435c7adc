"""Structured output: an agent's answer checked against an output type or a JSON Schema.

An :class:`OutputSpec` is made once per agent, from its ``output_type``: pydantic's
``TypeAdapter`` gives a type's JSON Schema and validates answers against it; a raw JSON
Schema (a dict) is checked with jsonschema instead, and its answers stay JSON data. The
conversation asks each answer :meth:`OutputSpec.check`, and feeds a failed check's
:attr:`Invalid.problem` back to the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, cast

import attrs
from aegis_adapters import OutputSchema

from aegis_gov._errors import AegisError
from aegis_gov._schema_refs import empty_registry, outside_reference

if TYPE_CHECKING:
    import jsonschema.exceptions
    import pydantic

__all__ = ["Invalid", "OutputSpec", "OutputValidationError", "output_spec"]

_MAX_SHOWN: Final = 2000  # characters of a bad answer kept on the error
_MAX_PROBLEMS: Final = 8  # validation errors listed in one problem
_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n(?P<body>.*?)\n?```$", re.DOTALL)
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_-]+")


class OutputValidationError(AegisError, ValueError):
    """An agent's answers did not match its ``output_type``, its output retries spent.

    Every invalid answer is sent back to the model with what was wrong, up to the agent's
    ``output_retries`` times; the last one's problem ends the task with this error.

    Attributes:
        agent: The agent's name.
        answers: How many answers the model gave, all invalid.
        problem: What was wrong with the last answer, in words (one line per error).
        answer: The last answer's text (cut to 2,000 characters).
    """

    def __init__(self, agent: str, answers: int, problem: str, answer: str) -> None:
        """Record the agent, the count of answers, the last problem and answer."""
        shown = answer if len(answer) <= _MAX_SHOWN else answer[:_MAX_SHOWN] + "..."
        super().__init__(
            f"agent {agent!r} gave {answers} answer(s) that do not match its output type; "
            f"the last one: {problem} (answer: {shown[:200]!r})"
        )
        self.agent = agent
        self.answers = answers
        self.problem = problem
        self.answer = shown


@attrs.frozen
class Invalid:
    """A failed check: what was wrong, in words the model is shown."""

    problem: str


@attrs.frozen
class OutputSpec:
    """What one agent's answers must be: a JSON Schema, and how to check and dump an answer."""

    name: str
    schema: Mapping[str, object] = attrs.field(hash=False)
    _parse: Callable[[str], object] = attrs.field(eq=False, repr=False)
    _dump: Callable[[object], object] = attrs.field(eq=False, repr=False)
    request: OutputSchema = attrs.field(init=False, eq=False, repr=False)
    """The schema as an adapter's ``output_schema`` (strict where OpenAI would accept it)."""
    _instructions: str = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        """Make the adapters' form of the schema, and the prompt's, once."""
        strict = _strict_ok(self.schema)
        object.__setattr__(self, "request", OutputSchema(self.name, self.schema, strict=strict))
        object.__setattr__(
            self,
            "_instructions",
            "Answer with one JSON object that matches this JSON Schema, and nothing else "
            "(no prose, no Markdown code fence):\n"
            + json.dumps(dict(self.schema), ensure_ascii=False),
        )

    def check(self, text: str) -> object:
        """The answer *text* as a validated value, or an :class:`Invalid` saying why not.

        Surrounding whitespace and a Markdown code fence around the JSON are tolerated.
        """
        return self._parse(_unfenced(text))

    def to_json_text(self, value: object) -> str:
        """*value* as compact JSON text: what later tasks and ``output`` get."""
        return json.dumps(self._dump(value), ensure_ascii=False)

    def instructions(self) -> str:
        """What the prompt says when the provider cannot be asked for the schema itself."""
        return self._instructions

    def feedback(self, problem: str) -> str:
        """The message that sends an invalid answer's *problem* back to the model."""
        return (
            f"Your answer does not match the required JSON Schema:\n{problem}\n"
            "Answer again with only the corrected JSON object."
        )


def output_spec(output_type: object) -> OutputSpec:
    """The spec of *output_type*: a type pydantic can validate, or a JSON Schema dict.

    Raises:
        TypeError: pydantic cannot make a JSON Schema of *output_type*.
        ValueError: the schema is not a valid JSON Schema of an ``object``.
    """
    if isinstance(output_type, Mapping):
        return _from_schema(cast("Mapping[str, object]", output_type))
    return _from_type(output_type)


def _from_type(output_type: object) -> OutputSpec:
    import pydantic  # noqa: PLC0415  # only agents with an output_type pay for the import

    try:
        adapter = pydantic.TypeAdapter[object](cast("type[object]", output_type))
        schema = adapter.json_schema()
    except (pydantic.PydanticUserError, pydantic.PydanticUndefinedAnnotation) as exc:
        raise TypeError(f"output_type {output_type!r:.80} has no JSON Schema: {exc}") from exc
    _check_object(schema, f"output_type {output_type!r:.80}")
    name = getattr(output_type, "__name__", None) or str(schema.get("title") or "answer")

    def parse(text: str) -> object:
        try:
            return adapter.validate_json(text)
        except pydantic.ValidationError as exc:
            return Invalid(_pydantic_problem(exc))

    def dump(value: object) -> object:
        return adapter.dump_python(value, mode="json")

    return OutputSpec(_schema_name(name), schema, parse, dump)


def _from_schema(schema: Mapping[str, object]) -> OutputSpec:
    import jsonschema  # noqa: PLC0415
    import jsonschema.exceptions  # noqa: PLC0415
    import jsonschema.validators  # noqa: PLC0415

    try:  # a deep copy, which must be JSON itself
        copied = json.loads(json.dumps(dict(schema), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"output_type (a JSON Schema) is not JSON data: {exc}") from None
    _check_object(copied, "output_type (a JSON Schema)")
    kind = jsonschema.validators.validator_for(copied)
    try:
        kind.check_schema(copied)
    except jsonschema.exceptions.SchemaError as exc:
        raise ValueError(f"output_type is not a valid JSON Schema: {exc.message}") from exc
    outside = outside_reference(copied)
    if outside is not None:
        raise ValueError(
            f"output_type refers to {outside!r:.80} outside itself; only references within the "
            "schema (#/...) are allowed, so checking an answer never fetches anything"
        )
    validator = kind(copied, registry=empty_registry())

    def parse(text: str) -> object:
        try:
            value: object = json.loads(text)
        except ValueError as exc:
            return Invalid(f"not JSON: {exc}")
        except RecursionError:
            return Invalid("not JSON: nested too deeply")
        errors = sorted(validator.iter_errors(cast("Mapping[str, str]", value)), key=_where)
        if not errors:
            return value
        lines = [f"{_path(list(e.absolute_path))}: {e.message}" for e in errors[:_MAX_PROBLEMS]]
        return Invalid("\n".join(lines))

    return OutputSpec(_schema_name(str(copied.get("title") or "answer")), copied, parse, _same)


def _where(error: jsonschema.exceptions.ValidationError) -> list[str]:
    return [str(part) for part in error.absolute_path]


def _same(value: object) -> object:
    return value


def _check_object(schema: Mapping[str, object], what: str) -> None:
    if schema.get("type") != "object":
        raise ValueError(
            f'{what} must describe a JSON object (schema "type": "object"), got '
            f"{json.dumps(dict(schema))[:120]}: wrap other values in a model or TypedDict"
        )


def _schema_name(name: str) -> str:
    return _NOT_A_NAME.sub("_", name).strip("_")[:64] or "answer"


def _path(parts: list[object]) -> str:
    return "/" + "/".join(str(part) for part in parts) if parts else "(the answer)"


def _pydantic_problem(exc: pydantic.ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False)[:_MAX_PROBLEMS]:
        where = _path(list(error["loc"]))
        lines.append(f"{where}: {error['msg']}")
    return "\n".join(lines)


def _unfenced(text: str) -> str:
    stripped = text.strip()
    match = _FENCE.match(stripped)
    return match.group("body").strip() if match else stripped


def _strict_ok(schema: object) -> bool:
    """Whether OpenAI's strict mode takes *schema*: every object closed, every property required."""
    if isinstance(schema, Mapping):
        node = cast("Mapping[str, object]", schema)
        properties = node.get("properties")
        if node.get("type") == "object" or isinstance(properties, Mapping):
            props = cast("Mapping[str, object]", properties or {})
            required = node.get("required") or []
            if node.get("additionalProperties") is not False or not isinstance(required, list):
                return False
            if set(props) != set(cast("list[object]", required)):
                return False
        return all(_strict_ok(value) for value in node.values())
    if isinstance(schema, list):
        return all(_strict_ok(item) for item in cast("list[object]", schema))
    return True
