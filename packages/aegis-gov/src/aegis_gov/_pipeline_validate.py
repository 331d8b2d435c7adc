"""Checking parsed TOML against the pipeline schema, and saying what is wrong in words.

:func:`validate_document` runs jsonschema's Draft 2020-12 validator (with the integer and
number conventions of :mod:`aegis_gov._pipeline_schema`) and turns its most relevant error
(``best_match``) into one :class:`PipelineError` naming the file, the entry and the problem,
worded as a person would: ``agent 'a': 'delay_s' must be a number >= 0 and <= 86400, got nan``.
"""

from __future__ import annotations

import difflib
import functools
import math
import reprlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

from aegis_gov._errors import AegisError
from aegis_gov._pipeline_schema import PIPELINE_SCHEMA, PipelineDoc, Schema

if TYPE_CHECKING:
    import jsonschema.protocols

__all__ = ["PipelineError", "one_of", "show", "suggest", "validate_document"]


class PipelineError(AegisError, ValueError):
    """A pipeline file cannot be used; the message names the file, the entry and the problem.

    Attributes:
        path: The file (as given).
        entry: What is wrong inside it (``"task 'draft'"``, ``"agents[2]"``), or ``None`` for
            the file as a whole.
        problem: What is wrong, in words.
    """

    def __init__(self, path: str, entry: str | None, problem: str) -> None:
        """Record where the problem is and what it is."""
        where = f"{path}: {entry}" if entry else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.entry = entry
        self.problem = problem


# -- validation --------------------------------------------------------------------------


def _is_integer(_checker: object, value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # not 2.0, not true


def _is_number(_checker: object, value: object) -> bool:
    return _is_integer(_checker, value) or (isinstance(value, float) and math.isfinite(value))


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    """The pipeline schema's validator, built on first use: jsonschema is slow to import."""
    import jsonschema  # noqa: PLC0415
    import jsonschema.validators  # noqa: PLC0415

    kind: type[jsonschema.protocols.Validator] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]  # extend() has no annotations in types-jsonschema
        jsonschema.Draft202012Validator,
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
            {"integer": _is_integer, "number": _is_number}
        ),
    )
    return kind(PIPELINE_SCHEMA)


_TOP_TABLES: Final = ("retry", "breaker", "tools")
# Tables whose keys include names of models or servers.
_NAMED_TABLES: Final = ("limits", "budget", "mcp_servers")
_KEYWORDS: Final = frozenset({"limits", "budget", "prices", "mcp_servers"})

Path = list[str | int]  # a path into the document: keys and array indices


def validate_document(raw: dict[str, Any], path: str) -> PipelineDoc:
    """``raw`` (parsed TOML) as a :class:`PipelineDoc`, once it matches the schema.

    Raises:
        PipelineError: for the most relevant mismatch, naming ``path``, the entry and the
            problem in words.
    """
    import jsonschema.exceptions  # noqa: PLC0415  # lazy, as in _validator

    error = jsonschema.exceptions.best_match(_validator().iter_errors(raw))
    if error is not None:
        at: Path = list(error.absolute_path)
        entry, problem = _explain(raw, at, str(error.validator), error.validator_value)
        raise PipelineError(path, entry, problem)
    return cast("PipelineDoc", raw)  # the schema above is exactly what PipelineDoc describes


