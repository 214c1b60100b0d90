"""A run's identity covers its code: a changed plugin retrains its own runs and nothing else,
``kdbench run`` says why, ``--fresh ROWS`` retrains only those rows, and MLflow records which
code produced each run, when it really started and ended, and the benchmark's description."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from kdbench import identity

EXTRA_PYPROJECT = """
    [build-system]
    requires = ["setuptools"]
    build-backend = "setuptools.build_meta"
    [project]
    name = "kdbench-extra"
    version = "{version}"
    [project.entry-points.kdbench]
    extra = "kdbench_extra"
    [tool.setuptools]
    py-modules = ["kdbench_extra"]
"""

EXTRA_MODULE = '''
    """A third party's method: regress the teacher's logits."""
    from dataclasses import dataclass

    import torch.nn.functional as F

    import kdbench
    from kdbench.method import Method


    @dataclass(frozen=True)
    class Params:
        beta: float = 1.0


    class LogitMSE(Method):
        """Ba and Caruana 2014: regress the teacher's logits."""

        name = "logit-mse"
        Params = Params
        teacher_needs = None

        def loss(self, s, t, y, idx):
            return {{"ce": F.cross_entropy(s.logits, y),
                     "mse": {scale} * self.params.beta * F.mse_loss(s.logits, t.logits)}}


    @kdbench.hookimpl
    def kdbench_methods(register):
        register("logit-mse", LogitMSE)
