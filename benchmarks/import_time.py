"""How long ``import X`` takes for each aegis package, from ``python -X importtime``.

Each measurement is a fresh subprocess running ``python -X importtime -c "import X"``; the
number kept is the cumulative microseconds of X's own line (everything X imports, the
interpreter's start-up excluded). Bytecode is cached in a private directory
(``PYTHONPYCACHEPREFIX``) and one warm-up run per package fills it, so the numbers are those of
an installed package with its ``.pyc`` files, whatever ``PYTHONDONTWRITEBYTECODE`` says.

``--variant NAME=DIR[:DIR...]`` adds a variant whose sources come first on ``PYTHONPATH`` (for
example an exported older commit's ``packages/*/src``); variants and packages are interleaved
within each round, so a change of load hits them alike. ``--top K`` also prints the K biggest
cumulative entries of the median run of each package.

Run: ``python benchmarks/import_time.py [--runs 9] [--top 0] [--variant NAME=DIRS] [MODULE...]``.
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

DEFAULT_MODULES = ("aegis_graph", "aegis_breaker", "aegis_adapters", "aegis_gov")
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)$")


def importtime(module: str, env: dict[str, str]) -> tuple[int, list[tuple[int, str]]]:
    """*module*'s cumulative import time in µs, and every (cumulative µs, name) line."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    )
    lines: list[tuple[int, str]] = []
    total = None
    for raw in out.stderr.splitlines():
        match = _LINE.match(raw)
        if match is None:
            continue
        cumulative, name = int(match.group(2)), match.group(4)
        lines.append((cumulative, name))
        if name == module:
            total = cumulative
    if total is None:
        raise RuntimeError(f"no importtime line for {module!r}:\n{out.stderr[-2000:]}")
    return total, lines


Runs = dict[tuple[str, str], list[tuple[int, list[tuple[int, str]]]]]


def measure(variants: dict[str, str | None], modules: list[str], rounds: int) -> Runs:
    """Every (variant, module) measured *rounds* times, interleaved, after one warm-up each."""
    with tempfile.TemporaryDirectory(prefix="aegis-importtime-") as cache:
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        envs: dict[str, dict[str, str]] = {}
        for name, path in variants.items():
            env = dict(base, PYTHONPYCACHEPREFIX=str(Path(cache) / name))
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


def report(runs: Runs, variants: list[str], module: str, top: int) -> None:
    """Print *module*'s median and range per variant, its top entries, and the ratios."""
    for name in variants:
        totals = sorted(total for total, _ in runs[name, module])
        median = statistics.median(totals) / 1000
        low, high = totals[0] / 1000, totals[-1] / 1000
        print(f"  {module:<16} {name:<10} {median:7.1f}  ({low:.1f}-{high:.1f})")
        if top:
            by_total = sorted(runs[name, module], key=lambda run: run[0])
            _, lines = by_total[len(by_total) // 2]
            for cumulative, entry in sorted(lines, reverse=True)[1 : top + 1]:
                print(f"      {cumulative / 1000:7.1f}  {entry}")
    first, *others = variants
    for other in others:
        ratios = sorted(
            b[0] / a[0] for a, b in zip(runs[first, module], runs[other, module], strict=True)
        )
        print(
            f"  {module:<16} {other}/{first}: median {statistics.median(ratios):.2f}x "
            f"({ratios[0]:.2f}-{ratios[-1]:.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=list(DEFAULT_MODULES))
    parser.add_argument("--runs", type=int, default=9, help="measured runs per package")
    parser.add_argument("--top", type=int, default=0, help="print the K biggest entries")
    parser.add_argument(
        "--variant", action="append", default=[], help="NAME=DIR[:DIR...] prepended to PYTHONPATH"
    )
    args = parser.parse_args()
    variants: dict[str, str | None] = {"current": None}
    for spec in args.variant:
        name, _, path = spec.partition("=")
        variants[name] = path
    runs = measure(variants, args.modules, args.runs)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{args.runs} runs each, cumulative import time in ms, median (range); load {load}")
    for module in args.modules:
        report(runs, list(variants), module, args.top)


if __name__ == "__main__":
    main()
