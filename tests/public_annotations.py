"""What runtime introspection sees of a package's public API; shared by each package's tests.

``typing.get_type_hints``, and everything built on it (``attrs.resolve_types``, cattrs, pydantic,
typer, FastAPI), evaluates the string annotations that ``from __future__ import annotations``
leaves in the namespace of the module that defines the object: a name that module imports only
under ``if TYPE_CHECKING:`` is a ``NameError`` there, although mypy and pyright are content.

So every public module imports the names its public annotations use at runtime, except the few
in `DEFERRED`: importing those would load, when the annotated module loads, a module that the
lazy imports of issue 19 keep away (see tests/gov/test_import_time.py) or an optional dependency.
This module imports no aegis package itself: each package's tests run with only that package
and its declared dependencies installed.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Iterator, Mapping
from types import ModuleType

import attrs

__all__ = ["DEFERRED", "public_attrs_classes", "public_targets", "unresolved"]

_ADAPTER_TYPES = "aegis_adapters:"
_CHAT = {
    "ChatResponse": f"{_ADAPTER_TYPES}ChatResponse",
    "Message": f"{_ADAPTER_TYPES}Message",
    "ToolSpec": f"{_ADAPTER_TYPES}ToolSpec",
}
_STREAM = {**_CHAT, "TextDelta": f"{_ADAPTER_TYPES}TextDelta"}
_SCHEMA = {"OutputSchema": f"{_ADAPTER_TYPES}OutputSchema"}

DEFERRED: Mapping[str, Mapping[str, str]] = {
    # Each key is "<package that defines it>.<qualified name>" of a public object whose
    # annotations use names its module imports only for type checkers; the value maps each such
    # name to where it lives ("module:attribute", or "module" for a module itself).
    #
    # aegis_adapters._protocols names the value types of aegis_adapters._types, which load attrs:
    # importing them there would cost `from aegis_adapters import ChatAdapter` (an import for an
    # annotation) ~20 ms of CPU, from ~12 ms to ~32 ms.
    "aegis_adapters.ChatAdapter.endpoint": {"Endpoint": f"{_ADAPTER_TYPES}Endpoint"},
    "aegis_adapters.ChatAdapter.chat": _CHAT,
    "aegis_adapters.ChatAdapter.chat_stream": _STREAM,
    "aegis_adapters.ChatAdapter.achat": _CHAT,
    "aegis_adapters.ChatAdapter.achat_stream": _STREAM,
    "aegis_adapters.StructuredChatAdapter.chat": {**_CHAT, **_SCHEMA},
    "aegis_adapters.StructuredChatAdapter.chat_stream": {**_STREAM, **_SCHEMA},
    "aegis_adapters.StructuredChatAdapter.achat": {**_CHAT, **_SCHEMA},
    "aegis_adapters.StructuredChatAdapter.achat_stream": {**_STREAM, **_SCHEMA},
    # OpenMultiAgent's module loads on the article's import line, which must not load the tool
    # registry (jsonschema), the status view, the checkpoint stores (sqlite3), the tracing
    # module or asyncio (the async API's `cancel: asyncio.Event`): each loads where it is used.
    "aegis_gov.OpenMultiAgent.__init__": {
        "ToolRegistry": "aegis_gov:ToolRegistry",
        "Tracing": "aegis_gov:Tracing",
    },
    "aegis_gov.OpenMultiAgent.tools": {"ToolRegistry": "aegis_gov:ToolRegistry"},
    "aegis_gov.OpenMultiAgent.get_status": {"Status": "aegis_gov:Status"},
    "aegis_gov.OpenMultiAgent.run_tasks": {"CheckpointStore": "aegis_gov:CheckpointStore"},
    "aegis_gov.OpenMultiAgent.arun_tasks": {
        "CheckpointStore": "aegis_gov:CheckpointStore",
        "asyncio": "asyncio",
    },
    # RedisRateStore lives with the limits the article's import line loads; aegis_breaker's
    # redis client protocol and its rate limiter load only when a Redis store is used.
    "aegis_gov.RedisRateStore": {"RedisClient": "aegis_breaker:RedisClient"},
    "aegis_gov.RedisRateStore.__init__": {"RedisClient": "aegis_breaker:RedisClient"},
    "aegis_gov.RedisRateStore.bucket": {"RateLimiter": "aegis_breaker:RateLimiter"},
    # RunResult loads with every run; its timeline module loads only when a timeline is read.
    "aegis_gov.RunResult": {"Timeline": "aegis_gov:Timeline"},
    "aegis_gov.RunResult.__init__": {"Timeline": "aegis_gov:Timeline"},
    # opentelemetry-api is the optional `otel` extra: aegis_gov imports it only to trace a run.
    "aegis_gov.Tracing": {"TracerProvider": "opentelemetry.trace:TracerProvider"},
    "aegis_gov.Tracing.__init__": {"TracerProvider": "opentelemetry.trace:TracerProvider"},
}


def _label(owner: object, attribute: str | None = None) -> str:
    """``"<defining package>.<qualified name>[.<attribute>]"``: the same for every re-export."""
    package = str(getattr(owner, "__module__", "")).partition(".")[0]
    label = f"{package}.{getattr(owner, '__qualname__', owner)}"
    return label if attribute is None else f"{label}.{attribute}"


def public_targets(package: ModuleType) -> Iterator[tuple[str, object]]:
    """Each public class and function of *package*, and each class's public methods.

    A class brings its ``__init__``, its ``__call__`` and the public methods, static and class
    methods and property getters it defines itself. Type aliases (``Literal[...]``, unions)
    and constants are values, not annotated objects, and are left out.
    """
    for name in package.__all__:
        value = getattr(package, name)
        if not (inspect.isclass(value) or inspect.isroutine(value)):
            continue
        yield _label(value), value
        if not inspect.isclass(value):
            continue
        for attribute, member in vars(value).items():
            if attribute.startswith("_") and attribute not in ("__init__", "__call__"):
                continue
            function: object = member
            if isinstance(member, (staticmethod, classmethod)):
                function = member.__func__
            elif isinstance(member, property):
                function = member.fget
            if inspect.isroutine(function):
                yield _label(value, attribute), function


def public_attrs_classes(package: ModuleType) -> list[type]:
    """The public attrs classes of *package* whose annotations all resolve at runtime."""
    return [
        value
        for label, value in public_targets(package)
        if inspect.isclass(value) and attrs.has(value) and label not in DEFERRED
    ]


def _load(where: str) -> object:
    """The object *where* (``"module:attribute"`` or ``"module"``) names.

    An optional dependency that is not installed stands in as a class of the same name: what is
    checked is that the annotation needs no other name, not the dependency itself.
    """
    module_name, _, attribute = where.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return type(attribute, (), {})
    return getattr(module, attribute) if attribute else module


def unresolved(package: ModuleType) -> dict[str, str]:
    """Each public object of *package* whose annotations ``get_type_hints`` cannot resolve: why.

    An object in `DEFERRED` must fail on one of its listed names alone, and resolve once they
    are supplied; one that resolves without them is reported too, so the list only shrinks.
    """
    problems: dict[str, str] = {}
    for label, target in public_targets(package):
        deferred = DEFERRED.get(label)
        try:
            typing.get_type_hints(target)
        except NameError as error:
            if deferred is None or error.name not in deferred:
                problems[label] = f"NameError: {error}"
                continue
        except Exception as error:  # any failure is reported by name
            problems[label] = f"{type(error).__name__}: {error}"
            continue
        else:
            if deferred is not None:
                problems[label] = "resolves without help: remove it from DEFERRED"
            continue
        supplied = {name: _load(where) for name, where in deferred.items()}
        try:
            typing.get_type_hints(target, localns=supplied)
        except Exception as error:  # (same)
            problems[label] = f"with {sorted(supplied)} supplied, {type(error).__name__}: {error}"
    return problems
