"""ToolRegistry: defining, listing, removing and calling tools; argument validation properties."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import pytest
from aegis_adapters import ToolSpec
from aegis_gov import (
    DuplicateToolError,
    InvalidToolArgumentsError,
    InvalidToolNameError,
    InvalidToolSchemaError,
    MemoryKeyNotFoundError,
    Tool,
    ToolError,
    ToolExecutionError,
    ToolMemory,
    ToolRefusedError,
    ToolRegistry,
    UnknownToolError,
    ValueTooLargeError,
)
from hypothesis import given
from hypothesis import strategies as st

BUILTINS = ["file_read", "http_get", "shell", "memory_store", "memory_retrieve"]


def my_search_fn(query: str) -> str:
    return f"results for {query}"


@pytest.fixture
def registry(tmp_path: Path) -> ToolRegistry:
    return ToolRegistry(root=tmp_path)


def test_builtins_are_registered_with_their_argument_names(registry: ToolRegistry) -> None:
    assert registry.names() == BUILTINS
    required = {spec.name: spec.input_schema["required"] for spec in registry.specs()}
    assert required == {
        "file_read": ["path"],
        "http_get": ["url"],
        "shell": ["command"],
        "memory_store": ["key", "value"],
        "memory_retrieve": ["key"],
    }


def test_builtins_can_be_left_out(tmp_path: Path) -> None:
    assert len(ToolRegistry(root=tmp_path, builtins=False)) == 0


def test_the_articles_define_tool_example(registry: ToolRegistry) -> None:
    registry.define_tool(
        name="search_web",
        description="Search the web for recent information",
        fn=my_search_fn,
        schema={
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    )
    assert "search_web" in registry
    assert registry.call("search_web", {"query": "aegis"}) == "results for aegis"
    spec = registry.specs(["search_web"])[0]
    assert isinstance(spec, ToolSpec)
    assert spec.name == "search_web"
    assert spec.description == "Search the web for recent information"
    assert spec.input_schema["required"] == ["query"]


def test_define_tool_returns_the_tool_with_its_spec(registry: ToolRegistry) -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    tool = registry.define_tool("double", "Double x.", lambda x=1: x * 2, schema)
    assert isinstance(tool, Tool)
    assert registry.get("double") is tool
    assert tool.spec == ToolSpec(name="double", description="Double x.", input_schema=schema)
    schema["properties"] = {}  # the caller's dict is copied, not shared
    assert tool.input_schema["properties"] == {"x": {"type": "integer"}}


def test_duplicate_name_is_rejected(registry: ToolRegistry) -> None:
    with pytest.raises(DuplicateToolError, match="'file_read'") as info:
        registry.define_tool("file_read", "again", my_search_fn, {"type": "object"})
    assert info.value.tool_name == "file_read"
    assert registry.get("file_read").description != "again"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string"},  # valid JSON Schema, but not an object schema
        {"properties": {}},  # no type
        {"type": "object", "properties": {"q": {"type": "strin"}}},  # invalid type name
        {"type": "object", "required": "query"},  # required must be an array
        {"type": 7},
    ],
)
def test_schema_that_is_not_an_object_json_schema_is_rejected(
    registry: ToolRegistry, schema: Mapping[str, object]
) -> None:
    with pytest.raises(InvalidToolSchemaError, match="'bad'"):
        registry.define_tool("bad", "bad schema", my_search_fn, schema)
    assert "bad" not in registry


def test_schema_must_be_a_mapping(registry: ToolRegistry) -> None:
    with pytest.raises(InvalidToolSchemaError, match="mapping"):
        registry.define_tool("bad", "bad", my_search_fn, ["type", "object"])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "has space", "dot.name", "x" * 65, "ünïcode", "a/b"])
def test_bad_tool_names_are_rejected(registry: ToolRegistry, name: str) -> None:
    with pytest.raises(InvalidToolNameError):
        registry.define_tool(name, "d", my_search_fn, {"type": "object"})
    assert len(registry) == len(BUILTINS)


@pytest.mark.parametrize("name", ["a", "A-b_9", "x" * 64])
def test_good_tool_names_are_accepted(registry: ToolRegistry, name: str) -> None:
    registry.define_tool(name, "d", lambda: "ok", {"type": "object"})
    assert registry.call(name, {}) == "ok"


def test_unknown_tool(registry: ToolRegistry) -> None:
    with pytest.raises(UnknownToolError, match="'nope'") as info:
        registry.call("nope", {})
    assert info.value.tool_name == "nope"
    with pytest.raises(UnknownToolError):
        registry.get("nope")
    with pytest.raises(UnknownToolError):
        registry.remove("nope")
    with pytest.raises(UnknownToolError, match="'nope'"):
        registry.specs(["shell", "nope"])


def test_specs_keep_the_order_given_and_drop_repeats(registry: ToolRegistry) -> None:
    specs = registry.specs(["shell", "file_read", "shell"])
    assert [s.name for s in specs] == ["shell", "file_read"]


def test_remove_and_iterate(registry: ToolRegistry) -> None:
    registry.remove("shell")
    assert "shell" not in registry
    assert list(registry) == [n for n in BUILTINS if n != "shell"]
    assert len(registry) == 4
    with pytest.raises(UnknownToolError):
        registry.call("shell", {"command": "ls"})
    assert "shell" not in repr(registry)


def test_failing_tool_is_wrapped_with_its_cause_and_registry_stays_usable(
    registry: ToolRegistry,
) -> None:
    def boom(x: int) -> str:
        raise RuntimeError(f"broken on {x}")

    registry.define_tool("boom", "fails", boom, {"type": "object", "required": ["x"]})
    with pytest.raises(ToolExecutionError, match=r"'boom'.*RuntimeError: broken on 3") as info:
        registry.call("boom", {"x": 3})
    assert isinstance(info.value.__cause__, RuntimeError)
    assert registry.call("memory_store", {"key": "k", "value": "v"})
    assert registry.call("memory_retrieve", {"key": "k"}) == "v"


def test_tool_errors_raised_by_a_tool_pass_through(registry: ToolRegistry) -> None:
    def refuse() -> str:
        raise ToolRefusedError("not today", tool_name="refuser")

    registry.define_tool("refuser", "refuses", refuse, {"type": "object"})
    with pytest.raises(ToolRefusedError, match="not today"):
        registry.call("refuser", {})


@pytest.mark.parametrize(
    ("result", "text"),
    [
        ("plain", "plain"),
        (None, ""),
        (42, "42"),
        (1.5, "1.5"),
        (True, "true"),
        ({"a": [1, "é"]}, '{"a": [1, "é"]}'),
        ([1, 2], "[1, 2]"),
        (b"raw", "b'raw'"),
    ],
)
def test_results_become_text(registry: ToolRegistry, result: object, text: str) -> None:
    registry.define_tool("r", "returns", lambda: result, {"type": "object"})
    assert registry.call("r", {}) == text


def test_arguments_may_be_json_text(registry: ToolRegistry) -> None:
    registry.define_tool("echo", "echo", lambda s: s, {"type": "object", "required": ["s"]})
    assert registry.call("echo", '{"s": "hi"}') == "hi"
    with pytest.raises(InvalidToolArgumentsError, match="not valid JSON"):
        registry.call("echo", '{"s": ')
    with pytest.raises(InvalidToolArgumentsError, match="JSON object, not list"):
        registry.call("echo", "[1]")


def test_arguments_the_function_cannot_take_are_invalid(registry: ToolRegistry) -> None:
    registry.define_tool("one", "one arg", lambda a: a, {"type": "object"})
    with pytest.raises(InvalidToolArgumentsError, match=r"'one'.*function") as info:
        registry.call("one", {"a": 1, "b": 2})
    assert info.value.path == "$"


def test_invalid_argument_message_does_not_echo_a_huge_value(registry: ToolRegistry) -> None:
    huge = "Z" * 10_000
    with pytest.raises(InvalidToolArgumentsError) as info:
        registry.call("memory_retrieve", {"key": 1, "extra": huge})
    assert len(str(info.value)) < 400
    assert "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ" * 10 not in str(info.value)


def test_try_call_returns_errors_as_outcomes(registry: ToolRegistry) -> None:
    ok = registry.try_call("memory_store", {"key": "k", "value": "v"})
    assert not ok.is_error
    assert ok.output == "stored key 'k'"
    bad = registry.try_call("memory_retrieve", {"key": "missing"})
    assert bad.is_error
    assert isinstance(bad.error, MemoryKeyNotFoundError)
    assert bad.output == str(bad.error)
    assert "missing" in bad.output
    unknown = registry.try_call("nope", "{}")
    assert isinstance(unknown.error, UnknownToolError)


def test_every_error_is_a_tool_error_naming_the_tool(registry: ToolRegistry) -> None:
    calls: list[tuple[str, dict[str, object]]] = [
        ("nope", {}),
        ("file_read", {}),
        ("file_read", {"path": "../x"}),
        ("http_get", {"url": "ftp://example.test/"}),
        ("shell", {"command": "ls"}),
        ("memory_retrieve", {"key": "none"}),
    ]
    for name, arguments in calls:
        outcome = registry.try_call(name, arguments)
        assert isinstance(outcome.error, ToolError)
        assert outcome.error.tool_name == name
        assert str(outcome.error).startswith(f"tool {name!r}: ")


# ----------------------------------------------------------------- argument validation properties

TYPED_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "count", "ratio", "flag", "tags"],
    "additionalProperties": False,
}
finite = st.floats(allow_nan=False, allow_infinity=False)
VALID = {
    "name": st.text(max_size=20),
    "count": st.integers(),
    "ratio": st.integers() | finite,
    "flag": st.booleans(),
    "tags": st.lists(st.text(max_size=5), max_size=4),
}
non_integral = finite.filter(lambda f: not f.is_integer())
WRONG = {
    "name": st.integers() | finite | st.booleans() | st.none() | st.lists(st.integers()),
    "count": st.text() | st.booleans() | st.none() | non_integral | st.lists(st.integers()),
    "ratio": st.text() | st.booleans() | st.none() | st.lists(st.integers()),
    "flag": st.integers() | st.text() | st.none() | st.lists(st.booleans()),
    "tags": st.text() | st.integers() | st.none() | st.dictionaries(st.text(), st.text()),
}


def _typed_registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[ToolRegistry, list[object]]:
    received: list[object] = []

    def record(**kwargs: object) -> str:
        received.append(kwargs)
        return "ok"

    registry = ToolRegistry(root=tmp_path_factory.getbasetemp(), builtins=False)
    registry.define_tool("typed", "typed arguments", record, TYPED_SCHEMA)
    return registry, received


@given(arguments=st.fixed_dictionaries(VALID))
def test_valid_arguments_reach_the_function_unchanged(
    tmp_path_factory: pytest.TempPathFactory, arguments: dict[str, object]
) -> None:
    registry, received = _typed_registry(tmp_path_factory)
    assert registry.call("typed", arguments) == "ok"
    assert received == [arguments]


@given(data=st.data(), arguments=st.fixed_dictionaries(VALID))
def test_a_type_violation_is_rejected_naming_its_path(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, arguments: dict[str, object]
) -> None:
    registry, received = _typed_registry(tmp_path_factory)
    key = data.draw(st.sampled_from(sorted(WRONG)))
    arguments[key] = data.draw(WRONG[key])
    with pytest.raises(InvalidToolArgumentsError) as info:
        registry.call("typed", arguments)
    assert info.value.tool_name == "typed"
    assert info.value.path == f"$.{key}"
    assert info.value.validator == "type"
    assert received == []


@given(data=st.data(), arguments=st.fixed_dictionaries(VALID))
def test_a_missing_argument_is_rejected(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, arguments: dict[str, object]
) -> None:
    registry, received = _typed_registry(tmp_path_factory)
    key = data.draw(st.sampled_from(sorted(arguments)))
    del arguments[key]
    with pytest.raises(InvalidToolArgumentsError, match=repr(key)) as info:
        registry.call("typed", arguments)
    assert info.value.validator == "required"
    assert received == []


# ----------------------------------------------------------------- memory and threads


def test_memory_is_bounded_lru(tmp_path: Path) -> None:
    registry = ToolRegistry(root=tmp_path, memory_max_entries=2, memory_max_value_bytes=10)
    registry.call("memory_store", {"key": "a", "value": "1"})
    registry.call("memory_store", {"key": "b", "value": "2"})
    assert registry.call("memory_retrieve", {"key": "a"}) == "1"  # a is now most recent
    registry.call("memory_store", {"key": "c", "value": "3"})
    assert registry.memory.keys() == ["a", "c"]
    with pytest.raises(MemoryKeyNotFoundError) as info:
        registry.call("memory_retrieve", {"key": "b"})
    assert info.value.key == "b"
    with pytest.raises(ValueTooLargeError) as too_big:
        registry.call("memory_store", {"key": "d", "value": "é" * 6})  # 12 UTF-8 bytes
    assert too_big.value.limit_bytes == 10
    assert "é" not in str(too_big.value)
    assert "d" not in registry.memory


def test_memory_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="positive"):
        ToolMemory(max_entries=0)


def test_registry_and_memory_are_thread_safe(tmp_path: Path) -> None:
    registry = ToolRegistry(root=tmp_path, memory_max_entries=50)
    workers = 8
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait()
            name = f"t{index}"
            registry.define_tool(name, "n", lambda i=index: i, {"type": "object"})
            for round_ in range(20):
                registry.call("memory_store", {"key": f"{index}-{round_}", "value": "v"})
                assert registry.call(name, {}) == str(index)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(registry) == len(BUILTINS) + workers
    assert len(registry.memory) == 50
