"""The leaderboard as people read it: the terminal table, and the HTML page in a real
headless browser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from kdbench import leaderboard

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

BOARD = {
    "benchmark": "demo", "metric": "top1", "higher_is_better": True, "primary_test": "paired_t",
    "correction": "holm", "alpha": 0.05, "teacher": {"name": "cnn1d", "value": 94.0},
    "unit": "percent",
    "baseline": {"seeds": [0, 1, 2], "values": [70.0, 72.0, 71.0], "mean": 71.0, "std": 1.0,
                 "ci95": [68.5, 73.5]},
    "rows": [{"method": "kd", "uses": "kd", "params": {"T": 4.0}, "seeds": [0, 1, 2],
              "values": [75.0, 77.0, 76.0], "mean": 76.0, "std": 1.0, "ci95": [73.5, 78.5],
              "delta": 5.0, "delta_ci95": [4.0, 6.0], "verdict": "better", "p_holm": 0.001}],
    "failed": [],
}


def test_terminal_says_a_shared_note_once() -> None:
    rows = [{**BOARD["rows"][0], "method": name, "note": "with 3 seeds the test can never win"}
            for name in ("kd", "at", "fitnet")]
    rows[2] = {**rows[2], "note": "only 1 seed is shared"}
    text = leaderboard.terminal({**BOARD, "rows": rows})
    notes = text.split("notes:\n")[1].splitlines()
    assert notes == ["  kd, at: with 3 seeds the test can never win",
                     "  fitnet: only 1 seed is shared"]
    everyone = leaderboard.terminal({**BOARD, "rows": rows[:2]})
    assert everyone.split("notes:\n")[1] == "  every method: with 3 seeds the test can never win"


def test_files_hold_the_plot(tmp_path: Path) -> None:
    paths = leaderboard.write(BOARD, tmp_path)
    html = (tmp_path / "demo.html").read_text()
    assert "<svg" in html and "kd" in html and "http" not in html.split("<svg")[0].lower()
    assert Image.open(tmp_path / "demo.png").size[0] > 500
    assert "![every seed" in (tmp_path / "demo.md").read_text()
    assert {p.suffix for p in paths} == {".json", ".md", ".csv", ".html", ".png"}


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_page_renders_in_a_headless_browser(tmp_path: Path) -> None:
    leaderboard.write(BOARD, tmp_path)
    page = (tmp_path / "demo.html").resolve()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120)
    assert '<figure id="plot"><svg' in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,900",
                    page.as_uri()], capture_output=True, timeout=120)
    image = Image.open(shot).convert("RGB")
    # The plot draws the verdict's green and the baseline's blue: pixels of both are on screen.
    colours = {c for _, c in image.getcolors(maxcolors=1_000_000)}
    assert any(g > 100 and g > r + 40 and g > b + 20 for r, g, b in colours)
    assert any(b > 150 and b > r + 60 for r, g, b in colours)
