"""aegis_graph's public annotations resolve at runtime, not only for type checkers."""

from __future__ import annotations

import typing
from collections.abc import Iterable, Sequence

import aegis_graph
import attrs
from aegis_graph import InvalidTransitionError, Task, TaskQueue, TaskState

from tests.public_annotations import DEFERRED, public_attrs_classes, public_targets, unresolved


def test_every_public_annotation_resolves_at_runtime() -> None:
    assert unresolved(aegis_graph) == {}
    assert [label for label in DEFERRED if label.startswith("aegis_graph.")] == []


def test_the_check_covers_classes_their_methods_and_generated_inits() -> None:
    labels = {label for label, _ in public_targets(aegis_graph)}
    assert {
        "aegis_graph.Task",
        "aegis_graph.Task.__init__",
        "aegis_graph.TaskQueue.__init__",
        "aegis_graph.TaskQueue.start_many",
        "aegis_graph.InvalidTransitionError.__init__",
    } <= labels


def test_resolved_annotations_are_the_real_types() -> None:
    assert typing.get_type_hints(Task.__init__)["depends_on"] == Sequence[str]
    assert typing.get_type_hints(TaskQueue.start_many)["task_ids"] == Iterable[str | Task]
    assert typing.get_type_hints(InvalidTransitionError.__init__)["state"] is TaskState


def test_attrs_resolves_every_public_attrs_class() -> None:
    classes = public_attrs_classes(aegis_graph)
    assert {Task, TaskQueue} <= set(classes)
    for cls in classes:
        attrs.resolve_types(cls)
        assert [f.name for f in attrs.fields(cls) if isinstance(f.type, str)] == [], cls
