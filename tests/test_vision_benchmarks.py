"""Every image benchmark of ``leaderboard/`` passes ``kdbench run NAME --smoke``, through the
real dataset loaders (fed files in their own formats, tests/vision_files.py) and the real
models. A benchmark whose models are not registered is skipped, and the skip names them."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import vision_files

from kdbench import train
from kdbench.cli import main

ROOT = Path(__file__).resolve().parent.parent / "leaderboard"
IMAGE_DATASETS = set(vision_files.WRITERS)


def _image_benchmarks() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(ROOT.glob("*.toml")):
        raw = tomllib.loads(path.read_text())
        dataset = raw.get("dataset", {})
        name = dataset if isinstance(dataset, str) else dataset.get("name")
        if name in IMAGE_DATASETS:
            found.append((path.stem, raw))
    return found


BENCHMARKS = _image_benchmarks()


def _models(raw: dict) -> list[str]:
    def name(value: object) -> str:
        return value if isinstance(value, str) else value["name"]  # type: ignore[index]

    return [name(raw["student"]), *([name(raw["teacher"]["model"])]
                                    if "model" in raw.get("teacher", {}) else [])]


def test_every_seed_table_has_an_image_benchmark() -> None:
    names = {name for name, _ in BENCHMARKS}
    assert {"seed003_cifar100_resnet32_resnet8", "seed002_cifar10_kd_temperature",
            "seed001_mnist_vgg16", "seed001_mnist_resnet164", "seed001_cifar100",
            "seed001_tinyimagenet", "crd_resnet32x4_resnet8x4", "crd_wrn_40_2_wrn_16_2",
            "crd_resnet56_resnet20", "crd_vgg13_vgg8", "crd_vgg13_mobilenetv2",
            "crd_resnet32x4_shufflenetv1"} <= names


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for write in vision_files.WRITERS.values():
        write(root)
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for every benchmark (an experiment each): creating a SQLite store
    runs MLflow's migrations, 3.5 s of CPU each time."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'm.db'}"


@pytest.mark.slow  # real CIFAR networks on a CPU: seconds per run, ~20 runs per benchmark
@pytest.mark.parametrize("name, raw", BENCHMARKS, ids=[name for name, _ in BENCHMARKS])
def test_image_benchmark_passes_smoke(name: str, raw: dict, data_root: Path, tmp_path: Path,
                                      store: str, capsys: pytest.CaptureFixture) -> None:
    registered = train.plugins().students()
    missing = [m for m in _models(raw) if m not in registered]
    if missing:
        pytest.skip(f"{name}: models not registered yet: {', '.join(missing)}")
    out = tmp_path / "out"
    code = main(["run", name, "--smoke", "--data-root", str(data_root), "--executor", "serial",
                 "--out", str(out), "--tracking-uri", store])
    board = json.loads((out / f"{name}-smoke.json").read_text())
    # Every run finishes: a smoke teacher's BatchNorm statistics are calibrated on its
    # training split (kdbench.train.calibrate_batchnorm), so its features have their usual
    # scale, and a divergence here is a method's (or a benchmark file's weights') bug.
    assert board["smoke"] and not board["failed"] and code == 0, board["failed"]
    assert len(board["rows"]) == len(raw["methods"]) or "T" in str(raw["methods"])
    assert ("published" in board) == ("published" in raw)
    assert "SMOKE TEST" in capsys.readouterr().out


def _seed003_resnet_shapes(n: int, classes: int = 100) -> list[tuple[int, ...]]:
    """The weight shapes of seed 003's ResNet (sseung0703/KD_methods_with_TF, nets/ResNet.py)
    on 32×32 inputs: widths [32, 64, 128, 256], ``n`` basic blocks per stage (1 for its
    student, 5 for its teacher), a 1×1 projection where the width or the stride changes."""
    shapes = [(32, 3, 3, 3)]
    c_in = 32
    for c_out in (64, 128, 256):
        for block in range(n):
            shapes += [(c_out, c_in, 3, 3), (c_out, c_out, 3, 3)]
            if block == 0:
                shapes.append((c_out, c_in, 1, 1))
            c_in = c_out
    return [*shapes, (classes, 256)]


def test_seed003_trains_the_seeds_own_networks() -> None:
    """Seed 003's "ResNet-32 → ResNet-8" are four times as wide as He et al.'s: its
    published 71.76% belongs to those networks, so the benchmark must train them."""
    from test_models_zoo import CIFAR100, build

    raw = dict(BENCHMARKS)["seed003_cifar100_resnet32_resnet8"]
    for model, n in ((raw["student"]["name"], 1), (raw["teacher"]["model"], 5)):
        net = build(train.plugins(), model, CIFAR100)
        weights = sorted(tuple(p.shape) for p in net.parameters() if p.dim() > 1)
        assert weights == sorted(_seed003_resnet_shapes(n)), model
