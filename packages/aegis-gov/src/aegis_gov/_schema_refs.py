"""JSON Schemas from outside (MCP servers, users, models) never make aegis fetch anything.

jsonschema resolves a ``$ref`` it does not know by retrieving it: an ``http://`` URL, or a
``file://`` path read from disk. A tool's schema comes from an MCP server or a user, so that
would let a schema make requests on the machine's network or put a local file's content into
an error the model reads. Only references inside the schema itself (``#/$defs/...``) are
allowed, and validators get an empty registry, so nothing is retrieved even if one slipped by.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from referencing.jsonschema import SchemaRegistry

__all__ = ["empty_registry", "outside_reference"]

_REFERENCE_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")


def outside_reference(schema: object) -> str | None:
    """The first reference in *schema* that points outside it (None: there is none)."""
    stack: list[object] = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            node = cast("Mapping[str, object]", item)
            for key in _REFERENCE_KEYS:
                value = node.get(key)
                if isinstance(value, str) and not value.startswith("#"):
                    return value
            stack.extend(node.values())
        elif isinstance(item, list):
            stack.extend(cast("list[object]", item))
    return None


def empty_registry() -> SchemaRegistry:
    """A registry that knows no outside schema and retrieves none."""
    import referencing  # noqa: PLC0415  # comes with jsonschema, imported with it

    registry: SchemaRegistry = referencing.Registry()
    return registry
