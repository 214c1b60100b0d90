"""A store that cannot be used is refused before training, in one line; a store that stops
accepting writes mid-sweep stops the sweep with one line, leaves no run RUNNING and loses
nothing written before: the same command run again trains only what is missing."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

from test_survive_worker import kdbench, logged, runs, sweeps, wait_for


def test_an_unusable_sqlite_store_is_refused_at_once(tiny: Path, tmp_path: Path) -> None:
    for uri, why in [(f"sqlite:///{tmp_path}/missing/dir/mlflow.db", "does not exist"),
                     (f"sqlite:///{tmp_path}", "it is a directory")]:
        began = time.monotonic()
        ran = subprocess.run(kdbench("run", str(tiny), "--tracking-uri", uri), cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert ran.returncode == 2
        assert ran.stderr.count("\n") == 1 and why in ran.stderr, ran.stderr
        assert "start the server" not in ran.stderr
        # MLflow alone retried for 108 s; what is left is starting Python on a loaded machine.
        assert time.monotonic() - began < 90


def test_a_store_locked_mid_sweep_stops_it_and_loses_nothing(tiny: Path, tmp_path: Path
                                                             ) -> None:
    store = tmp_path / "mlflow.db"
    uri = f"sqlite:///{store}"
    command = kdbench("run", str(tiny), "--tracking-uri", uri)
    driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    wait_for(lambda: logged(store, "teacher"), driver, "teacher")
    # Another program takes the database for itself (as a backup tool or a stuck writer can).
    holder = sqlite3.connect(store, timeout=30, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        _, err = driver.communicate(timeout=300)
    finally:
        with contextlib.suppress(sqlite3.Error):
            holder.execute("ROLLBACK")
        holder.close()
    assert driver.returncode == 2, err
    [line] = [x for x in err.splitlines() if x.startswith("kdbench: error:")]
    assert line.startswith(("kdbench: error: cannot write ", "kdbench: error: cannot read "))
    assert f"tracking store {uri}: " in line and "run the same command again" in line
    assert "Traceback" not in err
    before = runs(uri)
    assert {r.info.status for r in before} <= {"FINISHED", "KILLED"}, "a run was left RUNNING"
    assert any(r.data.tags["kdbench.role"] == "teacher" and r.info.status == "FINISHED"
               for r in before)

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    after = [r for r in runs(uri) if r.info.status == "FINISHED"]
    assert "RUNNING" not in {r.info.status for r in runs(uri)}
    assert set(Counter(r.data.tags["kdbench.fingerprint"] for r in after).values()) == {1}
    assert len(after) == 5
    assert {r.info.run_id for r in before if r.info.status == "FINISHED"} <= \
        {r.info.run_id for r in after}, "a finished run was trained again"
    # The stopped sweep, left RUNNING by the locked store, was closed by the next one.
    assert sorted(s.info.status for s in sweeps(uri)) == ["FINISHED", "KILLED"]
