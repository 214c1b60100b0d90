"""Sweeps against a real ``mlflow server`` on 127.0.0.1 (its own SQLite backend and artifact
store), as a team or a cluster shares one: three ``kdbench run`` started at once train each
run once, and a teacher checkpoint lost from a cache comes back from the server."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_survive_shared import concurrently
from test_survive_worker import kdbench, runs

from kdbench.ui import free_port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A real MLflow tracking server on a free loopback port; its URI."""
    port = free_port(0)
    root = tmp_path / "server"
    root.mkdir()
    mlflow = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
              str(port), "--backend-store-uri", f"sqlite:///{root / 'backend.db'}",
              "--artifacts-destination", str(root / "artifacts"), "--workers", "1"]
    log = (root / "server.log").open("w")
    process = subprocess.Popen(mlflow, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (root / "server.log").read_text()
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
            assert time.monotonic() < deadline, "mlflow server did not start in 120 s"
            time.sleep(0.5)
        yield uri
    finally:
        # The server, its uvicorn workers and its job runners: the whole process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()


def test_three_sweeps_share_a_tracking_server(server: str, tiny: Path, tmp_path: Path) -> None:
    concurrently(tiny, tmp_path, server)
    # Another machine (a new cache) gets the teacher checkpoint from the server.
    shutil.rmtree(tmp_path / "cache" / "teachers")
    other = subprocess.run(kdbench("run", str(tiny), "--tracking-uri", server, "--cache-dir",
                                   str(tmp_path / "cache")), cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert other.returncode == 0, other.stderr
    assert "is missing; restored it from MLflow run" in other.stderr
    assert len(runs(server)) == 5


def test_sweeps_starting_together_tag_one_experiment(server: str, tiny: Path) -> None:
    """Sweeps that start together all find the new experiment untagged and all tag it; the
    server's store checks, then inserts, so all but one insert used to fail ("UNIQUE
    constraint failed: experiment_tags.key") and their `kdbench run` exited 1."""
    import dataclasses
    import threading

    from kdbench import tracking
    from kdbench.plugins import Plugins
    from kdbench.spec import load

    spec = load(str(tiny), Plugins.load())
    failures: list[BaseException] = []
    for attempt in range(4):
        named = dataclasses.replace(spec, name=f"together-{attempt}")
        trackers = [tracking.Tracker(server) for _ in range(6)]
        start = threading.Barrier(len(trackers))

        def open_experiment(tracker: tracking.Tracker, named=named, start=start) -> None:
            start.wait()
            try:
                tracker.experiment(named)
            except Exception as error:
                failures.append(error)

        threads = [threading.Thread(target=open_experiment, args=(t,)) for t in trackers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures[0]
        tags = trackers[0].client.get_experiment_by_name(named.name).tags
        assert tags[tracking.KIND] == tracking.TRAINING
