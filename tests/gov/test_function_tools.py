"""Tools from typed functions: schema from the signature and docstring, pydantic validation."""

from __future__ import annotations

import asyncio
import enum
import functools
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

import pytest
from aegis_gov import (
    AgentConfig,
    ChatResponse,
    DuplicateToolError,
    InvalidToolArgumentsError,
    InvalidToolNameError,
    InvalidToolSchemaError,
    Message,
    OpenMultiAgent,
    ScriptedAdapter,
    Task,
    TaskState,
    ToolCall,
    ToolCalled,
    ToolExecutionError,
    ToolRegistry,
)
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Place(BaseModel):
    city: str
    country: str = "FR"


@dataclass
class Window:
    start: int
    end: int


class Opaque:
    """A class pydantic has no schema for."""


def _schema(registry: ToolRegistry, name: str) -> dict[str, Any]:
    return dict(registry.get(name).spec.input_schema)


@pytest.fixture
def registry() -> Iterator[ToolRegistry]:
    registry = ToolRegistry(builtins=False)
    yield registry
    registry.close()


def test_google_docstring_and_defaults_make_the_schema(registry: ToolRegistry) -> None:
    @registry.tool
    def forecast(place: Place, days: int = 3, unit: Unit = Unit.CELSIUS) -> str:
        """Forecast the weather.

        Uses the national service.

        Args:
            place: Where to forecast.
            days: How many days ahead.
            unit: The temperature unit.
        """
        return f"{place.city}/{place.country} {days} {unit.value}"

    tool = registry.get("forecast")
    schema = _schema(registry, "forecast")
    assert tool.description == "Forecast the weather.\n\nUses the national service."
    assert schema["required"] == ["place"]
    assert schema["additionalProperties"] is False
    properties = schema["properties"]
    assert properties["place"]["description"] == "Where to forecast."
    assert properties["days"] == {
        "default": 3,
        "description": "How many days ahead.",
        "type": "integer",
    }
    assert properties["unit"]["default"] == "celsius"
    assert schema["$defs"]["Unit"] == {"enum": ["celsius", "fahrenheit"], "type": "string"}
    assert "title" not in schema
    assert "title" not in schema["$defs"]["Place"]
    assert registry.call("forecast", {"place": {"city": "Lyon"}}) == "Lyon/FR 3 celsius"
    assert registry.call("forecast", '{"place": {"city": "Nice"}, "unit": "fahrenheit"}') == (
        "Nice/FR 3 fahrenheit"
    )


def test_numpy_and_sphinx_docstrings_describe_parameters(registry: ToolRegistry) -> None:
    def numpy_style(query: str, limit: int = 10) -> list[str]:
        """Search the notes.

        Parameters
        ----------
        query : str
            The words to look for.
        limit : int
            The most results.
        """
        return [query] * limit

    def sphinx_style(path: str) -> str:
        """Read a note.

        :param path: The note's path.
        """
        return path

    registry.add_function(numpy_style, name="search")
    registry.add_function(sphinx_style, description="Read one note by path")
    search = _schema(registry, "search")["properties"]
    assert search["query"]["description"] == "The words to look for."
    assert search["limit"]["description"] == "The most results."
    assert registry.get("search").description == "Search the notes."
    read = registry.get("sphinx_style")
    assert read.description == "Read one note by path"
    assert _schema(registry, "sphinx_style")["properties"]["path"]["description"] == (
        "The note's path."
    )
    assert registry.call("search", {"query": "x", "limit": 2}) == '["x", "x"]'


