"""``kdbench ui``: the real MLflow server, opened in headless Chromium on a benchmark's runs.

The UI is MLflow's React app: the test starts ``kdbench ui`` as a user would, loads the
address it prints in a real browser, and asserts on what the page shows (its DOM after the
app has rendered, and a screenshot kept in the test's folder)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from kdbench import ui
from kdbench.cli import main
from kdbench.errors import KdbenchError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _browser(tmp_path: Path, url: str, *output: str, width: int = 1700) -> str:
    """Chromium's DOM dump (or nothing, with ``--screenshot``) of ``url`` once the app has
    fetched and rendered: virtual time runs the app's timers out, the fetches are real."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},900",
             "--virtual-time-budget=15000", *output]
    done = subprocess.run([CHROMIUM, *flags, url], capture_output=True, text=True, timeout=120)
    return done.stdout


def _printed(process: subprocess.Popen, until: str, seconds: float) -> str:
    """``process``'s stdout up to the line containing ``until`` (read by a thread, so that
    a silent process fails the test instead of hanging it)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout],
                     daemon=True).start()
    text, deadline = "", time.monotonic() + seconds
    while until not in text:
        assert time.monotonic() < deadline, f"no {until!r} in {seconds} s: {text!r}"
        assert process.poll() is None, process.stderr.read()
        with contextlib.suppress(queue.Empty):
            text += lines.get(timeout=1)
    return text


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_ui_opens_on_the_runs_with_their_columns(tiny: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    assert main(["run", str(tiny), "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny").experiment_id
    kd = client.search_runs([experiment], "params.row = 'kd' and params.seed = '1'")[0]
    sweep = client.search_runs([experiment], "tags.`kdbench.role` = 'sweep'")[0]
    board = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert ui.find(uri, None) == ui.Target("tiny", experiment, sweep.info.run_id, "tiny.html")
    with pytest.raises(KdbenchError, match=r"no experiment 'mnist1d' in sqlite:///.*; it has: "
                       r"tiny \(`kdbench run mnist1d` creates it\)"):
        ui.find(uri, "mnist1d")
    # The sweep's run carries the board, in its units: per row metrics, the verdict, a table.
    (row,) = board["rows"]
    assert sweep.data.metrics["kd.delta"] == pytest.approx(row["delta"])
    assert sweep.data.metrics["kd.mean"] == pytest.approx(row["mean"])
    assert sweep.data.metrics["baseline.mean"] == pytest.approx(board["baseline"]["mean"])
    assert sweep.data.tags["kdbench.verdict.kd"] == row["verdict"]
    assert "| 1 | kd |" in sweep.data.tags["mlflow.note.content"]
    table = json.loads(Path(client.download_artifacts(sweep.info.run_id,
                                                      "leaderboard-table.json", tmp_path)
                            ).read_text())
    assert table["columns"][:2] == ["#", "method"] and table["data"][2][1] == "kd"
    assert kd.data.metrics["top1"] == pytest.approx(100 * kd.data.metrics["fraction.top1"],
                                                    abs=1e-4)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-m", "kdbench.cli", "ui", str(tiny),
                                "--tracking-uri", uri, "--port", "0"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        printed = _printed(process, "its latest leaderboard", 120)
        runs_url = re.search(r"runs of tiny: (\S+)", printed).group(1)
        board_url = re.search(r"its latest leaderboard: (\S+)", printed).group(1)
        assert "workflowType=machine_learning" in runs_url and "tiny.html" in board_url
        assert sweep.info.run_id in board_url

        shot = tmp_path / "runs.png"
        dom = _browser(tmp_path, runs_url, "--dump-dom", f"--screenshot={shot}")
        # Model training, not the GenAI traces view; the shared view's filter and columns.
        assert "Model training" in dom and "tags.`kdbench.role` != 'sweep'" in dom
        texts = "|" + "|".join(t.strip() for t in re.split(r"<[^>]+>", dom) if t.strip()) + "|"
        header = texts[texts.index("|Run Name|"):texts.index("|Hide run|") + 1]
        for column in ("row", "role", "method", "seed", "top1", "train.top1", "Duration"):
            assert f"|{column}|" in header, (column, header)
        # The runs, each with its role, method, seed and top1 in percent, as the board has it.
        assert "|kd seed 1|" in texts and "|baseline seed 0|" in texts and "|method|" in texts
        assert 1 < kd.data.metrics["top1"] < 100
        assert f"|{kd.data.metrics['top1']}|" in texts
        assert "sweep tiny" not in texts  # the runs, not the sweep that holds them
        image = Image.open(shot)
        assert image.size == (1700, 900) and len(image.convert("L").getcolors(65536)) > 50
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 128 + signal.SIGTERM
    port = int(re.search(r"127\.0\.0\.1:(\d+)", printed).group(1))
    with pytest.raises(OSError):  # the server went with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_ui_refuses_a_busy_port_and_a_missing_store(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        with pytest.raises(KdbenchError, match=f"port {busy} on 127.0.0.1 is in use"):
            ui.free_port(busy)
    assert ui.free_port(0) > 0
    with pytest.raises(KdbenchError, match=r"no MLflow store at .*: `kdbench run` creates it"):
        ui.serve(f"sqlite:///{tmp_path / 'none.db'}", None, 0)
    assert not (tmp_path / "none.db").exists()


def test_ui_names_the_experiment_of_a_benchmark_file(tiny: Path) -> None:
    assert ui.experiment_name(str(tiny)) == "tiny"
    assert ui.experiment_name("mnist1d-check-recipe") == "mnist1d-check-recipe"
    tiny.write_text("seeds = 2\n")
    with pytest.raises(KdbenchError, match="has no `name`"):
        ui.experiment_name(str(tiny))