'''


def install(root: Path, version: str, scale: str) -> Path:
    """(Re)install the ``kdbench-extra`` distribution into ``root/site``."""
    source = root / "src"
    source.mkdir(parents=True, exist_ok=True)
    (source / "pyproject.toml").write_text(textwrap.dedent(EXTRA_PYPROJECT.format(version=version)))
    (source / "kdbench_extra.py").write_text(textwrap.dedent(EXTRA_MODULE.format(scale=scale)))
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade",
                    "--no-build-isolation", "--no-index", "--target", str(target), str(source)],
                   check=True, capture_output=True)
    return target


def kdbench(args: list[str], site: Path | None, cwd: Path) -> subprocess.CompletedProcess:
    paths = [str(site)] if site else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [*paths, *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "kdbench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def runs(store: Path) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("tiny")
    return [r for r in client.search_runs([experiment.experiment_id], max_results=1000)
            if r.data.tags.get("kdbench.role") != "sweep"]


def per_label(store: Path) -> Counter:
    return Counter(r.data.tags["kdbench.label"] for r in runs(store))


@pytest.fixture
def bench(tiny: Path) -> Path:
    tiny.write_text(tiny.read_text().replace(
        "[methods.kd]", "[methods.logit-mse]\nbeta = 0.5\n\n[methods.kd]"))
    return tiny


def test_a_changed_plugin_retrains_only_its_runs_and_says_why(
        bench: Path, tmp_path: Path) -> None:
    site = install(tmp_path / "extra", "1.2.3", "1.0")
    args = ["run", str(bench), "--seeds", "1", "--methods", "kd,logit-mse"]
    first = kdbench(args, site, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "code changed" not in first.stderr
    assert per_label(tmp_path / "mlflow.db") == {"teacher": 1, "baseline": 1, "kd": 1,
                                                  "logit-mse": 1}

    again = kdbench(args, site, tmp_path)  # nothing changed: everything is reused
    assert again.returncode == 0 and "code changed" not in again.stderr, again.stderr
    assert sum(per_label(tmp_path / "mlflow.db").values()) == 4

    install(tmp_path / "extra", "1.2.3", "2.0")  # the loss changes, the version does not
    edited = kdbench(args, site, tmp_path)
    assert edited.returncode == 0, edited.stderr
    assert ("kdbench: logit-mse: code changed (method: kdbench-extra 1.2.3, source changed), "
            "1 run to retrain") in edited.stderr
    assert edited.stderr.count("code changed") == 1
    assert per_label(tmp_path / "mlflow.db") == {"teacher": 1, "baseline": 1, "kd": 1,
                                                  "logit-mse": 2}

    install(tmp_path / "extra", "1.2.4", "2.0")  # a new version of the same source
    bumped = kdbench(args, site, tmp_path)
    assert bumped.returncode == 0, bumped.stderr
    assert ("logit-mse: code changed (method: kdbench-extra 1.2.3 -> 1.2.4), 1 run to retrain"
            in bumped.stderr)
    assert per_label(tmp_path / "mlflow.db") == {"teacher": 1, "baseline": 1, "kd": 1,
                                                  "logit-mse": 3}

    # MLflow says which code made each run; the spec fingerprint ties the three versions.
    methods = sorted((r for r in runs(tmp_path / "mlflow.db")
                      if r.data.tags["kdbench.label"] == "logit-mse"),
                     key=lambda r: r.info.start_time)
    codes = [r.data.tags["kdbench.code.method"] for r in methods]
    assert codes[0].startswith("kdbench-extra 1.2.3 ") and codes[2].startswith("kdbench-extra 1.2.4 ")
    assert codes[0] != codes[1] and codes[1].split()[2] == codes[2].split()[2]
    assert len({r.data.tags["kdbench.spec_fingerprint"] for r in methods}) == 1
    assert len({r.data.tags["kdbench.fingerprint"] for r in methods}) == 3
    tags = methods[-1].data.tags
    assert tags["kdbench.code.kdbench"] == str(identity.kdbench_code())
    assert tags["kdbench.code.student"].startswith("kdbench 0.1.0 ")
    assert tags["kdbench.code.dataset"].startswith("kdbench 0.1.0 ")
    assert tags["kdbench.code.teacher.model"].startswith("kdbench 0.1.0 ")
    assert tags["kdbench.code.metric.top1"].startswith("kdbench 0.1.0 ")
    kd = next(r for r in runs(tmp_path / "mlflow.db") if r.data.tags["kdbench.label"] == "kd")
    assert kd.data.tags["kdbench.code.method"].startswith("kdbench 0.1.0 ")


def test_fresh_rows_retrain_only_those_rows(tiny: Path, tmp_path: Path) -> None:
    args = ["run", str(tiny), "--seeds", "2"]
    first = kdbench(args, None, tmp_path)
    assert first.returncode == 0, first.stderr
    assert per_label(tmp_path / "mlflow.db") == {"teacher": 1, "baseline": 2, "kd": 2}
    fresh = kdbench([*args, "--fresh", "kd"], None, tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert per_label(tmp_path / "mlflow.db") == {"teacher": 1, "baseline": 2, "kd": 4}

    unknown = kdbench([*args, "--fresh", "kd,nope"], None, tmp_path)
    assert unknown.returncode == 2, unknown.stderr
    assert unknown.stderr.strip().count("\n") == 0
    assert "--fresh kd,nope: no row named nope in benchmark 'tiny'; rows: baseline, kd, teacher" \
        in unknown.stderr
    assert per_label(tmp_path / "mlflow.db") == {"teacher": 1, "baseline": 2, "kd": 4}


def test_mlflow_records_training_times_and_the_benchmark_description(
        tiny: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    tiny.write_text(tiny.read_text().replace(
        'name = "tiny"', 'name = "tiny"\ndescription = "two methods on a small MNIST-1D"'))
    ran = kdbench(["run", str(tiny), "--seeds", "1"], None, tmp_path)
    assert ran.returncode == 0, ran.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    assert experiment.tags["mlflow.note.content"] == "two methods on a small MNIST-1D"
    children = runs(tmp_path / "mlflow.db")
    assert {r.data.tags["kdbench.role"] for r in children} == {"teacher", "baseline", "method"}
    for run in children:
        trained = float(run.data.tags["kdbench.seconds"])
        duration = (run.info.end_time - run.info.start_time) / 1000
        # The run's MLflow duration is its training time, not the split second of logging.
        assert duration == pytest.approx(trained, abs=0.05), (duration, trained)
    teacher = next(r for r in children if r.data.tags["kdbench.role"] == "teacher")
    assert float(teacher.data.tags["kdbench.seconds"]) > 0.05  # training, not just logging
    students = [r for r in children if r.data.tags["kdbench.role"] != "teacher"]
    assert all(s.info.start_time >= teacher.info.end_time for s in students)


def test_a_methods_code_covers_its_helpers_but_not_other_packages(plugins) -> None:
    at = plugins.methods()["at"]
    files = {Path(f).name for m in identity.defining_modules(at.factory, at.params)
             for f in identity.module_files(m)}
    assert files == {"at.py", "_maps.py"}  # the helper it imports, not kdbench's Method
    code = identity.entry_code(plugins, "methods", "at")
    assert code.startswith("kdbench 0.1.0 ") and len(code.split()[2]) == 12
    assert code != identity.entry_code(plugins, "methods", "kd")


def test_code_changes_are_described_by_part() -> None:
    old = {"kdbench": "kdbench 0.1.0 aaa", "method": "kdbench-extra 1.2.3 bbb",
           "student": "zoo 1.0 ccc", "dataset": "kdbench 0.1.0 ddd"}
    new = {"kdbench": "kdbench 0.1.0 aab", "method": "kdbench-extra 1.2.4 bbc",
           "student": "zoo 1.0 ccd", "dataset": "other 2.0 ddd"}
    assert identity.changes(old, new) == [
        "dataset: kdbench 0.1.0 -> other 2.0", "kdbench training loop",
        "method: kdbench-extra 1.2.3 -> 1.2.4", "student: zoo 1.0, source changed"]
    assert identity.changes(old, old) == []