def test_optional_literal_annotated_and_nested_values_arrive_typed(
    registry: ToolRegistry,
) -> None:
    seen: list[object] = []

    @registry.tool(name="book")
    def book_room(
        window: Window,
        guests: Annotated[int, Field(ge=1, le=8, description="People staying.")],
        kind: Literal["single", "double"] = "double",
        note: Optional[str] = None,  # noqa: UP045  # the Optional spelling is what is tested
        places: list[Place] | None = None,
    ) -> Window:
        seen.extend([window, guests, kind, note, places])
        return window

    schema = _schema(registry, "book")
    assert schema["properties"]["guests"] == {
        "description": "People staying.",
        "maximum": 8,
        "minimum": 1,
        "type": "integer",
    }
    assert schema["properties"]["kind"]["enum"] == ["single", "double"]
    assert {"type": "null"} in schema["properties"]["note"]["anyOf"]
    assert schema["required"] == ["window", "guests"]

    text = registry.call(
        "book", {"window": {"start": 1, "end": 3}, "guests": "2", "places": [{"city": "Lyon"}]}
    )
    assert text == '{"start": 1, "end": 3}'  # a dataclass result comes back as JSON
    assert seen == [Window(1, 3), 2, "double", None, [Place(city="Lyon", country="FR")]]


@pytest.mark.parametrize(
    ("arguments", "path", "message"),
    [
        ({"guests": 2}, "$.window", "$.window: Field required"),
        ({"window": {"start": 1, "end": 2}, "guests": 9}, "$.guests", "less than or equal to 8"),
        (
            {"window": {"start": "x", "end": 2}, "guests": 1},
            "$.window.start",
            "$.window.start: Input should be a valid integer",
        ),
        ({"window": {"start": 1, "end": 2}, "guests": 1, "kind": "suite"}, "$.kind", "'single'"),
        (
            {"window": {"start": 1, "end": 2}, "guests": 1, "extra": True},
            "$.extra",
            "Extra inputs are not permitted",
        ),
    ],
)
def test_bad_arguments_raise_the_validation_message_and_nothing_runs(
    registry: ToolRegistry, arguments: dict[str, object], path: str, message: str
) -> None:
    calls: list[int] = []

    @registry.tool
    def book(
        window: Window,
        guests: Annotated[int, Field(ge=1, le=8)],
        kind: Literal["single", "double"] = "double",
    ) -> str:
        calls.append(guests)
        return "booked"

    with pytest.raises(InvalidToolArgumentsError) as caught:
        registry.call("book", arguments)
    assert caught.value.tool_name == "book"
    assert caught.value.path == path
    assert message in str(caught.value)
    assert str(caught.value).startswith("tool 'book': invalid arguments: ")
    assert calls == []
    outcome = registry.try_call("book", arguments)
    assert outcome.is_error
    assert message in outcome.output


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


_FUZZED = ToolRegistry(builtins=False)
_FUZZ_SEEN: list[tuple[object, ...]] = []


@_FUZZED.tool
def book(
    window: Window, guests: int, kind: Literal["single", "double"] = "double", note: str = ""
) -> str:
    _FUZZ_SEEN.append((window, guests, kind, note))
    return "ok"


@settings(max_examples=200, deadline=None)
@given(
    arguments=st.fixed_dictionaries(
        {},
        optional={  # near-misses as well as noise, so both outcomes happen
            "window": st.fixed_dictionaries({"start": _JSON, "end": _JSON}) | _JSON,
            "guests": st.integers() | _JSON,
            "kind": st.sampled_from(["single", "double", "suite"]) | _JSON,
            "note": _JSON,
            "other": _JSON,
        },
    )
)
def test_any_json_arguments_are_either_refused_or_arrive_typed(
    arguments: dict[str, object],
) -> None:
    """Whatever a model sends, the function sees only values of its declared types."""
    _FUZZ_SEEN.clear()
    outcome = _FUZZED.try_call("book", arguments)
    event("refused" if outcome.is_error else "accepted")
    if outcome.is_error:
        assert isinstance(outcome.error, InvalidToolArgumentsError)
        assert _FUZZ_SEEN == []
    else:
        ((window, guests, kind, note),) = _FUZZ_SEEN
        assert isinstance(window, Window)
        assert isinstance(window.start, int)
        assert isinstance(guests, int)
        assert kind in {"single", "double"}
        assert isinstance(note, str)


def test_concurrent_calls_of_an_async_tool_share_one_loop(registry: ToolRegistry) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    loops: set[int] = set()

    @registry.tool
    async def square(n: int) -> int:
        loops.add(id(asyncio.get_running_loop()))
        await asyncio.sleep(0)
        return n * n

    results: dict[int, str] = {}

    def worker(n: int) -> None:
        barrier.wait()
        for _ in range(20):
            results[n] = registry.call("square", {"n": n})

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert results == {n: str(n * n) for n in range(threads)}
    assert len(loops) == 1


