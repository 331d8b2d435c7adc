# Copyright (c) 2026 The aegis developers. Licensed under the MIT License.
"""Tools from typed functions: the schema from the signature and docstring, pydantic validation.

``function_tool(fn)`` builds a pydantic model with one field per parameter of *fn* (its type,
its default, its description from the docstring), offers the model's JSON Schema to the
model, and validates each call's arguments with that same model, so the schema and the check
cannot disagree. Nested pydantic models, dataclasses, TypedDicts, enums and ``Literal`` arrive
as the objects the function declares.

pydantic is imported on first use, not when ``aegis_gov`` is imported.
"""

from __future__ import annotations

import functools
import inspect
import json
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from aegis_gov._tool import Tool, clip
from aegis_gov._tool_errors import InvalidToolArgumentsError, InvalidToolSchemaError

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic_core import ErrorDetails

__all__ = ["FunctionTool", "function_tool"]

_MAX_ERRORS_SHOWN = 5
_NOT_PARAMETERS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional-only",
    inspect.Parameter.VAR_POSITIONAL: "*args",
    inspect.Parameter.VAR_KEYWORD: "**kwargs",
}
# Keys under which a JSON Schema holds subschemas: "title" is dropped only from schemas,
# never from a "properties" mapping where it may be a parameter's name.
_SCHEMA_MAPS = ("properties", "$defs", "patternProperties", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


@attrs.frozen
class FunctionTool(Tool):
    """A ``Tool`` made from a typed function (see :meth:`ToolRegistry.add_function`).

    ``validate`` turns the model's arguments into the keyword arguments of ``fn`` (raising
    ``InvalidToolArgumentsError``); ``render`` turns its result into text.
    """

    validate: Callable[[Mapping[str, object]], dict[str, object]] = attrs.field(
        validator=attrs.validators.is_callable()
    )
    render: Callable[[object], str] = attrs.field(validator=attrs.validators.is_callable())


def function_tool(
    fn: Callable[..., object], *, name: str | None = None, description: str | None = None
) -> FunctionTool:
    """The tool for *fn*, named *name* and described by *description*.

    By default the name is the function's and the description its docstring without the
    parameter sections.

    Raises:
        InvalidToolNameError: the name breaks ``^[a-zA-Z0-9_-]{1,64}$``.
        InvalidToolSchemaError: a parameter cannot be a tool argument (``*args``, ``**kwargs``,
            positional-only) or its type has no JSON Schema.
        TypeError: *fn* is not callable.
    """
    if not callable(fn):
        raise TypeError(f"a tool function must be callable, not {type(fn).__name__}")
    import docstring_parser  # noqa: PLC0415  # lazy: pydantic's import is not free
    from pydantic import ConfigDict, Field, create_model  # noqa: PLC0415
    from pydantic.errors import PydanticUserError  # noqa: PLC0415

    # A functools.partial or a callable object: the types are the wrapped function's.
    typed = _typed(fn)
    tool_name = name if name is not None else getattr(typed, "__name__", type(fn).__name__)
    if inspect.isasyncgenfunction(typed) or inspect.isgeneratorfunction(typed):
        raise InvalidToolSchemaError(
            "a generator function cannot be a tool: calling it would not run its body "
            "(return the result, or a list of results, instead)",
            tool_name=str(tool_name),
        )
    doc = docstring_parser.parse(_docstring(fn, typed))
    described = {p.arg_name: p.description for p in doc.params if p.description}
    try:
        hints = typing.get_type_hints(typed, include_extras=True)
        signature = inspect.signature(fn)
    except (NameError, TypeError, ValueError) as exc:
        raise InvalidToolSchemaError(
            f"cannot read the function's signature: {clip(str(exc))}", tool_name=str(tool_name)
        ) from exc
    fields: dict[str, Any] = {}
    names: dict[str, str] = {}  # field -> parameter: fields are p0, p1... so any name works
    bound = _bound(fn)
    for index, (param_name, param) in enumerate(signature.parameters.items()):
        if param_name in bound:
            continue
        if param.kind in _NOT_PARAMETERS:
            raise InvalidToolSchemaError(
                f"parameter {param_name!r} is {_NOT_PARAMETERS[param.kind]}; a tool's "
                "arguments are keywords",
                tool_name=str(tool_name),
            )
        extra: dict[str, Any] = {"alias": param_name}
        if param_name in described:
            extra["description"] = described[param_name]
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[f"p{index}"] = (hints.get(param_name, Any), Field(default, **extra))
        names[f"p{index}"] = param_name
    try:
        model = create_model(str(tool_name), __config__=ConfigDict(extra="forbid"), **fields)
        schema = _without_titles(model.model_json_schema())
    except (PydanticUserError, TypeError, ValueError) as exc:
        raise InvalidToolSchemaError(
            f"a parameter's type has no JSON Schema: {clip(str(exc))}", tool_name=str(tool_name)
        ) from exc
    text = description if description is not None else _description(doc)
    return FunctionTool(
        name=tool_name,
        description=text,
        fn=fn,
        input_schema=schema,
        validate=_validator(str(tool_name), model, names),
        render=_render,
    )


def _typed(fn: Callable[..., object]) -> Callable[..., object]:
    """What holds *fn*'s annotations and docstring: itself, a partial's function, ``__call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.isroutine(fn) or isinstance(fn, type):
        return fn
    call: Callable[..., object] = type(fn).__call__
    return call


def _docstring(fn: Callable[..., object], typed: Callable[..., object]) -> str:
    if typed is fn or isinstance(fn, functools.partial):
        return inspect.getdoc(typed) or ""
    own = typed.__doc__  # a callable object: its __call__'s own docstring, else its class's
    return inspect.cleandoc(own) if own else inspect.getdoc(fn) or ""


def _bound(fn: Callable[..., object]) -> set[str]:
    """The keywords a ``functools.partial`` fixed: not the model's to set (or to see)."""
    bound: set[str] = set()
    while isinstance(fn, functools.partial):
        bound.update(fn.keywords)
        fn = fn.func
    return bound


def _description(doc: Any) -> str:  # docstring_parser.Docstring, imported lazily
    parts = [doc.short_description, doc.long_description]
    return "\n\n".join(part.strip() for part in parts if part and part.strip())


def _validator(
    tool_name: str, model: type[BaseModel], names: Mapping[str, str]
) -> Callable[[Mapping[str, object]], dict[str, object]]:
    from pydantic import ValidationError  # noqa: PLC0415

    def validate(arguments: Mapping[str, object]) -> dict[str, object]:
        try:
            instance = model.model_validate(dict(arguments))
        except ValidationError as exc:
            raise _invalid(tool_name, exc.errors(include_url=False, include_input=False)) from None
        # Attributes, not model_dump: nested models and dataclasses stay the objects declared.
        return {param: getattr(instance, field) for field, param in names.items()}

    return validate


def _invalid(tool_name: str, errors: Sequence[ErrorDetails]) -> InvalidToolArgumentsError:
    """One error naming every failing argument (the first few), never the argument values."""
    shown = [
        f"{_json_path(error['loc'])}: {_message(error)}" for error in errors[:_MAX_ERRORS_SHOWN]
    ]
    more = len(errors) - len(shown)
    tail = f" (and {more} more)" if more > 0 else ""
    first = errors[0] if errors else None
    return InvalidToolArgumentsError(
        f"invalid arguments: {clip('; '.join(shown), 1000)}{tail}",
        tool_name=tool_name,
        path=_json_path(first["loc"]) if first is not None else "$",
        validator=first["type"] if first is not None else None,
    )


def _json_path(loc: tuple[int | str, ...]) -> str:
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _render(result: object) -> str:
    """The text of a function's result: a string as is, ``None`` as ``""``, the rest as JSON."""
    if isinstance(result, str):
        return result
    if result is None:
        return ""
    from pydantic_core import to_jsonable_python  # noqa: PLC0415

    return json.dumps(to_jsonable_python(result, fallback=str), ensure_ascii=False)


def _without_titles(schema: Any) -> Any:  # any JSON value
    """*schema* without pydantic's generated ``title`` keywords (noise to a model)."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: _without_titles(v) for k, v in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_without_titles(v) for v in value]
        elif key in _SCHEMA_ONE:
            out[key] = _without_titles(value)
        else:
            out[key] = value
    return out


def _message(error: Mapping[str, Any]) -> str:
    """Pydantic's message, except where it quotes the model's input (a union's tag)."""
    if error.get("type") in {"union_tag_invalid", "union_tag_not_found"}:
        expected = (error.get("ctx") or {}).get("expected_tags", "")
        return f"does not name one of the expected kinds ({expected})"
    return str(error["msg"])
