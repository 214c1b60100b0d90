"""The device settings (kdbench.accel) on CPU: bf16 autocast and channels-last train a CIFAR
ResNet to finite numbers close to float32's, losses run in float32, torch.compile traces the
taps and gives float32's numbers, the settings are part of each run's fingerprint, and
impossible settings are refused in one line."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from kdbench import accel, train
from kdbench.accel import Accel
from kdbench.cli import main
from kdbench.errors import KdbenchError
from kdbench.runs import Job, TeacherRef
from kdbench.spec import Component, Recipe
from kdbench.taps import Taps


def job(cache: Path, accel_: Accel, epochs: int = 2, method: str | None = None,
        teacher: TeacherRef | None = None, model: str = "resnet8") -> Job:
    """A run of ``model`` on the 8×8 digits (real data, 1,797 images; a CIFAR ResNet's
    stages are 8, 4 and 2 pixels wide there)."""
    data = Component("digits", train.plugins().entry("datasets", "digits").make_params(
        {}).__dict__)
    return Job("method" if method else "baseline", method, {}, 0, data, Component(model, {}),
               Recipe(epochs=epochs, lr=0.01), teacher, ("top1",), str(cache), accel=accel_)


def losses(result) -> list[float]:
    assert result.status == "finished", result.error
    return [row["loss"] for row in result.history]


def test_bf16_and_channels_last_train_close_to_float32(cache_dir: Path) -> None:
    runs = {name: train.execute(job(cache_dir, a)) for name, a in
            (("fp32", Accel()), ("bf16", Accel(amp="bf16")),
             ("channels_last", Accel(channels_last=True)))}
    reference = losses(runs["fp32"])
    for name in ("bf16", "channels_last"):
        curve = losses(runs[name])
        assert all(torch.isfinite(torch.tensor(curve)))
        # Measured: epoch losses within 0.2% (epoch 1) and 3.3% (epoch 2) of float32's.
        for got, want in zip(curve, reference, strict=True):
            assert abs(got - want) <= 0.1 * want, (name, curve, reference)
        assert abs(runs[name].metrics["val.top1"] - runs["fp32"].metrics["val.top1"]) <= 0.1
    assert reference != losses(runs["bf16"])  # bf16 did round: it ran


def test_kd_under_bf16_and_channels_last(cache_dir: Path) -> None:
    t_model = Component("resnet14", {})
    ref = TeacherRef("train", t_model, {}, "accel-teacher",
                     str(cache_dir / "teachers" / "accel-teacher.pt"))
    if not Path(ref.checkpoint).is_file():
        losses(train.execute(replace(job(cache_dir, Accel(), 1, model="resnet14"),
                                     role="teacher", teacher=ref)))
    fast = Accel(amp="bf16", channels_last=True)
    result = train.execute(job(cache_dir, fast, 1, method="kd", teacher=ref))
    assert losses(result)[0] > 0
    assert set(result.history[0]) >= {"loss.ce", "loss.kd"}


def test_taps_reach_the_loss_in_float32() -> None:
    x = torch.randn(2, 3, requires_grad=True)
    taps = Taps(x.to(torch.bfloat16), None, [x.to(torch.bfloat16)])
    up = accel.fp32(taps)
    assert up.logits.dtype == torch.float32 and up.stages[0].dtype == torch.float32
    up.logits.sum().backward()  # the cast keeps the graph
    assert x.grad is not None
    same = Taps(x, x, [])
    assert accel.fp32(same).logits is x and accel.fp32(None) is None


def test_compile_traces_the_taps_and_matches_float32(cache_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The "eager" backend runs dynamo's graph capture (hooks and all) without building C++
    # kernels: the part of --compile that could break kdbench, in seconds.
    monkeypatch.setattr(accel, "COMPILE_BACKEND", "eager")
    plain = train.execute(job(cache_dir, Accel(), 1))
    compiled = train.execute(job(cache_dir, Accel(compile=True), 1))
    assert losses(compiled) == pytest.approx(losses(plain), rel=1e-5)
    assert compiled.metrics["val.top1"] == pytest.approx(plain.metrics["val.top1"])


def test_settings_are_part_of_the_fingerprint(planned, plugins, cache_dir: Path) -> None:
    from kdbench import sweep as sweeps

    fast = sweeps.plan(replace(planned.spec, accel=Accel(amp="bf16")), plugins, cache_dir)
    again = sweeps.plan(replace(planned.spec, accel=Accel()), plugins, cache_dir)
    before = {r.fingerprint for r in planned.runs}
    assert {r.fingerprint for r in again.runs} == before  # off: fingerprints unchanged
    assert not {r.fingerprint for r in fast.runs} & before
    assert all(r.job.accel == Accel(amp="bf16") for r in fast.runs)


def test_impossible_settings_are_refused_in_one_line(tiny: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    assert main(["run", str(tiny), "--device", "cpu", "--compile"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "C++ compiler" in err
    with pytest.raises(KdbenchError, match="--amp"):
        accel.configured("cpu", amp="fp16")
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(tiny), "--amp", "fp16"])
    assert exit_.value.code == 2
