"""Importing the packages stays cheap: heavy dependencies load where they are used.

``import aegis_gov`` (and aegis_adapters, aegis_breaker) loads none of the package's modules:
each public name loads its module on first access (PEP 562). requests and urllib3 load with the
first HTTP call (an Ollama request, ``http_get``), jsonschema with the first tool or pipeline file
checked, asyncio with the async API, sqlite3 with a checkpoint, the tool registry with the first
tool; none of them with the article's import line.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

HEAVY = ("requests", "urllib3", "jsonschema", "email.utils", "importlib.metadata")
LAZY_PACKAGES = ("aegis_gov", "aegis_adapters", "aegis_breaker")
ARTICLE_IMPORT = "from aegis_gov import OpenMultiAgent, AgentConfig, Team, Task"
# What the article's import line does not need; each loads where it is used.
DEFERRED = (
    *HEAVY,
    "asyncio",
    "sqlite3",
    "hashlib",
    "difflib",
    "aegis_gov._tools",
    "aegis_gov._builtins",
    "aegis_gov._mcp",
    "aegis_gov._checkpoint",
    "aegis_gov._checkpoint_redis",
    "aegis_gov._pipeline",
    "aegis_gov._dask",
    "aegis_gov._graph_svg",
    "aegis_gov._status",
    "aegis_gov._streams",
    "aegis_gov._timeline",
    "aegis_gov._tracing",
    "aegis_gov._task_trace",
    "aegis_adapters._anthropic",
    "aegis_adapters._openai",
    "aegis_breaker._redis",
    "aegis_breaker._ratelimit",
)


def _loaded_after(code: str, modules: tuple[str, ...] = HEAVY) -> list[str]:
    """The modules of *modules* that running *code* in a fresh interpreter loaded.

    What the interpreter had loaded before *code* ran does not count: under ``coverage run``
    the measured subprocess starts coverage first, which loads sqlite3 and hashlib itself.
    """
    probe = (
        f"import sys\nbefore = set(sys.modules)\n{code}\nimport json\n"
        f"print(json.dumps([m for m in {modules!r} if m in sys.modules and m not in before]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("package", ["aegis_gov", "aegis_adapters"])
def test_importing_the_package_loads_no_heavy_dependency(package: str) -> None:
    assert _loaded_after(f"import {package}") == []


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_importing_the_package_loads_none_of_its_modules(package: str) -> None:
    code = f"import {package}\nloaded = [m for m in sys.modules if m.startswith('aegis')]"
    probe = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(loaded)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == [package]


def test_the_article_import_loads_only_what_a_run_needs() -> None:
    assert _loaded_after(ARTICLE_IMPORT, DEFERRED) == []


def test_a_threaded_run_loads_no_asyncio() -> None:
    code = (
        f"{ARTICLE_IMPORT}\nfrom aegis_gov import EchoAdapter\n"
        "team = Team('t', [AgentConfig(name='a')])\n"
        "with OpenMultiAgent(default_adapter=EchoAdapter()) as oma:\n"
        "    result = oma.run_tasks([Task(id='x', description='hi', agent='a')], team)\n"
        "assert result.results['x'].output == 'hi', result"
    )
    assert _loaded_after(code, ("asyncio", "sqlite3", "aegis_gov._tools")) == []


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


def _type_checking_imports(package: ModuleType) -> dict[str, str]:
    """Each name the ``if TYPE_CHECKING:`` block of *package*'s ``__init__`` imports: its module."""
    assert package.__file__ is not None
    tree = ast.parse(Path(package.__file__).read_text(encoding="utf-8"))
    blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1
    found: dict[str, str] = {}
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom)
        assert node.module is not None
        for alias in node.names:
            assert alias.asname is None
            found[alias.name] = node.module
    return found


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_type_checkers_and_the_runtime_see_the_same_names(name: str) -> None:
    # The TYPE_CHECKING imports are what mypy and pyright read; _SOURCES is what __getattr__
    # loads. Both must name exactly the public names, each from the same module.
    package = importlib.import_module(name)
    runtime = {
        public: module
        for module, names in package._SOURCES.items()  # the mapping under test
        for public in names
    }
    assert runtime == _type_checking_imports(package)
    assert sorted(runtime) == sorted(package.__all__)
    assert len(runtime) == sum(len(names) for names in package._SOURCES.values())


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_every_public_name_loads_the_object_of_its_module(name: str) -> None:
    package = importlib.import_module(name)
    sources = _type_checking_imports(package)
    for public in package.__all__:
        value = getattr(package, public)
        assert value is getattr(importlib.import_module(sources[public]), public), public
        assert public in vars(package)  # cached: the next access is a plain attribute
    assert set(package.__all__) <= set(dir(package))


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_an_unknown_name_is_an_attribute_error_that_names_it(name: str) -> None:
    package = importlib.import_module(name)
    with pytest.raises(AttributeError, match=rf"module '{name}' has no attribute 'NoSuchThing'"):
        _ = package.NoSuchThing
    with pytest.raises(ImportError, match="NoSuchThing"):
        exec(f"from {name} import NoSuchThing", {})  # the statement under test


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_dir_lists_names_not_loaded_yet_and_star_import_gets_them_all(name: str) -> None:
    code = (
        f"import {name}\nlisted = set(dir({name}))\n"
        f"namespace = {{}}\nexec('from {name} import *', namespace)\n"
        f"assert set({name}.__all__) <= listed, set({name}.__all__) - listed\n"
        f"assert set({name}.__all__) <= set(namespace), set({name}.__all__) - set(namespace)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_a_module_that_fails_to_import_is_not_reported_as_a_missing_name(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `from pkg import X` turns an AttributeError from __getattr__ into "cannot import name",
    # which would hide a bug in X's module: such an error comes out as an ImportError instead.
    (tmp_path / "aegis_broken_module.py").write_text("raise AttributeError('the real bug')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    package = importlib.import_module(name)
    monkeypatch.setitem(package._MODULE_OF, "Broken", "aegis_broken_module")
    with pytest.raises(ImportError, match=r"aegis_broken_module.*the real bug") as info:
        exec(f"from {name} import Broken", {})
    assert isinstance(info.value.__cause__, AttributeError)
