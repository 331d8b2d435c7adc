"""Importing the packages stays cheap: heavy dependencies load where they are used.

requests and urllib3 load with the first HTTP call (an Ollama request, ``http_get``), jsonschema
with the first tool or pipeline file checked; none of them with ``import aegis_gov``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("requests", "urllib3", "jsonschema", "email.utils", "importlib.metadata")


def _loaded_after(code: str) -> list[str]:
    """The modules of HEAVY in ``sys.modules`` after running *code* in a fresh interpreter."""
    probe = (
        f"import sys\n{code}\n"
        f"import json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("package", ["aegis_gov", "aegis_adapters"])
def test_importing_the_package_loads_no_heavy_dependency(package: str) -> None:
    assert _loaded_after(f"import {package}") == []


def test_making_an_adapter_and_a_facade_loads_no_http_client() -> None:
    code = (
        "import aegis_adapters, aegis_gov\n"
        "aegis_adapters.OllamaAdapter()\n"
        "aegis_gov.OpenMultiAgent(default_adapter=aegis_adapters.EchoAdapter())"
    )
    loaded = _loaded_after(code)
    assert "requests" not in loaded
    assert "urllib3" not in loaded


def test_the_first_tool_registry_loads_jsonschema() -> None:
    # The lazy import really happens where schemas are checked: a registry validates its tools.
    assert "jsonschema" in _loaded_after("import aegis_gov\naegis_gov.ToolRegistry()")
