"""``RunResult.outputs`` is a property, like ``ok`` and ``usage``; calling it still works."""

from __future__ import annotations

import json
import pickle
import warnings

import pytest
from aegis_gov import RunOutputs, RunResult, SkipReason, TaskResult, TaskState


def _result() -> RunResult:
    return RunResult(
        {
            "a": TaskResult("a", TaskState.DONE, output="first"),
            "b": TaskResult("b", TaskState.FAILED, error="boom", error_type="ValueError"),
            "c": TaskResult(
                "c", TaskState.SKIPPED, skip_reason=SkipReason.UPSTREAM_FAILED, blamed="b"
            ),
            "d": TaskResult("d", TaskState.DONE, output=None),
        }
    )


def test_outputs_is_a_property_holding_the_done_tasks_outputs() -> None:
    result = _result()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading the property never warns
        outputs = result.outputs
        assert outputs == {"a": "first", "d": ""}
        assert isinstance(outputs, dict)
        assert isinstance(outputs, RunOutputs)
        assert list(outputs) == ["a", "d"]  # declaration order
        assert repr(outputs) == "{'a': 'first', 'd': ''}"
        assert json.loads(json.dumps(outputs)) == {"a": "first", "d": ""}
        assert pickle.loads(pickle.dumps(outputs)) == outputs


def test_each_access_is_a_new_dict() -> None:
    result = _result()
    mine = result.outputs
    mine["a"] = "changed"
    assert result.outputs["a"] == "first"
    assert result.outputs is not result.outputs


def test_calling_it_like_the_old_method_returns_a_plain_dict_and_warns() -> None:
    outputs = _result().outputs
    with pytest.warns(DeprecationWarning, match=r"write result\.outputs, not result\.outputs\(\)"):
        called = outputs()
    assert type(called) is dict  # as the old method returned: strict serializers accept it
    assert called == outputs
    with pytest.warns(DeprecationWarning, match="is a property now") as caught:
        assert _result().outputs() == {"a": "first", "d": ""}
    assert caught[0].filename == __file__  # the warning points at the caller's line


def test_a_pickle_of_the_outputs_loads_as_a_plain_dict() -> None:
    loaded = pickle.loads(pickle.dumps(_result().outputs))  # our own bytes
    assert type(loaded) is dict
    assert loaded == {"a": "first", "d": ""}
