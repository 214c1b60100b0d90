"""The method contract is checked where it breaks: a third party's broken methods, installed
for real, run through :func:`kdbench.train.execute` and fail with a message that names the
method, what it returned or which term went non-finite where, and what to do."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import briefly

from kdbench import train

BROKEN = Path(__file__).parent / "broken_plugin"
EXPECTED = "expected a dict of named scalar tensors, e.g. {'ce': ..., 'kd': ...}"
ORIGIN = "method {!r} (plugin 'broken' (kdbench-broken-methods 0.1.0))"


def install_broken(root: Path) -> Path:
    """``tests/broken_plugin`` pip-installed into ``root/site`` (built from a copy, so the
    source tree stays clean); returns the directory to put on the path."""
    source = root / "src"
    shutil.copytree(BROKEN, source)
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(target), str(source)],
                   check=True, capture_output=True)
    return target


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_broken(tmp_path_factory.mktemp("broken"))


@pytest.fixture
def broken(broken_site: Path, monkeypatch: pytest.MonkeyPatch):
    """This process's plugins with the broken distribution on the path, found through its
    entry point like any installed plugin."""
    monkeypatch.syspath_prepend(str(broken_site))
    train.plugins.cache_clear()
    yield
    train.plugins.cache_clear()


@pytest.mark.usefixtures("broken")
@pytest.mark.parametrize(("method", "returned"), [
    ("returns-tensor", "its loss returned a scalar tensor (float32); "),
    ("returns-per-sample", "its loss returned term 'ce' as a tensor of shape (100,) (float32); "),
    ("returns-float", "its loss returned term 'kd' as a float (0.5); "),
    ("stage-returns-list", "the loss of its stage 'warmup' returned a list of 1 items; "),
])
def test_a_loss_that_returns_something_else_is_named(method: str, returned: str,
                                                     cache_dir: Path) -> None:
    result = briefly(method, cache=cache_dir)
    assert result.status == "failed"
    assert result.error.startswith(f"{ORIGIN.format(method)}: {returned}{EXPECTED}")
    assert "sparse" not in result.error
    assert "\n" not in result.error
    assert "Traceback (most recent call last)" in result.traceback
    assert "check_terms" in result.traceback


@pytest.mark.usefixtures("broken")
def test_a_loss_that_reaches_no_parameter_is_named(cache_dir: Path) -> None:
    result = briefly("detached", cache=cache_dir)
    assert result.status == "failed"
    assert result.error.startswith(f"{ORIGIN.format('detached')}: its loss returned no term "
                                   "that depends on a trained parameter ('ce': detached")


@pytest.mark.usefixtures("broken")
def test_non_finite_before_any_update_is_a_bug_not_divergence(cache_dir: Path) -> None:
    result = briefly("nan-at-start", cache=cache_dir)
    assert result.status == "failed"
    assert result.error.startswith(
        f"{ORIGIN.format('nan-at-start')} gave non-finite loss term 'ratio' = nan "
        "(finite: 'ce') in phase 'train', epoch 1 of 2, step 1 of 5: before any update, so "
        "not divergence but a bug in the loss")
    assert "learning rate" not in result.error


@pytest.mark.usefixtures("broken")
def test_a_term_that_turns_non_finite_names_its_step(cache_dir: Path) -> None:
    result = briefly("nan-late", {"step": 7}, cache=cache_dir)
    assert result.status == "failed"
    # 432 training samples (480 less validation) in batches of 100: the 7th batch is
    # epoch 2, step 2.
    assert result.error.startswith(
        f"{ORIGIN.format('nan-late')} gave non-finite loss term 'bad' = nan (finite: 'ce') in "
        "phase 'train', epoch 2 of 2, step 2 of 5: the network's outputs are finite, so the "
        "named term's computation produced it")
    assert "learning rate" not in result.error


@pytest.mark.usefixtures("broken")
def test_a_non_finite_gradient_names_its_step(cache_dir: Path) -> None:
    result = briefly("nan-gradient", cache=cache_dir)
    assert result.status == "failed"
    assert result.error.startswith(
        f"{ORIGIN.format('nan-gradient')} gave a finite loss with a non-finite gradient in "
        "phase 'train', epoch 1 of 2, step 1 of 5 (after 0 updates)")


@pytest.mark.usefixtures("broken")
def test_an_error_inside_torch_points_at_the_methods_line(cache_dir: Path) -> None:
    result = briefly("wrong-call", cache=cache_dir)
    assert result.status == "failed"
    assert result.error.startswith("ValueError: Expected input batch_size (100) to match target "
                                   "batch_size (5)")
    line = next(i for i, text in enumerate((BROKEN / "kdbench_broken.py").read_text()
                                           .splitlines(), 1) if "y[:5]" in text)
    assert result.error.endswith(f"(at kdbench_broken.py:{line})")
    assert "torch/nn/functional.py" in result.traceback


def test_divergence_says_so_and_names_the_step(planned, teacher_ready) -> None:
    from kdbench.spec import Recipe

    baseline = next(r for r in planned.runs if r.role == "baseline")
    job = replace(baseline.job, recipe=Recipe(epochs=2, batch_size=50, lr=1e30,
                                              optimizer="sgd", schedule="constant"))
    result = train.execute(job)
    assert result.status == "failed"
    assert result.error.startswith("the baseline gave non-finite loss term 'ce' = nan in phase "
                                   "'train', epoch 1 of 2, step 2 of 9: training diverged at "
                                   "epoch 1 (the network's outputs are non-finite too, after 1 "
                                   "updates); lower the learning rate or the method's loss "
                                   "weights")