def test_the_message_never_contains_the_arguments_value(registry: ToolRegistry) -> None:
    @registry.tool
    def count(n: int) -> int:
        return n

    secret = "s3cr3t-" + "x" * 50
    with pytest.raises(InvalidToolArgumentsError) as caught:
        registry.call("count", {"n": secret})
    assert "s3cr3t" not in str(caught.value)


def test_async_functions_run_on_the_registry_loop_thread(registry: ToolRegistry) -> None:
    threads: list[str] = []

    @registry.tool
    async def lookup(key: str) -> dict[str, str]:
        """Look a key up."""
        await asyncio.sleep(0)
        threads.append(threading.current_thread().name)
        return {"key": key}

    assert registry.call("lookup", {"key": "a"}) == '{"key": "a"}'
    assert registry.call("lookup", {"key": "b"}) == '{"key": "b"}'
    assert len(set(threads)) == 1  # one loop, kept from call to call
    assert threads[0] != threading.current_thread().name
    registry.close()  # stops the loop; the next async call starts a new one
    assert registry.call("lookup", {"key": "c"}) == '{"key": "c"}'


def test_define_tool_takes_an_async_function_too(registry: ToolRegistry) -> None:
    async def search(query: str) -> list[str]:
        return [query]

    schema = {"type": "object", "properties": {"query": {"type": "string"}}}
    registry.define_tool("search", "Search", search, schema)
    assert registry.call("search", {"query": "q"}) == '["q"]'


def test_an_async_tool_calling_the_registry_back_is_refused_not_deadlocked(
    registry: ToolRegistry,
) -> None:
    @registry.tool
    async def inner() -> str:
        return "inner"

    @registry.tool
    async def outer() -> str:
        return registry.call("inner", {})

    with pytest.raises(ToolExecutionError, match="RuntimeError") as caught:
        registry.call("outer", {})
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_errors_inside_tools_become_tool_execution_errors(registry: ToolRegistry) -> None:
    @registry.tool
    async def broken(x: int) -> str:
        raise KeyError(x)

    with pytest.raises(ToolExecutionError, match="failed with KeyError: 3"):
        registry.call("broken", {"x": 3})


def test_the_decorator_returns_the_function_unchanged(registry: ToolRegistry) -> None:
    def plain(a: int) -> int:
        return a * 2

    assert registry.tool(plain) is plain
    assert registry.tool(name="plain2")(plain) is plain
    assert plain(4) == 8
    assert registry.names() == ["plain", "plain2"]


def test_functions_that_cannot_be_tools_are_refused_by_name(registry: ToolRegistry) -> None:
    def star(*values: int) -> int:
        return sum(values)

    def keywords(**values: int) -> int:
        return len(values)

    def positional(a: int, /) -> int:
        return a

    class Local(BaseModel):
        x: int

    def opaque(thing: Opaque) -> str:
        return str(thing)

    def local(thing: Local) -> str:  # a local class cannot be resolved from its name
        return str(thing)

    for fn, words in [
        (star, "'values' is *args"),
        (keywords, "'values' is **kwargs"),
        (positional, "'a' is positional-only"),
        (opaque, "has no JSON Schema"),
        (local, "cannot read the function's signature: name 'Local' is not defined"),
    ]:
        with pytest.raises(InvalidToolSchemaError, match=re.escape(words)) as caught:
            registry.add_function(fn)  # type: ignore[arg-type]  # a list of several signatures
        assert caught.value.tool_name == fn.__name__
    with pytest.raises(InvalidToolNameError):
        registry.add_function(lambda: None)  # "<lambda>" is no tool name
    with pytest.raises(TypeError, match="callable"):
        registry.add_function(42)  # type: ignore[arg-type]
    assert registry.names() == []


def read_note(folder: str, name: str, *, limit: int = 100) -> str:
    """Read a note.

    Args:
        folder: The folder notes are read from.
        name: The note's name.
        limit: The most characters returned.
    """
    return f"{folder}/{name}"[:limit]