def _explain(
    raw: Mapping[str, object], at: Path, keyword: str, expected: object
) -> tuple[str | None, str]:
    """The entry and the problem of an error of ``keyword`` at ``at``."""
    table = _value_at(raw, at)
    if keyword == "additionalProperties" and isinstance(table, dict):
        allowed = sorted(_schema_at(at)["properties"])
        key = next(str(k) for k in table if k not in allowed)
        return _entry(raw, at), f"unknown field {show(key)}{suggest(key, allowed)}"
    if keyword == "required" and isinstance(table, dict) and isinstance(expected, list):
        missing = next(str(k) for k in expected if k not in table)
        field = _schema_at([*at, missing])
        problem = field.get("x-missing") or f"has no {missing!r}{one_of(field.get('enum', ()))}"
        return _entry(raw, at), problem
    # Report on the field (or the array item that explains itself) holding the bad value.
    while at and not isinstance(at[-1], str) and "x-must" not in _schema_at(at):
        at = at[:-1]
    if not at:  # pragma: no cover  # TOML always gives a table, and its keys are checked above
        return None, f"must be a table of settings, got {show(raw)}"
    if isinstance(at[-1], int):
        value = _value_at(raw, at)
        return _entry(raw, at), f"must be {_schema_at(at)['x-must']}, got {show(value)}"
    return _entry(raw, at[:-1]), _field_problem(at[-1], _schema_at(at), _value_at(raw, at))


def _field_problem(key: str, schema: Schema, value: object) -> str:
    """What is wrong with ``value`` as the field ``key`` of ``schema``."""
    if "x-missing" in schema and value == []:
        return str(schema["x-missing"])
    if value == "" and schema.get("minLength"):
        return f"has no {key!r}"
    if "enum" in schema and isinstance(value, str):
        return f"unknown {key} {value!r}{one_of(schema['enum'])}"
    return f"{key!r} must be {_must(schema)}, got {show(value)}"


def _must(schema: Schema) -> str:
    """What a value of ``schema`` must be, in words (its bounds included)."""
    if "x-must" in schema:
        return str(schema["x-must"])
    kind = schema["type"]
    if kind == "integer":
        return f"an integer >= {schema['minimum']} and <= {schema['maximum']}"
    if kind == "number":
        low = ">= 0" if "minimum" in schema else "> 0"
        return f"a number {low} and <= {schema['maximum']:g}"
    words = {
        "string": "a string",
        "boolean": "true or false",
        "object": "a table",
        "array": "a list of strings",  # arrays of anything else say so with x-must
    }
    return words[kind]


def _schema_at(at: Path) -> Schema:
    schema = PIPELINE_SCHEMA
    for step in at:
        if not isinstance(step, str):
            schema = schema["items"]
        elif step in schema.get("properties", {}):
            schema = schema["properties"][step]
        else:  # a table keyed by name ([limits."model"]): every entry has one schema
            schema = schema["additionalProperties"]
    return schema


def _value_at(raw: Mapping[str, object], at: Path) -> object:
    value: Any = raw
    for step in at:
        value = value[step]
    return value


def _entry(raw: Mapping[str, object], at: Path) -> str | None:
    """How a message names the table at ``at``: ``agent 'a', replies[0]``, ``[retry]``."""
    if not at:
        return None
    if at[0] in _TOP_TABLES:
        return f"[{at[0]}]"
    if at[0] in _NAMED_TABLES:  # [limits."gpt-4o-mini"], [budget.prices."gpt-4o-mini"]
        return "[" + ".".join(str(s) if s in _KEYWORDS else f'"{s}"' for s in at) + "]"
    kind, index, *rest = at  # ["agents", 0, "replies", 1, ...]: name, index, name, index
    item = _value_at(raw, [kind, index])
    label = item.get("name" if kind == "agents" else "id") if isinstance(item, dict) else None
    named = isinstance(label, str) and label
    words = [f"{str(kind)[:-1]} {label!r}" if named else f"{kind}[{index}]"]
    words += [f"{name}[{i}]" for name, i in zip(rest[::2], rest[1::2], strict=False)]
    return ", ".join(words)


# -- wording -----------------------------------------------------------------------------

_SHOW: Final = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 60


def show(value: object) -> str:
    """``repr(value)`` cut short, so one huge or deeply nested value cannot flood the message."""
    return _SHOW.repr(value)


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_of(choices: Iterable[str]) -> str:
    """``; expected one of 'a', 'b'``, or nothing when there are no choices."""
    names = ", ".join(repr(c) for c in choices)
    return f"; expected one of {names}" if names else ""
