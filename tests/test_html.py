"""The leaderboard as people read it: the terminal table, and the HTML page in a real
headless browser."""

from __future__ import annotations

import json
import re
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


def _wide_board() -> dict:
    """A default-sized board: 18 rows with long grid labels, published numbers, warnings,
    a recipe check and a note per row."""
    rows = []
    for i in range(18):
        label = f"kd[T={i + 1} alpha=0.{i + 1:02d} beta=1.{i:02d}]" if i % 2 else f"method{i}"
        rows.append({**BOARD["rows"][0], "method": label, "mean": 95.0 - 0.3 * i,
                     "ci95": [94.0 - 0.3 * i, 96.0 - 0.3 * i],
                     "values": [95.0 - 0.3 * i] * 5, "seeds": list(range(5)),
                     "delta": -0.3 * i, "delta_ci95": [-0.3 * i - 1.234, -0.3 * i + 1.234],
                     "p": {"paired_t": 0.5, "wilcoxon": 0.0625, "welch": 0.51,
                           "mannwhitney": 0.55}, "hedges_g": -0.12, "prob_improvement": 0.44,
                     "verdict": "no evidence", "published": 96.5,
                     "seeds_needed": {"for_80_power": 120, "min_for_significance": 10},
                     "note": f"with 5 seeds the Wilcoxon signed-rank test can never reach p < "
                             f"0.00278 (0.05 Holm-corrected for 18 methods; needs ≥ {10 + i})"})
    return {**BOARD, "rows": rows, "family": 18, "benchmark_family": 18,
            "published": {"source": "a paper, Table 1", "note": "", "teacher": 97.0,
                          "baseline": 95.5},
            "protocol": {"validation": 0.1, "validation_samples": 399, "train_samples": 3601,
                         "validation_seed": 0, "epoch": "last", "test": "read once per run"},
            "warnings": ["the baseline is still climbing (validation top1 +1.0 points over "
                         "the last quarter of its 60 epochs; train top1 97.72%): lengthen "
                         "[recipe] epochs (see kdbench check-recipe)"],
            "recipe_check": {"verdict": "not checked", "experiment": "demo-check-recipe"},
            "tuning": "paper defaults (not tuned)"}


def test_every_format_says_the_same_numbers_in_percent(tmp_path: Path) -> None:
    board = _wide_board()
    leaderboard.write(board, tmp_path)
    first = board["rows"][1]  # kd[T=2 ...]: mean 94.70, Δ -0.30 [-1.53, +0.93]
    shown = ["94.70 ± 1.00", "-0.30 [-1.53, +0.93]"]
    for text in (leaderboard.terminal(board), (tmp_path / "demo.md").read_text(),
                 (tmp_path / "demo.html").read_text()):
        line = next(x for x in text.splitlines() if first["method"] in x)
        assert all(s in line for s in shown), line
        assert "recipe not checked" in text.lower() and "needs ≥ 11" in text  # lines, notes
    csv_row = next(x for x in (tmp_path / "demo.csv").read_text().splitlines()
                   if first["method"] in x)
    assert "94.700000" in csv_row and "-0.300000" in csv_row
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert saved["unit"] == "percent" and saved["rows"][1]["mean"] == 94.7


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_page_fits_a_laptop_screen(tmp_path: Path) -> None:
    """At 1366 px (a common laptop width) the page needs no sideways scrolling: only the
    table of every statistic scrolls, inside its own box; the notes are on the page."""
    leaderboard.write(_wide_board(), tmp_path)
    page = tmp_path / "demo.html"
    # The page measures itself once laid out, and says so in its DOM.
    page.write_text(page.read_text().replace(
        "</body>", "<script>document.body.dataset.width = "
        "document.documentElement.scrollWidth;</script></body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1366,768"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    width = int(re.search(r'data-width="(\d+)"', dom).group(1))
    assert width <= 1366, width
    assert '<ul id="notes">' in dom and "needs ≥ 27" in dom
