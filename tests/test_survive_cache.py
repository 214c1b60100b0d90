"""Cached files are verified before use: a truncated or swapped teacher checkpoint is
restored from MLflow (where its checksum and a copy are logged) and said in one line; a
corrupt dataset cache is rebuilt with one warning; a student never distils from another
teacher than the one its fingerprint names."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch
from test_survive_worker import kdbench, runs

from kdbench import cachefile


def test_a_damaged_cache_is_detected_and_repaired(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = kdbench("run", str(tiny), "--tracking-uri", uri, "--cache-dir", str(cache))
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    kd = {r.data.tags["kdbench.fingerprint"]: r.data.metrics for r in runs(uri)
          if r.data.tags["kdbench.label"] == "kd"}
    teacher = next(r for r in runs(uri) if r.data.tags["kdbench.role"] == "teacher")
    [checkpoint] = (cache / "teachers").glob("*.pt")
    good = checkpoint.read_bytes()
    assert teacher.data.tags["kdbench.checkpoint_sha256"] == cachefile.digest(checkpoint)

    # A truncated checkpoint (a full disk, a killed copy) is restored from MLflow.
    checkpoint.write_bytes(good[: len(good) // 2])
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert (f"kdbench: teacher checkpoint {checkpoint} does not match its checksum; restored "
            f"it from MLflow run {teacher.info.run_id}") in again.stderr
    assert checkpoint.read_bytes() == good
    assert len(runs(uri)) == 5, "something retrained"

    # A valid checkpoint of other weights is not used under this teacher's fingerprint: the
    # kd runs retrained after the swap give the numbers they gave with the real teacher.
    state = torch.load(checkpoint, weights_only=True)
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in state.items()}, checkpoint)
    swapped = subprocess.run([*command, "--fresh", "kd"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=300)
    assert swapped.returncode == 0, swapped.stderr
    assert "does not match its checksum; restored it from MLflow run" in swapped.stderr
    assert checkpoint.read_bytes() == good
    retrained = [r for r in runs(uri) if r.data.tags["kdbench.label"] == "kd"]
    assert len(retrained) == 4
    for run in retrained:
        expected = kd[run.data.tags["kdbench.fingerprint"]]
        assert {k: v for k, v in run.data.metrics.items() if k != "seconds"} == \
            {k: v for k, v in expected.items() if k != "seconds"}

    # A corrupt dataset cache is rebuilt, with one line.
    [data] = (cache / "data").glob("mnist1d-*.pt")
    data.write_bytes(data.read_bytes()[:100])
    rebuilt = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"kdbench: warning: MNIST-1D cache {data} does not match its checksum; rebuilding it" \
        in rebuilt.stderr
    assert cachefile.intact(data)
    assert "Traceback" not in rebuilt.stderr
