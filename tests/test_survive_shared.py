"""Several ``kdbench run`` at once on one new SQLite file and one cache train each run once:
a run another process is training is waited for and reused; MLflow's schema and the
benchmark's experiment are created once; cache files are written under unique names."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from test_survive_worker import kdbench, runs


def concurrently(tiny: Path, tmp_path: Path, uri: str, count: int = 3) -> None:
    """``count`` sweeps of the tiny benchmark started at once on ``uri`` and a new cache;
    each exits 0 and every fingerprint is FINISHED exactly once."""
    cache = tmp_path / "cache"
    command = kdbench("run", str(tiny), "--tracking-uri", uri, "--cache-dir", str(cache))
    drivers = [subprocess.Popen([*command, "--out", str(tmp_path / f"out{i}")], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(count)]
    outputs = [d.communicate(timeout=600) for d in drivers]
    for driver, (_, err) in zip(drivers, outputs, strict=True):
        assert driver.returncode == 0, err
    logged = runs(uri)
    assert {r.info.status for r in logged} == {"FINISHED"}
    fingerprints = Counter(r.data.tags["kdbench.fingerprint"] for r in logged)
    assert len(fingerprints) == 5 and set(fingerprints.values()) == {1}, fingerprints
    boards = {(tmp_path / f"out{i}" / "tiny.md").read_text() for i in range(count)}
    assert len(boards) == 1, "the sweeps' boards differ"
    assert not list(cache.rglob("*.tmp")), "a temporary file was left in the cache"


def test_three_sweeps_at_once_train_each_run_once(tiny: Path, tmp_path: Path) -> None:
    concurrently(tiny, tmp_path, f"sqlite:///{tmp_path / 'new.db'}")
