"""Ctrl-C, SIGTERM and SIGHUP stop a sweep within seconds: the workers are killed (queued
runs do not train), the sweep's MLflow run ends KILLED, no run is left half-written or
RUNNING, one line says how to resume, the exit code is 128 + the signal, and the same
command run again trains exactly the runs that were missing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from test_survive_worker import kdbench, logged, runs, sweeps, wait_for, workers


def longer(tiny: Path) -> None:
    """Student runs of a few seconds each, so that a signal lands while some train."""
    tiny.write_text(tiny.read_text().replace("[recipe]\nepochs = 2", "[recipe]\nepochs = 40"))


def start(tiny: Path, tmp_path: Path) -> tuple[subprocess.Popen, Path, list[str]]:
    store = tmp_path / "mlflow.db"
    command = kdbench("run", str(tiny), "--executor", "process", "--workers", "2",
                      "--tracking-uri", f"sqlite:///{store}")
    driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    # The teacher and one student run are logged; the other student runs are in flight.
    wait_for(lambda: logged(store, "teacher") and logged(store) >= 2 and workers(driver.pid),
             driver, "student run")
    return driver, store, command


def stopped(driver: subprocess.Popen, signum: int, group: bool) -> tuple[float, str]:
    """Send ``signum`` (to the process group, as a terminal does, when ``group``); the seconds
    until the driver and its workers are gone, and its stderr."""
    pool = workers(driver.pid)
    sent = time.monotonic()
    try:
        (os.killpg if group else os.kill)(driver.pid, signum)
        _, err = driver.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    seconds = time.monotonic() - sent
    for pid in pool:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text(
        ).split()[2], "a worker outlived its driver"
    return seconds, err


@pytest.mark.parametrize(("signum", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False),
                                                (signal.SIGHUP, True)],
                         ids=["ctrl-c", "sigterm", "sighup"])
def test_a_signal_stops_the_sweep_cleanly(signum: int, group: bool, tiny: Path,
                                          tmp_path: Path) -> None:
    longer(tiny)
    driver, store, command = start(tiny, tmp_path)
    seconds, err = stopped(driver, signum, group)
    print(f"{signal.Signals(signum).name}: stopped in {seconds:.2f} s")
    assert seconds < 15, f"{seconds:.1f} s to stop"
    assert driver.returncode == 128 + signum, err
    name = signal.Signals(signum).name
    assert f"kdbench: interrupted ({name}): finished runs are saved; resume with: kdbench run" \
        in err
    assert "Traceback" not in err and "leaked" not in err
    uri = f"sqlite:///{store}"
    assert [s.info.status for s in sweeps(uri)] == ["KILLED"]
    before = runs(uri)
    assert {r.info.status for r in before} == {"FINISHED"}
    assert 2 <= len(before) < 5
    if signum != signal.SIGINT:
        return
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    after = runs(uri)
    assert len(after) == 5 and {r.info.status for r in after} == {"FINISHED"}
    assert set(Counter(r.data.tags["kdbench.fingerprint"] for r in after).values()) == {1}
    assert {r.info.run_id for r in before} <= {r.info.run_id for r in after}


def test_a_second_ctrl_c_exits_at_once(tiny: Path, tmp_path: Path) -> None:
    longer(tiny)
    driver, store, _ = start(tiny, tmp_path)
    pool = workers(driver.pid)
    sent = time.monotonic()
    os.killpg(driver.pid, signal.SIGINT)
    os.killpg(driver.pid, signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert driver.returncode == 130, err
    time.sleep(0.5)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pool)
    # Whatever the second Ctrl-C cut short, the next sweep on this host marks it KILLED.
    from kdbench.tracking import Tracker

    tracker = Tracker(f"sqlite:///{store}")
    tracker.close_abandoned(tracker.client.get_experiment_by_name("tiny").experiment_id)
    assert "RUNNING" not in {r.info.status for r in runs(f"sqlite:///{store}")}
    assert "RUNNING" not in {s.info.status for s in sweeps(f"sqlite:///{store}")}
