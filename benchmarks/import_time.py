"""How long ``import X`` takes for each aegis package, from ``python -X importtime``.

Each measurement is a fresh subprocess running ``python -X importtime -c "import X"``; the
number kept is the sum of the cumulative microseconds of every top-level module the statement
imports (for ``import X``, X's own line: everything X imports, the interpreter's start-up
excluded), with the CPU time of the statement (``time.process_time``, steadier than wall time on
a loaded machine) next to it. A target holding a space is a statement measured the same way:
``"from aegis_gov import OpenMultiAgent"`` counts the modules the name loads on first access, not
only the package's ``__init__`` (the default targets include the article's import line).
Bytecode is cached in a private directory (``PYTHONPYCACHEPREFIX``) and one warm-up run per
target fills it, so the numbers are those of an installed package with its ``.pyc`` files,
whatever ``PYTHONDONTWRITEBYTECODE`` says (``--no-bytecode`` measures with
``PYTHONDONTWRITEBYTECODE`` set instead: every module that has no ``.pyc`` yet compiles from
source, which can cost several times as much).

``--variant NAME=DIR[:DIR...]`` adds a variant whose sources come first on ``PYTHONPATH`` (for
example an exported older commit's ``packages/*/src``); variants and packages are interleaved
within each round, so a change of load hits them alike. ``--top K`` also prints the K biggest
cumulative entries of the median run of each package.

Run: ``python benchmarks/import_time.py [--runs 9] [--top K] [--no-bytecode] [--variant NAME=DIRS]
[MODULE_OR_STATEMENT...]``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_MODULES = (
    "aegis_graph",
    "aegis_breaker",
    "aegis_adapters",
    "aegis_gov",
    # what the article's first example imports: the names load their modules on first access
    "from aegis_gov import OpenMultiAgent, AgentConfig, Team, Task",
)
_MARK = "-- aegis import_time: the measured statement starts here --"
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)$")


def importtime(target: str, env: dict[str, str]) -> tuple[int, int, list[tuple[int, str]]]:
    """*target*'s import time in µs (wall, CPU) and every (cumulative µs, name) line.

    *target* is a module name or, if it holds a space, a statement. The wall time is the sum of
    the cumulative times of the top-level modules imported after a marker written just before
    the statement runs, so the interpreter's start-up is left out.
    """
    statement = target if " " in target else f"import {target}"
    code = (
        f"import sys, time; sys.stderr.write({_MARK!r} + '\\n'); t = time.process_time()\n"
        f"{statement}\nprint(time.process_time() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    )
    lines: list[tuple[int, str]] = []
    total = 0
    started = False
    for raw in out.stderr.splitlines():
        if raw == _MARK:
            started = True
            continue
        match = _LINE.match(raw)
        if match is None or not started:
            continue
        cumulative, name = int(match.group(2)), match.group(4)
        lines.append((cumulative, name))
        if len(match.group(3)) == 1:  # a top-level import of the statement, not a nested one
            total += cumulative
    if not started or not lines:
        raise RuntimeError(f"no importtime lines for {target!r}:\n{out.stderr[-2000:]}")
    return total, round(float(out.stdout) * 1e6), lines


Runs = dict[tuple[str, str], list[tuple[int, int, list[tuple[int, str]]]]]


def measure(
    variants: dict[str, str | None], modules: list[str], rounds: int, *, bytecode: bool = True
) -> Runs:
    """Every (variant, module) measured *rounds* times, interleaved, after one warm-up each.

    With ``bytecode=False`` no ``.pyc`` is written: modules without one (in a virtual environment
    made with ``PYTHONDONTWRITEBYTECODE`` set, every installed one) compile from source each run.
    """
    with tempfile.TemporaryDirectory(prefix="aegis-importtime-") as cache:
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        if not bytecode:
            base["PYTHONDONTWRITEBYTECODE"] = "1"
        envs: dict[str, dict[str, str]] = {}
        for name, path in variants.items():
            env = dict(base)
            if bytecode:  # a private cache: nothing is written next to the sources
                env["PYTHONPYCACHEPREFIX"] = str(Path(cache) / name)
            if path:
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
            envs[name] = env
        runs: Runs = {}
        for name, env in envs.items():
            for module in modules:
                importtime(module, env)  # warm-up: compiles and caches the bytecode
                runs[name, module] = []
        for _ in range(rounds):
            for name, env in envs.items():
                for module in modules:
                    runs[name, module].append(importtime(module, env))
    return runs


def _time(run: tuple[int, int, list[tuple[int, str]]], column: int) -> int:
    return run[0] if column == 0 else run[1]


def report(runs: Runs, variants: list[str], target: str, top: int) -> None:
    """Print *target*'s median and range per variant, its top entries, and the ratios."""
    label = target
    if " " in target:  # a statement gets a line of its own
        print(f"  {target}")
        label = ""
    for name in variants:
        cells = []
        for column in (0, 1):
            values = sorted(_time(run, column) / 1000 for run in runs[name, target])
            median = statistics.median(values)
            cells.append(f"{median:7.1f} ({values[0]:.1f}-{values[-1]:.1f})")
        print(f"  {label:<16} {name:<10} wall {cells[0]:<22} cpu {cells[1]}")
        if top:
            _, _, lines = sorted(runs[name, target])[len(runs[name, target]) // 2]
            skip = 0 if " " in target else 1  # a module's own line is its total
            for cumulative, entry in sorted(lines, reverse=True)[skip : top + skip]:
                print(f"      {cumulative / 1000:7.1f}  {entry}")
    first, *others = variants
    for other in others:
        cells = []
        for column in (0, 1):
            ratios = sorted(
                _time(b, column) / _time(a, column)
                for a, b in zip(runs[first, target], runs[other, target], strict=True)
            )
            median = statistics.median(ratios)
            cells.append(f"{median:.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})")
        print(f"  {label:<16} {other}/{first}: wall {cells[0]}, cpu {cells[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=list(DEFAULT_MODULES))
    parser.add_argument("--runs", type=int, default=9, help="measured runs per package")
    parser.add_argument("--top", type=int, default=0, help="print the K biggest entries")
    parser.add_argument(
        "--variant", action="append", default=[], help="NAME=DIR[:DIR...] prepended to PYTHONPATH"
    )
    parser.add_argument(
        "--no-bytecode", action="store_true", help="compile every module from source each run"
    )
    args = parser.parse_args()
    variants: dict[str, str | None] = {"current": None}
    for spec in args.variant:
        name, _, path = spec.partition("=")
        variants[name] = path
    runs = measure(variants, args.modules, args.runs, bytecode=not args.no_bytecode)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    mode = "from source" if args.no_bytecode else "with cached bytecode"
    print(
        f"{args.runs} runs each {mode}, cumulative import time in ms, median (range); load {load}"
    )
    for module in args.modules:
        report(runs, list(variants), module, args.top)


if __name__ == "__main__":
    main()
