"""docs/screenshots.py still runs: the pictures in the docs can always be made again."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from tests.gov.browser import CHROMIUM, idat_variety, png_size

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "screenshots.py"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.timeout(600)  # a real demo run and three chromium drawings on a busy machine
def test_the_screenshots_script_writes_every_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--out", str(tmp_path), "--model-delay", "0"])
    with pytest.raises(SystemExit) as ended:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert ended.value.code == 0
    for name in ("live-table-80.png", "live-table-120.png", "report.png"):
        data = (tmp_path / name).read_bytes()
        width, _height = png_size(data)
        assert width > 400, name
        assert idat_variety(data) > 100, name  # something is drawn
    narrow = png_size((tmp_path / "live-table-80.png").read_bytes())[0]
    wide = png_size((tmp_path / "live-table-120.png").read_bytes())[0]
    assert narrow < wide


def test_the_docs_show_the_pictures_it_makes() -> None:
    docs = SCRIPT.parent
    for name in ("live-table-80.png", "live-table-120.png", "report.png"):
        assert (docs / "images" / name).is_file(), name
    text = (docs / "cli.md").read_text(encoding="utf-8") + (
        docs / "concepts" / "report.md"
    ).read_text(encoding="utf-8")
    for name in ("images/live-table-80.png", "images/live-table-120.png", "images/report.png"):
        assert name in text, name
