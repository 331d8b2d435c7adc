"""aegis_gov's public annotations resolve at runtime, not only for type checkers.

What strict-typed code built on aegis meets: ``typing.get_type_hints`` on the public API, as
``attrs.resolve_types``, cattrs, pydantic, typer and FastAPI call it. The few names left to type
checkers on purpose, because importing them would slow the article's import line, are listed
with their reasons in `tests.public_annotations.DEFERRED`.
"""

from __future__ import annotations

import asyncio
import threading
import typing
from collections.abc import Callable, Iterable, Sequence

import aegis_gov
import attrs
from aegis_gov import (
    AgentConfig,
    CheckpointStore,
    OpenMultiAgent,
    RunResult,
    Task,
    Team,
    Timeline,
    ToolRegistry,
)

from tests.public_annotations import DEFERRED, public_attrs_classes, public_targets, unresolved


def test_every_public_annotation_resolves_at_runtime() -> None:
    # Re-exports from the other packages are checked here too: a user sees them as aegis_gov's.
    assert unresolved(aegis_gov) == {}


def test_every_deferred_entry_names_a_public_object() -> None:
    labels = {label for label, _ in public_targets(aegis_gov)}
    mine = {label for label in DEFERRED if label.startswith("aegis_gov.")}
    assert mine
    assert mine <= labels
    assert "aegis_adapters.ChatAdapter.chat" in labels  # re-exports are checked as well


def test_resolved_annotations_are_the_real_types() -> None:
    assert typing.get_type_hints(Task.__init__)["depends_on"] == Sequence[str]
    assert typing.get_type_hints(Team.__init__)["agents"] == Iterable[AgentConfig]
    resolver = typing.get_type_hints(ToolRegistry.__init__)["_resolver"]
    assert resolver == Callable[[str, int], Sequence[str]] | None


def test_the_async_run_resolves_once_its_deferred_names_are_supplied() -> None:
    supplied = {"CheckpointStore": CheckpointStore, "asyncio": asyncio}
    hints = typing.get_type_hints(OpenMultiAgent.arun_tasks, localns=supplied)
    assert hints["cancel"] == asyncio.Event | threading.Event | None
    assert hints["checkpoint"] == CheckpointStore | None
    assert hints["return"] is RunResult
    timeline = typing.get_type_hints(RunResult, localns={"Timeline": Timeline})["timeline"]
    assert timeline == Timeline | None


def test_attrs_resolves_every_public_attrs_class() -> None:
    classes = public_attrs_classes(aegis_gov)
    assert {AgentConfig, Task, Team} <= set(classes)
    assert RunResult not in classes  # deferred: its Timeline loads only when read
    for cls in classes:
        attrs.resolve_types(cls)
        assert [f.name for f in attrs.fields(cls) if isinstance(f.type, str)] == [], cls
