"""A griffe extension: read Google-style ``Example:`` sections as examples, like ``Examples:``.

Google style (and Sphinx's Napoleon) accept both spellings; griffe only knows the plural, and
renders a singular ``Example:`` as prose, where doctest output such as ``['a', 'b']`` reads as
a Markdown cross-reference. Loaded by mkdocstrings from ``mkdocs.yml``; not part of the site.
"""

from __future__ import annotations

import re

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:\s*$", flags=re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rewrite ``Example:`` section headers to ``Examples:`` in every docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs: object) -> None:
        """Normalise one object's docstring."""
        del kwargs
        if obj.docstring is not None:
            obj.docstring.value = _SINGULAR.sub(r"\1Examples:", obj.docstring.value)