class Greeter:
    """Greet someone."""

    def __call__(self, who: str) -> str:
        return f"hello {who}"


def test_partials_hide_what_they_bind_and_callable_objects_work(registry: ToolRegistry) -> None:
    registry.add_function(functools.partial(read_note, folder="/safe"))
    schema = _schema(registry, "read_note")
    assert list(schema["properties"]) == ["name", "limit"]  # folder is not the model's
    assert schema["properties"]["name"]["description"] == "The note's name."
    assert registry.call("read_note", {"name": "a"}) == "/safe/a"
    with pytest.raises(InvalidToolArgumentsError, match="folder: Extra inputs"):
        registry.call("read_note", {"name": "a", "folder": "/etc"})
    registry.add_function(Greeter(), name="greet")
    assert registry.get("greet").description == "Greet someone."
    assert registry.call("greet", {"who": "you"}) == "hello you"


def test_a_duplicate_name_is_refused(registry: ToolRegistry) -> None:
    @registry.tool
    def twice() -> str:
        return "1"

    with pytest.raises(DuplicateToolError):
        registry.add_function(twice)


def test_unannotated_parameters_take_any_json_value(registry: ToolRegistry) -> None:
    def echo(value, label: str = "v"):  # type: ignore[no-untyped-def]
        return {label: value}

    registry.add_function(echo)
    assert _schema(registry, "echo")["required"] == ["value"]
    assert registry.call("echo", {"value": [1, {"a": None}]}) == '{"v": [1, {"a": null}]}'


def test_a_run_sends_the_validation_error_to_the_model_and_goes_on() -> None:
    """A scripted model sends bad arguments, reads the error, then gets it right."""
    registry = ToolRegistry(builtins=False)

    @registry.tool
    async def convert(celsius: float, unit: Unit) -> float:
        """Convert a temperature from Celsius."""
        return celsius * 9 / 5 + 32 if unit is Unit.FAHRENHEIT else celsius

    def model(messages: Sequence[Message]) -> ChatResponse:
        results = [m for m in messages if m.role == "tool"]
        if not results:
            bad = ToolCall("c1", "convert", {"celsius": "hot", "unit": "kelvin"})
            return ChatResponse("", tool_calls=(bad,))
        if len(results) == 1:
            good = ToolCall("c2", "convert", {"celsius": 100, "unit": "fahrenheit"})
            return ChatResponse("", tool_calls=(good,))
        return ChatResponse(f"it is {results[-1].content} F")

    events: list[object] = []
    oma = OpenMultiAgent(default_adapter=ScriptedAdapter(model), tools=registry)
    team = OpenMultiAgent.create_team("t", AgentConfig(name="a", tools=["convert"]))
    result = oma.run_tasks(
        [Task(id="t1", description="100 C in F?", agent="a")], team, on_event=events.append
    )
    registry.close()

    task = result["t1"]
    assert task.status is TaskState.DONE
    assert task.output == "it is 212.0 F"
    first, second = task.tool_calls
    assert first.error is not None
    assert "$.celsius: Input should be a valid number" in first.result
    assert "$.unit: Input should be 'celsius' or 'fahrenheit'" in first.result
    assert second.error is None
    assert second.result == "212.0"
    called = [e for e in events if isinstance(e, ToolCalled)]
    assert [e.error is None for e in called] == [False, True]


def test_async_runs_call_function_tools_too() -> None:
    registry = ToolRegistry(builtins=False)

    @registry.tool
    async def double(n: int) -> int:
        return n * 2

    model = ScriptedAdapter(
        [ChatResponse("", tool_calls=(ToolCall("c1", "double", {"n": 21}),)), "done"]
    )
    oma = OpenMultiAgent(default_adapter=model, tools=registry)
    team = OpenMultiAgent.create_team("t", AgentConfig(name="a", tools=["double"]))
    result = asyncio.run(oma.arun_tasks([Task(id="t1", description="x", agent="a")], team))
    registry.close()
    assert result["t1"].tool_calls[0].result == "42"
