# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""The ``Tool`` value (what a model sees and the function to run) and ``ToolOutcome``.

Also the rules every tool obeys wherever it is registered: the name pattern, the schema check,
and how a tool's result becomes the text the model reads (``to_text``).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping

import attrs
from aegis_adapters import ToolSpec

from aegis_gov._schema_refs import outside_reference
from aegis_gov._tool_errors import InvalidToolNameError, InvalidToolSchemaError, ToolError

__all__ = ["TOOL_NAME_PATTERN", "Tool", "ToolOutcome", "clip", "to_text"]

TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MAX_DETAIL_CHARS = 200


def clip(text: str, limit: int = _MAX_DETAIL_CHARS) -> str:
    """*text*, cut to *limit* characters (ending in an ellipsis) for an error message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _validate_name(name: object) -> None:
    if not isinstance(name, str) or not TOOL_NAME_PATTERN.match(name):
        raise InvalidToolNameError(
            "a tool name must be 1 to 64 characters among letters, digits, '_' and '-'",
            tool_name=clip(str(name), 64),
        )


def _validate_schema(name: str, schema: object) -> None:
    if not isinstance(schema, Mapping):
        raise InvalidToolSchemaError(
            f"schema must be a mapping, not {type(schema).__name__}", tool_name=name
        )
    import jsonschema  # noqa: PLC0415  # lazy: checked when a tool is made, not on import
    import jsonschema.exceptions  # noqa: PLC0415

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(top level)"
        raise InvalidToolSchemaError(
            f"schema is not valid JSON Schema at {where}: {clip(exc.message)}", tool_name=name
        ) from exc
    if schema.get("type") != "object":
        raise InvalidToolSchemaError(
            'schema must describe an object: its top level needs "type": "object"', tool_name=name
        )
    outside = outside_reference(schema)
    if outside is not None:
        raise InvalidToolSchemaError(
            f"schema refers to {clip(outside, 80)!r} outside itself; only references within "
            "the schema (#/...) are allowed, so checking arguments never fetches anything",
            tool_name=name,
        )


def _frozen_schema(schema: Mapping[str, object]) -> Mapping[str, object]:
    # A private deep copy: later changes to the caller's dict cannot change the tool.
    # Untyped callers may pass a non-mapping: keep it as is for _validate_schema to report.
    value: object = schema
    return copy.deepcopy(dict(schema)) if isinstance(value, Mapping) else schema


def _check_name(_instance: object, _attribute: object, value: str) -> None:
    _validate_name(value)


@attrs.frozen
class Tool:
    """A callable tool: what a model sees (name, description, schema) and the function to run.

    ``fn`` is called with the validated arguments as keyword arguments. Its result becomes the
    tool's text output: a ``str`` as is, ``None`` as ``""``, a mapping, list, tuple, bool, int or
    float as JSON, anything else through ``str()``. ``fn`` may raise a ``ToolError`` subclass
    itself; any other exception becomes ``ToolExecutionError``.

    Raises:
        InvalidToolNameError: the name breaks the providers' rule.
        InvalidToolSchemaError: the schema is not a valid JSON Schema object schema.
        TypeError: *description* is not a string or *fn* is not callable.
    """

    name: str = attrs.field(validator=_check_name)
    description: str = attrs.field(validator=attrs.validators.instance_of(str))
    fn: Callable[..., object] = attrs.field(validator=attrs.validators.is_callable())
    input_schema: Mapping[str, object] = attrs.field(converter=_frozen_schema)

    def __attrs_post_init__(self) -> None:
        """Reject an invalid schema, so an invalid Tool cannot exist."""
        _validate_schema(self.name, self.input_schema)

    @property
    def spec(self) -> ToolSpec:
        """What an adapter offers the model: name, description and input schema."""
        return ToolSpec(
            name=self.name,
            description=self.description,
            input_schema=copy.deepcopy(dict(self.input_schema)),
        )


@attrs.frozen
class ToolOutcome:
    """The result of ``ToolRegistry.try_call``: the text for the model and the error, if any.

    Attributes:
        tool_name: The tool that was called.
        output: The tool's output, or the error message when the call failed.
        error: The ``ToolError`` raised, or None on success.
    """

    tool_name: str
    output: str
    error: ToolError | None = None

    @property
    def is_error(self) -> bool:
        """True when the call failed (send ``output`` back to the model as an error result)."""
        return self.error is not None


def to_text(result: object) -> str:
    """The text a tool's *result* becomes (see ``Tool``)."""
    if isinstance(result, str):
        return result
    if result is None:
        return ""
    if isinstance(result, (Mapping, list, tuple, bool, int, float)):
        return json.dumps(result, ensure_ascii=False, default=str)
    return str(result)
