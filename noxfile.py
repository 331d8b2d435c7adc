"""Every check of the aegis workspace, as nox sessions.

Plain ``nox`` runs what CI needs (not ``docs_serve``, which serves the docs until stopped).
Each per-package session builds an environment that holds only that package and its declared
dependencies (through ``uv sync --package``), which is what proves the packages are isolated
from one another.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.error_on_external_run = True
nox.options.reuse_existing_virtualenvs = True

# Only the installed interpreter exists here, and none may be downloaded.
os.environ["UV_PYTHON_DOWNLOADS"] = "never"
os.environ.setdefault("HYPOTHESIS_PROFILE", "ci")

ROOT = Path(__file__).parent
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

# package name -> (import name, test folder, extra dependency groups for its tests, extras)
PACKAGES: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "aegis-graph": ("aegis_graph", "tests/graph", (), ()),
    "aegis-breaker": ("aegis_breaker", "tests/breaker", (), ()),
    "aegis-adapters": ("aegis_adapters", "tests/adapters", ("http",), ("all",)),
    "aegis-gov": ("aegis_gov", "tests/gov", ("http",), ("all", "mcp")),
}


def _sync(session: nox.Session, *args: str) -> None:
    """Install the locked environment described by *args* into the session's venv."""
    session.run_install(
        "uv",
        "sync",
        "--frozen",
        "--no-default-groups",
        *args,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        external=True,
    )


def _sync_package(session: nox.Session, package: str, *groups: str) -> None:
    _, _, test_groups, extras = PACKAGES[package]
    args = ["--package", package]
    for extra in extras:
        args += ["--extra", extra]
    for group in (*groups, *test_groups):
        args += ["--group", group]
    _sync(session, *args)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff lint and format check over the whole tree."""
    _sync(session, "--only-group", "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
@nox.parametrize("package", list(PACKAGES))
def mypy_pkg(session: nox.Session, package: str) -> None:
    """mypy --strict on one package and its tests, alone with its declared dependencies."""
    module, tests, _, _ = PACKAGES[package]
    _sync_package(session, package, "test", "typing")
    session.run("mypy", "-p", module)
    session.run("mypy", "--python-version", "3.10", "-p", module)
    if package == "aegis-gov":  # the console script's entry point is a package of its own
        session.run("mypy", "--python-version", "3.10", "-p", "aegis_gov_cli")
    session.run("mypy", tests)


@nox.session(python=PYTHON)
@nox.parametrize("package", list(PACKAGES))
def tests_pkg(session: nox.Session, package: str) -> None:
    """The package's own tests, alone with its declared dependencies."""
    _, tests, _, _ = PACKAGES[package]
    if package == "aegis-gov":
        _ensure_debian(session, BUBBLEWRAP, GRAPHVIZ, CHROMIUM)
    _sync_package(session, package, "test")
    session.run("pytest", tests, *session.posargs)


@nox.session(python=PYTHON)
@nox.parametrize("package", list(PACKAGES))
def verifytypes(session: nox.Session, package: str) -> None:
    """pyright --verifytypes: the public API must be 100% typed."""
    module, _, _, _ = PACKAGES[package]
    _sync_package(session, package, "typing")
    session.run("pyright", "--verifytypes", module, "--ignoreexternal")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """mypy --strict and pyright on tests/typing: the API as a strict user sees it."""
    _sync(session, "--all-packages", "--all-extras", "--group", "typing", "--group", "test")
    session.run("mypy", "tests/typing", "tests/scale")
    session.run("pyright", "tests/typing")


# Debian packages the tests start or drive, installed from the project's own files when
# missing: (a program any of which is enough, the package, what is skipped without it).
REDIS = (("redis-server",), "redis-server", "tests/scale's Redis tests")
BUBBLEWRAP = (("bwrap",), "bubblewrap", "the shell sandbox tests")
GRAPHVIZ = (("dot",), "graphviz", "the SVG and PNG drawing tests")
CHROMIUM = (("chromium", "chromium-browser"), "chromium", "the report's browser tests")


