"""The files ``kdbench new KIND NAME`` writes: one working plugin of each kind.

Each skeleton is a real plugin, not a placeholder: it installs, registers, passes the
conformance kit and runs its benchmark file as written, so an author changes a working
plugin into theirs one step at a time. Templates use :class:`string.Template` fields:
``$name`` (the registered name), ``$module`` (the Python module), ``$plugin`` (the
entry-point name), ``$dist`` (the distribution), ``$cls`` (a class name).
"""

from __future__ import annotations

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "$description"
requires-python = ">=3.11"
dependencies = ["kdbench"]

# kdbench finds plugins through this entry-point group; the name on the left is the
# plugin's name in `kdbench plugins` and `--disable-plugin`.
[project.entry-points.kdbench]
$plugin = "$module"

[tool.setuptools]
py-modules = ["$module"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

GITIGNORE = '''\
# what `kdbench run` and pytest write in the folder they run in
mlflow.db
mlruns/
leaderboard/
.pytest_cache/
.benchmarks/
*.egg-info/
'''

DIGITS_RECIPE = '''\
[dataset]
name = "digits"          # scikit-learn's 8×8 digits: bundled, nothing is downloaded
'''

RECIPE = '''\
[recipe]
epochs = 30
batch_size = 50
lr = 0.01
'''

TEACHER = '''\
[teacher]
model = "cnn2d"

[teacher.recipe]
epochs = 30
batch_size = 50
lr = 0.01
'''


def bench(name: str, description: str, body: str, metrics: str = '["top1", "agreement"]',
          metric: str = "top1") -> str:
    """A benchmark file: the header, then ``body`` (tables)."""
    return (f'# `kdbench run $name.toml --smoke` checks that it runs (seconds); without --smoke\n'
            f'# it trains the board.\nname = "{name}"\ndescription = "{description}"\n'
            f'seeds = 5\nmetric = "{metric}"\nmetrics = {metrics}\n\n{body}')


METHOD = '''\
"""$name: a knowledge-distillation method for kdbench.

It starts as soft-target KD (Hinton, Vinyals and Dean 2015, arXiv:1503.02531):

    L = (1 − α) · CE(y, p_S) + α · T² · KL(p_T^T ‖ p_S^T)

Make it yours: the loss as a pure function with the paper's symbols, the citation, the
paper's defaults in ``Params`` and which convention (paper or authors' code) it follows.
The contract: docs/plugins/method.md in kdbench's repository.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

import kdbench
from kdbench.method import LossTerms, Method
from kdbench.params import LogUniform, Uniform, bounded
from kdbench.registry import Register
from kdbench.taps import Taps


def soft_targets(z_s: Tensor, z_t: Tensor, T: float) -> Tensor:
    """T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)), averaged over the batch."""
    return F.kl_div(F.log_softmax(z_s / T, dim=1), F.log_softmax(z_t / T, dim=1),
                    reduction="batchmean", log_target=True) * T * T


@dataclass(frozen=True)
class Params:
    T: float = bounded(4.0, low=0, low_open=True, search=LogUniform(1, 16))
    """Temperature of both softmaxes."""
    alpha: float = bounded(0.9, low=0, high=1, search=Uniform(0, 1))
    """Weight of the distillation term; the label term gets 1 − α."""


class $cls(Method):
    """$name (so far Hinton et al. 2015's KD)."""

    name = "$name"
    Params = Params
    needs = frozenset({"logits"})          # the student's taps the loss reads
    teacher_needs = frozenset({"logits"})  # the teacher's; left out, the loss gets t = None

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        p: Params = self.params
        return {"ce": (1 - p.alpha) * F.cross_entropy(s.logits, y),
                "kd": p.alpha * soft_targets(s.logits, t.logits, p.T)}


@kdbench.hookimpl
def kdbench_methods(register: Register) -> None:
    register("$name", $cls)
'''

METHOD_TEST = '''\
"""$name keeps kdbench's method contract (the conformance kit, kdbench.testing)."""

from __future__ import annotations

from kdbench.testing import check_method, check_params


def test_it_keeps_the_method_contract() -> None:
    # On kdbench's built-in model pairs: finite scalar terms, gradients to the student and
    # never to the frozen teacher, a few steps lower the loss, the same seed, the same terms.
    report = check_method("$name")
    assert report.checked  # the pairs it accepted


def test_its_parameters_survive_a_benchmark_file_and_mlflow() -> None:
    check_params("methods", "$name")
'''

METHOD_BENCH = bench("$name", "$name against KD and the student alone on the 8x8 digits",
                     DIGITS_RECIPE + "\n" + TEACHER + '''
[student]
name = "cnn2d_small"

''' + RECIPE + '''
[methods.kd]

[methods.$name]
''')

DATASET = '''\
"""$name: a dataset for kdbench.

It starts as the wine data bundled with scikit-learn (``sklearn.datasets.load_wine``, the
UCI copy; Forina et al.): 178 wines, 13 chemical measurements, 3 cultivars, split once into
train and test, stratified, by ``seed``. Make it yours: load your data in ``load``, keep the
split fixed (every run of every benchmark must see the same one), and cache what is slow to
build under ``cache_dir``. The contract: docs/plugins/dataset.md in kdbench's repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

import kdbench
from kdbench.data import Dataset
from kdbench.params import bounded
from kdbench.registry import Register


@dataclass(frozen=True)
class Params:
    test_size: float = bounded(0.25, low=0.01, high=0.99)
    """Fraction of the samples held out as the test split (stratified by class)."""
    seed: int = bounded(0, low=0, high=2**32 - 1)
    """``random_state`` of the split."""


@dataclass(frozen=True)
class Standardise:
    """``prepare``: z-scores with the training split's mean and std, on the batch's device."""

    mean: Tensor
    std: Tensor

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def load(params: Params, cache_dir: Path) -> Dataset:
    """$name: the wine data (178 samples, 13 features, 3 classes), split 75/25."""
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    x, y = load_wine(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=params.test_size, random_state=params.seed, stratify=y)
    x_train = torch.as_tensor(x_train, dtype=torch.float32)
    return Dataset("$name", x_train, torch.as_tensor(y_train, dtype=torch.int64),
                   torch.as_tensor(x_test, dtype=torch.float32),
                   torch.as_tensor(y_test, dtype=torch.int64), num_classes=3,
                   prepare=Standardise(x_train.mean(0), x_train.std(0).clamp_min(1e-12)))


@kdbench.hookimpl
def kdbench_datasets(register: Register) -> None:
    register("$name", load, params=Params)
'''

DATASET_TEST = '''\
"""$name keeps kdbench's dataset contract (the conformance kit, kdbench.testing)."""

from __future__ import annotations

from kdbench.testing import check_dataset, check_params


def test_it_keeps_the_dataset_contract(tmp_path) -> None:
    # Non-empty splits of matching lengths, float or uint8 inputs, int64 labels in range.
    info = check_dataset("$name", cache_dir=tmp_path)
    assert info.num_classes >= 2


def test_its_parameters_survive_a_benchmark_file_and_mlflow() -> None:
    check_params("datasets", "$name")
'''

DATASET_BENCH = bench("$name", "KD from a wide MLP to a narrow one on $name", '''\
[dataset]
name = "$name"

[teacher.model]          # the teacher's architecture and its parameters
name = "mlp"
hidden = [64, 64]

[teacher.recipe]
epochs = 40
batch_size = 16
lr = 0.003

[student]
name = "mlp"
hidden = [4]

[recipe]
epochs = 40
batch_size = 16
lr = 0.003

[methods.kd]
''')

MODEL = '''\
"""$name: a model architecture for kdbench, usable as a student and as a teacher.

It starts as a multi-layer perceptron over the flattened input: ``depth`` blocks of a
linear layer of ``width`` units and a ReLU, then a linear classifier. Its taps: each block's
output is a stage, the last one is the embedding. Make it yours: build the network from the
dataset's ``info`` (input shape, classes) and your ``Params``, and name its taps. The
contract: docs/plugins/model.md in kdbench's repository.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

import kdbench
from kdbench.data import DataInfo
from kdbench.params import bounded
from kdbench.registry import Register
from kdbench.taps import TapPoints


@dataclass(frozen=True)
class Params:
    width: int = bounded(64, low=1)
    """Units of each hidden block."""
    depth: int = bounded(2, low=1, high=64)
    """Hidden blocks."""


class $cls(nn.Module):
    def __init__(self, in_features: int, num_classes: int, width: int, depth: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.blocks = nn.Sequential(*(nn.Sequential(nn.Linear(in_features if i == 0 else width,
                                                              width), nn.ReLU())
                                      for i in range(depth)))
        self.classifier = nn.Linear(width, num_classes)
        # Module names as in self.named_modules(): what methods may read.
        self.taps = TapPoints(embedding=f"blocks.{depth - 1}",
                              stages=tuple(f"blocks.{i}" for i in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.blocks(self.flatten(x)))


def build(params: Params, info: DataInfo) -> $cls:
    """$name: an MLP of ``depth`` blocks of ``width`` units."""
    return $cls(math.prod(info.input_shape), info.num_classes, params.width, params.depth)


@kdbench.hookimpl
def kdbench_students(register: Register) -> None:
    register("$name", build, params=Params)
'''

MODEL_TEST = '''\
"""$name keeps kdbench's model contract (the conformance kit, kdbench.testing)."""

from __future__ import annotations

from kdbench.data import DataInfo
from kdbench.testing import check_model, check_params


def test_it_keeps_the_model_contract() -> None:
    # Builds from a DataInfo, every tap resolves, one logit per class, every weight trains.
    check_model("$name")
    check_model("$name", DataInfo((1, 8, 8), 10, 100), {"width": 16})


def test_its_parameters_survive_a_benchmark_file_and_mlflow() -> None:
    check_params("students", "$name")
'''

MODEL_BENCH = bench("$name", "$name width 128 teaches $name width 16 on the 8x8 digits",
                    DIGITS_RECIPE + '''
[teacher.model]          # [teacher.model] and [student] each set the model's parameters
name = "$name"
width = 128

[teacher.recipe]
epochs = 30
batch_size = 50
lr = 0.01

[student]
name = "$name"
width = 16

''' + RECIPE + '''
[methods.kd]
''')

TEACHER_PROVIDER = '''\
"""$name: a teacher provider for kdbench, fitted by kdbench on the training split.

It starts as a least-squares (ridge) classifier: the weights W that minimise
‖X W − Y‖² + λ ‖W‖² for targets Y of +1 for a sample's class and −1 elsewhere (as
scikit-learn's ``RidgeClassifier``), solved in closed form on the inputs the teacher will
see (``data.inputs(x_train)``); its logits are ``scale · X W``. Make it yours: fit what you
like in ``fit``, and keep it in ``save``/``restore`` (kdbench caches the fit by the teacher's
fingerprint). The contract: docs/plugins/teacher.md in kdbench's repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

import kdbench
from kdbench.data import Dataset
from kdbench.params import bounded
from kdbench.registry import Register
from kdbench.taps import TapPoints
from kdbench.teacher import Fitted


@dataclass(frozen=True)
class Params:
    ridge: float = bounded(1.0, low=0)
    """λ, the penalty on the squared weights."""
    scale: float = bounded(1.0, low=0, low_open=True)
    """Multiplies the scores into logits."""


class LinearTeacher(nn.Module):
    """Fitted weights as a frozen model: logits, and the flattened input as the embedding."""

    def __init__(self, weight: Tensor, scale: float) -> None:
        super().__init__()
        self.register_buffer("weight", weight)  # (features + 1, classes), the bias last
        self.scale = scale
        self.flatten = nn.Flatten()
        self.taps = TapPoints(embedding="flatten")

    def forward(self, x: Tensor) -> Tensor:
        z = self.flatten(x).float()
        return self.scale * (z @ self.weight[:-1] + self.weight[-1])


class $cls(Fitted):
    """$name: a ridge classifier fitted on the training split (less validation)."""

    Params = Params
    suffix: ClassVar[str] = ".pt"
    versions: ClassVar[tuple[str, ...]] = ()  # libraries whose version changes the fit

    def fit(self, data: Dataset) -> nn.Module:
        x = data.inputs(data.x_train).flatten(1).double().cpu()
        x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
        targets = -torch.ones(len(x), data.num_classes, dtype=x.dtype)
        targets[torch.arange(len(x)), data.y_train.cpu()] = 1.0
        gram = x.T @ x + self.params.ridge * torch.eye(x.shape[1], dtype=x.dtype)
        weight = torch.linalg.lstsq(gram, x.T @ targets).solution
        return LinearTeacher(weight.float(), self.params.scale)

    def save(self, teacher: nn.Module, path: Path) -> None:
        torch.save({"weight": teacher.weight.cpu()}, path)

    def restore(self, path: Path, data: Dataset) -> nn.Module:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return LinearTeacher(state["weight"], self.params.scale)

    def describe(self) -> str:
        return f"$name (ridge {self.params.ridge:g})"


@kdbench.hookimpl
def kdbench_teachers(register: Register) -> None:
    register("$name", $cls)
'''

TEACHER_TEST = '''\
"""$name fits, caches and restores a teacher whose taps are what kdbench reads."""

from __future__ import annotations

import torch

from kdbench.data import hold_out
from kdbench.plugins import Plugins
from kdbench.taps import shapes
from kdbench.testing import check_params


def test_its_parameters_survive_a_benchmark_file_and_mlflow() -> None:
    check_params("teachers", "$name")


def test_it_fits_and_restores_the_same_teacher(tmp_path) -> None:
    plugins = Plugins.load()
    entry = plugins.entry("datasets", "digits")
    data = hold_out(entry.factory(entry.make_params({}), tmp_path), 0.1, 0)
    entry = plugins.entry("teachers", "$name")
    provider = entry.factory(entry.make_params({}))
    fitted = provider.load(None, tmp_path / "teacher.pt", data)     # fits and caches
    restored = provider.load(None, tmp_path / "teacher.pt", data)   # reads the cache
    x = data.inputs(data.x_test)
    assert torch.equal(fitted(x), restored(x))
    assert shapes(restored, x[:2]).logits == (10,)
    assert (restored(x).argmax(1) == data.y_test).float().mean() > 0.5
'''

TEACHER_BENCH = bench("$name", "a $name teacher, the cnn2d_small student, on the 8x8 digits",
                      DIGITS_RECIPE + '''
[teacher]
provider = "$name"       # no `model`: the provider makes its own teacher
ridge = 1.0              # the provider's parameters sit beside `provider`

[student]
name = "cnn2d_small"

''' + RECIPE + '''
[methods.kd]
''')

METRIC = '''\
"""$name: an evaluation metric for kdbench.

It starts as balanced accuracy: the mean over classes of the share of each class's samples
that are predicted as that class (the recall of each class), so every class counts alike
however many samples it has. Higher is better. Make it yours: compute your number from the
logits, or declare ``needs`` and read the whole ``kdbench.metrics.Outputs`` (the embedding,
the training split as a retrieval database). The contract: docs/plugins/metric.md in
kdbench's repository.
"""

from __future__ import annotations

import torch
from torch import Tensor

import kdbench
from kdbench.metrics import Metric
from kdbench.registry import Register


def balanced_accuracy(z: Tensor, y: Tensor, _teacher: Tensor | None) -> float:
    """Mean over the classes present in ``y`` of the recall of each."""
    predicted = z.argmax(1)
    recalls = [(predicted[y == c] == c).float().mean() for c in torch.unique(y)]
    return torch.stack(recalls).mean().item()


def build(params: None = None) -> Metric:
    """$name: balanced accuracy (mean per-class recall)."""
    return Metric("$name", balanced_accuracy, higher_is_better=True)


@kdbench.hookimpl
def kdbench_metrics(register: Register) -> None:
    register("$name", build)
'''

METRIC_TEST = '''\
"""$name keeps kdbench's metric contract (the conformance kit, kdbench.testing)."""

from __future__ import annotations

import torch

from kdbench.testing import check_metric
from $module import balanced_accuracy


def test_it_keeps_the_metric_contract() -> None:
    # A finite float on random outputs of a split, and a boolean higher_is_better.
    check_metric("$name")


def test_each_class_counts_alike() -> None:
    y = torch.tensor([0, 0, 0, 1])
    always_zero = torch.tensor([[1.0, 0.0]]).repeat(4, 1)
    assert balanced_accuracy(always_zero, y, None) == 0.5  # plain accuracy would say 0.75
'''

METRIC_BENCH = bench("$name", "KD on the 8x8 digits, ranked by $name",
                     DIGITS_RECIPE + "\n" + TEACHER + '''
[student]
name = "cnn2d_small"

''' + RECIPE + '''
[methods.kd]
''', metrics='["$name", "top1"]', metric="$name")

EXECUTOR = '''\
"""$name: an executor for kdbench (where runs execute).

It starts as the simplest one: every unit of work, one after another, in this process.
A unit is a run or a row's seeds stacked as one model (``groups = True``);
:func:`kdbench.batched.execute_unit` trains it and returns its result (a list for a group),
never raising for a run that fails. Make it yours: hand units to processes, machines or a
scheduler, forward their progress events, and yield ``(index, result)`` as each finishes;
never write to the tracking store (the driver does). The contract: docs/plugins/executor.md
in kdbench's repository.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kdbench
from kdbench.batched import execute_unit
from kdbench.executors import Progress
from kdbench.registry import Register
from kdbench.runs import Group, Job, RunResult


@dataclass(frozen=True)
class Params:
    """No parameters yet: add fields here, set them in a benchmark's [executor] table."""


class $cls:
    """$name: units one after another in this process."""

    Params = Params
    groups = True

    def __init__(self, params: Params) -> None:
        self.params = params

    def map(self, jobs: list[Job | Group], progress: Progress
            ) -> Iterator[tuple[int, RunResult | list[RunResult]]]:
        for index, unit in enumerate(jobs):
            def emit(*event: Any, index: int = index) -> None:
                progress(index, *event)  # a group's events name the member first

            yield index, execute_unit(unit, emit)


@kdbench.hookimpl
def kdbench_executors(register: Register) -> None:
    register("$name", $cls)
'''

EXECUTOR_TEST = '''\
"""$name trains a real run of its benchmark and yields its result."""

from __future__ import annotations

from pathlib import Path

from kdbench import sweep as sweeps
from kdbench.plugins import Plugins
from kdbench.spec import load

BENCHMARK = Path(__file__).parents[1] / "$name.toml"


def test_it_trains_the_teacher_of_its_benchmark(tmp_path: Path) -> None:
    plugins = Plugins.load()
    spec = load(str(BENCHMARK), plugins).smoke()  # 2 batches per epoch
    sweep = sweeps.plan(spec, plugins, tmp_path)
    entry = plugins.entry("executors", "$name")
    executor = entry.factory(entry.make_params({}))
    events = []
    [(index, result)] = list(executor.map([sweep.teacher.job], lambda *e: events.append(e)))
    assert index == 0 and result.status == "finished", result.error
    assert events  # progress: one event per epoch
'''

EXECUTOR_BENCH = bench("$name", "KD on the 8x8 digits, trained by the $name executor",
                       DIGITS_RECIPE + "\n" + TEACHER + '''
[student]
name = "cnn2d_small"

''' + RECIPE + '''
[executor]
name = "$name"

[methods.kd]
''')

SKELETONS: dict[str, dict[str, str]] = {
    "method": {"module": METHOD, "test": METHOD_TEST, "bench": METHOD_BENCH},
    "dataset": {"module": DATASET, "test": DATASET_TEST, "bench": DATASET_BENCH},
    "model": {"module": MODEL, "test": MODEL_TEST, "bench": MODEL_BENCH},
    "teacher": {"module": TEACHER_PROVIDER, "test": TEACHER_TEST, "bench": TEACHER_BENCH},
    "metric": {"module": METRIC, "test": METRIC_TEST, "bench": METRIC_BENCH},
    "executor": {"module": EXECUTOR, "test": EXECUTOR_TEST, "bench": EXECUTOR_BENCH},
}
"""Per kind: the plugin's module, its test and its benchmark file."""

DESCRIPTIONS = {"method": "a distillation method", "dataset": "a dataset", "model": "a model",
                "teacher": "a teacher provider", "metric": "an evaluation metric",
                "executor": "an executor"}
