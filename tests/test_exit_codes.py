"""Exit codes a script can trust, with a third party's broken methods installed for real:
a sweep with failed runs writes its board, lists each failure with its reason and exits 1;
``--debug`` adds each worker's traceback; a sweep whose runs all finish exits 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_contract import broken_site  # noqa: F401 (fixture)

ROWS = "[methods.returns-tensor]\n\n[methods.nan-late]\nstep = 3\n\n[methods.kd]"


def _kdbench(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "kdbench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_failed_runs_exit_1_with_the_board_written_and_the_reasons_printed(
        broken_site: Path, tiny: Path, tmp_path: Path) -> None:  # noqa: F811
    tiny.write_text(tiny.read_text().replace("[methods.kd]", ROWS))
    out = tmp_path / "out"
    common = [str(tiny), "--seeds", "1", "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}",
              "--out", str(out)]
    ran = _kdbench(["run", *common], broken_site, tmp_path)
    assert ran.returncode == 1, ran.stderr
    board = json.loads((out / "tiny.json").read_text())
    assert all((out / f"tiny.{ext}").is_file() for ext in ("md", "csv"))
    assert [r["method"] for r in board["rows"]] == ["kd"]
    failed = {f["method"]: f["error"] for f in board["failed"]}
    assert set(failed) == {"returns-tensor", "nan-late"}
    assert "its loss returned a scalar tensor (float32); expected a dict of named scalar " \
           "tensors" in failed["returns-tensor"]
    assert "non-finite loss term 'bad' = nan (finite: 'ce') in phase 'train', epoch 1 of 2, " \
           "step 3 of 9" in failed["nan-late"]
    for label, error in failed.items():
        assert f"failed: {label} seed 0: {error}" in ran.stdout
        assert error in (out / "tiny.md").read_text()
    assert "kdbench: 2 run(s) failed" in ran.stderr
    assert "Traceback" not in ran.stderr

    # Failed runs are not reused: --debug retrains them and shows where each one broke.
    debug = _kdbench(["run", *common, "--debug"], broken_site, tmp_path)
    assert debug.returncode == 1, debug.stderr
    assert debug.stderr.count("Traceback (most recent call last)") == 2
    assert "kdbench: returns-tensor seed 0 failed: method 'returns-tensor'" in debug.stderr
    assert "in check_terms" in debug.stderr and "kdbench.contract.BrokenMethod: " in debug.stderr
    assert "kdbench.errors.Diverged: " in debug.stderr

    # The rows that finished, alone: exit 0.
    clean = _kdbench(["run", *common, "--methods", "kd"], broken_site, tmp_path)
    assert clean.returncode == 0, clean.stderr
    assert json.loads((out / "tiny.json").read_text())["failed"] == []
    assert "failed" not in clean.stderr


@pytest.mark.parametrize("args", [["run", "--device", "tpu"], ["run", "--methods", "nope"]])
def test_usage_errors_exit_2(args: list[str], broken_site: Path, tmp_path: Path) -> None:  # noqa: F811
    ran = _kdbench(args, broken_site, tmp_path)
    assert ran.returncode == 2
    assert ran.stderr.startswith("kdbench: error: ") and ran.stderr.count("\n") == 1
