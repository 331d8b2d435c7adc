"""Make the pictures in docs/images/ from a real run: never by hand, so they never go stale.

    uv run python docs/screenshots.py            # writes docs/images/*.png
    uv run python docs/screenshots.py --out DIR  # somewhere else (the test does this)

It runs the article pipeline with a failing branch (``aegis demo``'s offline script: a 429
honoured, ``fact_check`` failing and ``cite_sources`` skipped because of it, a breaker opening
and closing, a fall-back), takes the live table at 80 and 120 columns at the moment a task is
parked by an open breaker (rich's recording console, exported as SVG), and writes the run's
report page. Headless chromium (``apt-get install chromium``) turns each into a PNG.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from aegis_gov import RunEvent, TaskRetrying, TimelineRecorder, render_report
from aegis_gov._demo import offline_demo
from aegis_gov._progress import ProgressTracker, endpoints_of, fallbacks_of
from rich.console import Console

__all__ = ["main"]

IMAGES = Path(__file__).resolve().parent / "images"
WIDTHS = (80, 120)
REPORT_WINDOW = (1200, 1540)  # the page down to the breakers
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
# rich's SVG asks a CDN for its font; the pictures use the machine's monospace font instead.
_FONT_FACE = re.compile(r"@font-face\s*\{[^}]*\}")
_VIEWBOX = re.compile(r'viewBox="0 0 ([\d.]+) ([\d.]+)"')


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        sys.exit("screenshots.py: chromium is not installed (apt-get install chromium)")
    return found


def _png(page: Path, png: Path, width: int, height: int) -> None:
    """A PNG of the HTML file *page*, drawn by headless chromium in a *width* x *height* window."""
    with tempfile.TemporaryDirectory(prefix="aegis-shots-") as profile:
        subprocess.run(  # noqa: S603  # a fixed program and flags
            [
                _chromium(),
                *_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={width},{height}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )


def _svg_page(svg: str, page: Path) -> tuple[int, int]:
    """Write *svg* as a page of exactly its size; that size."""
    svg = _FONT_FACE.sub("", svg)
    match = _VIEWBOX.search(svg)
    if match is None:
        raise ValueError("rich's SVG has no viewBox")
    width, height = (round(float(n)) for n in match.groups())
    page.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><style>body{margin:0;"
        f"background:#fff}}svg{{display:block;width:{width}px;height:{height}px}}</style>"
        f"</head><body>{svg}</body></html>",
        encoding="utf-8",
    )
    return width, height


def main(argv: list[str] | None = None) -> int:
    """Run the demo, snapshot the live table, write the report; PNGs into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the PNGs go")
    parser.add_argument(
        "--model-delay",
        type=float,
        default=0.25,
        help="seconds each offline model call takes (0: as fast as the script allows)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    demo = offline_demo(delay_s=args.model_delay)
    tasks = list(demo.tasks)
    tracker = ProgressTracker(
        tasks,
        endpoints_of(demo.oma, demo.team, tasks),
        fallbacks=fallbacks_of(demo.team, tasks),
        limits=demo.limits,
    )
    recorder = TimelineRecorder(tasks, clock=demo.oma.clock)
    tables: dict[int, str] = {}

    def on_event(event: RunEvent) -> None:
        tracker(event)
        recorder(event)
        # The moment to show: a task parked by an open breaker while another waits out a
        # 429, one has failed and its dependent was skipped.
        if isinstance(event, TaskRetrying) and event.rejected and not tables:
            tracker.observe_circuits(demo.oma.get_status().endpoints)  # as the live view does
            for width in WIDTHS:
                console = Console(record=True, width=width, file=io.StringIO())
                console.print(tracker.render())
                tables[width] = console.export_svg(title=f"aegis run  ({width} columns)")

    result = recorder.attach(demo.oma.run_tasks(tasks, demo.team, on_event=on_event))
    if not tables:
        sys.exit("screenshots.py: the demo never parked a task; its script has changed")
    with tempfile.TemporaryDirectory(prefix="aegis-shots-") as work:
        for width, svg in tables.items():
            page = Path(work) / f"live-{width}.html"
            size = _svg_page(svg, page)
            _png(page, args.out / f"live-table-{width}.png", *size)
        page = Path(work) / "report.html"
        page.write_text(render_report(result), encoding="utf-8")
        _png(page, args.out / "report.png", *REPORT_WINDOW)
    for name in (*(f"live-table-{w}.png" for w in WIDTHS), "report.png"):
        sys.stdout.write(f"wrote {args.out / name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
