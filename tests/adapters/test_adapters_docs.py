"""The README's and docstrings' examples run as tests."""

from __future__ import annotations

import doctest
from pathlib import Path

import aegis_adapters
from aegis_adapters import _offline

README = Path(__file__).parents[2] / "packages" / "aegis-adapters" / "README.md"


def test_readme_examples() -> None:
    result = doctest.testfile(str(README), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_docstring_examples() -> None:
    result = doctest.testmod(_offline, extraglobs=vars(aegis_adapters))
    assert result.attempted > 0
    assert result.failed == 0
