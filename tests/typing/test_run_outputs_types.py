"""Checked by mypy --strict and pyright, never run for behaviour: ``RunResult.outputs`` read as a
property (the way to write it now) and still called as the method it used to be."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aegis_gov import RunOutputs, RunResult

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import assert_type

    def takes_a_mapping(outputs: Mapping[str, str]) -> str:
        return outputs["a"]

    result = RunResult({})
    assert_type(result.outputs, RunOutputs)
    assert_type(result.outputs["a"], str)
    assert_type(result.outputs.get("a"), str | None)
    as_dict: dict[str, str] = result.outputs
    takes_a_mapping(result.outputs)
    for task_id, text in result.outputs.items():
        assert_type(task_id, str)
        assert_type(text, str)
    # Deprecated, still typed: the call returns the same dict.
    assert_type(result.outputs(), dict[str, str])
    assert_type(result.outputs()["a"], str)
    takes_a_mapping(result.outputs())
