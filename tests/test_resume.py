"""kill -9 in the middle of a sweep loses nothing finished: the next ``kdbench run`` reuses
every run that reached MLflow as FINISHED and trains only the rest; and when a plugin's code
changed in between, that plugin's finished runs retrain as well, and nothing else does."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

SLOW_PYPROJECT = """
    [build-system]
    requires = ["setuptools"]
    build-backend = "setuptools.build_meta"
    [project]
    name = "kdbench-slow"
    version = "1.0.0"
    [project.entry-points.kdbench]
    slow = "kdbench_slow"
    [tool.setuptools]
    py-modules = ["kdbench_slow"]
"""

SLOW_MODULE = '''
    """A third party's method, and an observer that holds the driver after each logged run
    (while $SLOW_SECONDS is set) so that a test can kill it between two runs."""
    import os
    import time

    import torch.nn.functional as F

    import kdbench
    from kdbench.method import Method


    class LogitMSE(Method):
        """Regress the teacher's logits."""

        name = "logit-mse"
        teacher_needs = None

        def loss(self, s, t, y, idx):
            return {{"ce": F.cross_entropy(s.logits, y),
                     "mse": {scale} * F.mse_loss(s.logits, t.logits)}}


    @kdbench.hookimpl
    def kdbench_methods(register):
        register("logit-mse", LogitMSE)


    @kdbench.hookimpl
    def kdbench_run_end(run, result):
        time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
'''


def install(root: Path, scale: str) -> Path:
    source = root / "src"
    source.mkdir(parents=True, exist_ok=True)
    (source / "pyproject.toml").write_text(textwrap.dedent(SLOW_PYPROJECT))
    (source / "kdbench_slow.py").write_text(textwrap.dedent(SLOW_MODULE.format(scale=scale)))
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade",
                    "--no-build-isolation", "--no-index", "--target", str(target), str(source)],
                   check=True, capture_output=True)
    return target


def started(store: Path) -> bool:
    """Whether the driver has created the store and logged its first run. Read-only and without
    MLflow: an MlflowClient on a store being created would run its migrations concurrently."""
    if not store.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def finished(store: Path) -> list:
    """The FINISHED child runs in the store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("tiny")
    return [r for r in client.search_runs([experiment.experiment_id], max_results=1000,
                                          filter_string="attributes.status = 'FINISHED'")
            if r.data.tags.get("kdbench.role") != "sweep"]


def by_label(runs: list) -> Counter:
    return Counter(r.data.tags["kdbench.label"] for r in runs)


@pytest.mark.parametrize("change", [False, True], ids=["same-code", "changed-plugin"])
def test_a_killed_sweep_resumes_with_what_finished(change: bool, tiny: Path, tmp_path: Path
                                                   ) -> None:
    site = install(tmp_path / "slow", "1.0")
    # The third party's row first, so that its runs finish before kd's.
    tiny.write_text(tiny.read_text().replace("[methods.kd]", "[methods.logit-mse]\n\n[methods.kd]"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    command = [sys.executable, "-m", "kdbench.cli", "run", str(tiny), "--executor", "process",
               "--workers", "2"]
    store = tmp_path / "mlflow.db"

    driver = subprocess.Popen(command, cwd=tmp_path, env={**env, "SLOW_SECONDS": "2"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not started(store) or "logit-mse" not in by_label(finished(store)):
            assert driver.poll() is None, f"the sweep ended before the kill: {driver.stderr.read()}"
            assert time.monotonic() < deadline, "no method run finished in 300 s"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and its workers, mid-sweep
        driver.wait()
        driver.stderr.close()
    before = finished(store)
    done = by_label(before)
    assert done["teacher"] == 1 and done["logit-mse"] >= 1
    assert sum(done.values()) < 7, "everything finished before the kill: nothing to resume"

    if change:
        install(tmp_path / "slow", "2.0")
    resumed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "results" / "tiny.md").is_file()
    after = finished(store)
    counts = by_label(after)
    # Every run that finished before the kill is reused: one FINISHED run per fingerprint...
    fingerprints = Counter(r.data.tags["kdbench.fingerprint"] for r in after)
    assert {r.data.tags["kdbench.fingerprint"] for r in before} <= set(fingerprints)
    if not change:
        assert set(fingerprints.values()) == {1}
        assert counts == {"teacher": 1, "baseline": 2, "logit-mse": 2, "kd": 2}
        assert "code changed" not in resumed.stderr
        return
    # ...except the changed plugin's, which retrain (and say so); nothing else retrains.
    stale = done["logit-mse"]
    assert (f"kdbench: logit-mse: code changed (method: kdbench-slow 1.0.0, source changed), "
            f"{stale} run{'s' if stale > 1 else ''} to retrain") in resumed.stderr
    assert resumed.stderr.count("code changed") == 1
    assert counts == {"teacher": 1, "baseline": 2, "logit-mse": 2 + stale, "kd": 2}
    for run in after:
        if run.data.tags["kdbench.label"] != "logit-mse":
            assert fingerprints[run.data.tags["kdbench.fingerprint"]] == 1
