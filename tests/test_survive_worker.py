"""A worker killed with SIGKILL (what the OOM killer sends) fails its own run only: the
process executor replaces it, the other runs finish, ``kdbench run`` exits 1 and the next
``kdbench run`` trains exactly the run that failed."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from mlflow import MlflowClient


def kdbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "kdbench.cli", *args]


def runs(uri: str, name: str = "tiny") -> list:
    """Every child run (not the sweep) of benchmark ``name`` in the store at ``uri``."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return []
    return [r for r in client.search_runs([experiment.experiment_id], max_results=1000)
            if r.data.tags.get("kdbench.role") != "sweep"]


def sweeps(uri: str, name: str = "tiny") -> list:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    return [r for r in client.search_runs([experiment.experiment_id], max_results=1000)
            if r.data.tags.get("kdbench.role") == "sweep"]


def logged(store: Path, role: str | None = None) -> int:
    """How many FINISHED child runs (of ``role``) the SQLite store holds, read without MLflow:
    a client opened on a store being created would run its migrations concurrently."""
    if not store.is_file():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            return db.execute(
                "SELECT COUNT(*) FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid WHERE "
                "runs.status = 'FINISHED' AND tags.key = 'kdbench.role' AND "
                "tags.value != 'sweep'"
                + (f" AND tags.value = '{role}'" if role else "")).fetchone()[0]
    except sqlite3.Error:
        return 0


def workers(driver: int) -> list[int]:
    """The driver's worker processes (not MLflow's or multiprocessing's helpers)."""
    found = []
    for pid in Path(f"/proc/{driver}/task/{driver}/children").read_text().split():
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
    return found


def wait_for(condition, process: subprocess.Popen, what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"kdbench ended before {what}: {process.stderr.read()}"
        assert time.monotonic() < deadline, f"no {what} in {seconds} s"
        time.sleep(0.05)


def by_status(uri: str) -> Counter:
    return Counter(r.info.status for r in runs(uri))


def test_a_killed_worker_fails_only_its_run(tiny: Path, tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    uri = f"sqlite:///{store}"
    # One run per worker: a stacked group (--batch-runs) is one unit of work, and a worker's
    # death fails every run of the unit it held.
    command = kdbench("run", str(tiny), "--executor", "process", "--workers", "2",
                      "--batch-runs", "off", "--tracking-uri", uri)
    driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        # The teacher trains alone (in the driver); the four student runs go to two workers.
        wait_for(lambda: logged(store, "teacher") and workers(driver.pid), driver, "worker")
        victim = workers(driver.pid)[0]
        os.kill(victim, signal.SIGKILL)
        out, err = driver.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            driver.kill()
    assert driver.returncode == 1, err
    assert "1 run(s) failed" in err
    assert "worker died (signal 9)" in out
    assert by_status(uri) == {"FINISHED": 4, "FAILED": 1}
    failed = next(r for r in runs(uri) if r.info.status == "FAILED")
    assert failed.data.tags["kdbench.error"].startswith("worker died (signal 9)")

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert by_status(uri) == {"FINISHED": 5, "FAILED": 1}
    finished = [r for r in runs(uri) if r.info.status == "FINISHED"]
    fingerprints = Counter(r.data.tags["kdbench.fingerprint"] for r in finished)
    assert set(fingerprints.values()) == {1}
    assert failed.data.tags["kdbench.fingerprint"] in fingerprints