def _ensure_debian(session: nox.Session, *needs: tuple[tuple[str, ...], str, str]) -> None:
    """Install the Debian packages of *needs* whose programs are missing, in one apt-get run.

    Without root or apt-get, each missing one is a warning: the tests that need it skip.
    """
    missing = [need for need in needs if not any(shutil.which(p) for p in need[0])]
    if not missing:
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        packages = [package for _, package, _ in missing]
        session.run("apt-get", "update", "-qq", external=True, env=env)
        session.run("apt-get", "install", "-y", "-qq", *packages, external=True, env=env)
        return
    for _, package, skipped in missing:
        session.warn(f"{package} is not installed: {skipped} will be skipped")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Every test of every package, with branch coverage."""
    _ensure_debian(session, REDIS, BUBBLEWRAP, GRAPHVIZ, CHROMIUM)
    _sync(
        session,
        "--all-packages",
        "--all-extras",
        "--group",
        "test",
        "--group",
        "http",
    )
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site with mkdocs --strict (any warning fails)."""
    _sync(session, "--all-packages", "--all-extras", "--group", "docs")
    site = Path(session.create_tmp()).resolve() / "site"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site))
    session.log(f"the site was written to {site}: open {site / 'index.html'}")
    session.log("or serve it with live reload: nox -s docs_serve")


@nox.session(python=PYTHON, default=False)
def docs_serve(session: nox.Session) -> None:
    """Serve the docs with live reload (mkdocs serve); only when asked: nox -s docs_serve.

    Extra arguments go to mkdocs serve, e.g. ``nox -s docs_serve -- -a 127.0.0.1:8001``.
    """
    _sync(session, "--all-packages", "--all-extras", "--group", "docs")
    session.log("serving the docs at http://127.0.0.1:8000/ unless -a says where; Ctrl-C stops")
    session.run("mkdocs", "serve", "--strict", *session.posargs)


# Modules that importing each package must not load (isolation and lazy SDK imports).
FORBIDDEN_ON_IMPORT: dict[str, tuple[str, ...]] = {
    "aegis-graph": ("aegis_breaker", "aegis_adapters", "aegis_gov", "requests"),
    "aegis-breaker": ("aegis_graph", "aegis_adapters", "aegis_gov", "requests", "asyncio"),
    "aegis-adapters": (
        "aegis_graph",
        "aegis_breaker",
        "aegis_gov",
        "anthropic",
        "openai",
        "requests",
        "urllib3",
        "jsonschema",
        "asyncio",
    ),
    "aegis-gov": (
        "anthropic",
        "openai",
        "requests",
        "urllib3",
        "jsonschema",
        "pydantic",
        "mcp",
        "opentelemetry",
        # the package's modules load on first use of a name (PEP 562), these with them
        "asyncio",
        "sqlite3",
        "aegis_graph",
        "aegis_breaker",
        "aegis_adapters",
    ),
}


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build every wheel without workspace sources, then install and import each alone."""
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)  # never install a stale wheel
    session.run(
        "uv", "build", "--all-packages", "--no-sources", "--out-dir", str(dist), external=True
    )
    for package, (module, _, _, _) in PACKAGES.items():
        venv = Path(session.create_tmp()) / f"venv-{package}"
        session.run(
            "uv", "venv", "--quiet", "--clear", "--python", sys.executable, str(venv), external=True
        )
        python = str(venv / "bin" / "python")
        # Install our wheels by path: "aegis-gov" on the index is somebody else's package.
        ours = [module] if package != "aegis-gov" else [m for m, *_ in PACKAGES.values()]
        wheels = [str(next(dist.glob(f"{m}-*.whl"))) for m in ours]
        session.run("uv", "pip", "install", "--quiet", "--python", python, *wheels, external=True)
        check = (
            f"import sys, {module}; "
            f"bad = [m for m in {FORBIDDEN_ON_IMPORT[package]!r} if m in sys.modules]; "
            f"assert not bad, f'importing {module} loaded {{bad}}'; "
            f"print('{module} imports alone')"
        )
        session.run(python, "-c", check, external=True)
    # The console script from the wheel works on a machine with no provider configured.
    aegis = str(Path(session.create_tmp()) / "venv-aegis-gov" / "bin" / "aegis")
    session.run(aegis, "graph", str(ROOT / "examples" / "article.toml"), external=True)
