"""A scikit-learn estimator as a teacher, fitted by kdbench on the training split.

Passalis and Tefas (ECCV 2018) transfer knowledge "from any model": PKT needs only the
teacher's representation of each sample, so a non-neural model can teach a network. This
provider fits a scikit-learn pipeline (``steps``, each a name below with its parameters in
``options``) on the training split less validation, with inputs flattened, and exposes:

* ``logits``: ``log(predict_proba)`` when the pipeline's last step has ``predict_proba``,
  with each probability floored at 1e-7 (a random forest gives exact zeros, whose log
  would make a temperature-scaled loss non-finite) and classes the fit never saw at the
  floor;
* ``embedding``: the pipeline's transform when its last step has one (PCA, LDA), else the
  transform of the steps before the classifier (the PCA of PCA + logistic regression);
  none for a lone classifier. The embedding is also the teacher's one (flat) stage, so a
  hint-based method regresses it (FitNet with ``guided = -1``), as PKT's Hint baseline
  regresses the handcrafted features.

Every step that takes a ``random_state`` gets ``seed`` unless ``options`` sets it, so the
fit is deterministic. The fit is cached by the teacher's fingerprint (the steps, options,
seed, dataset, validation split, this code and the scikit-learn version) in skops' format,
which loads only the scikit-learn and NumPy types it lists (no arbitrary pickle).

    [teacher]
    provider = "sklearn"
    steps = ["pca", "logistic_regression"]
    [teacher.options.pca]
    n_components = 16
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from kdbench.data import Dataset
from kdbench.errors import KdbenchError
from kdbench.params import bounded
from kdbench.taps import TapPoints
from kdbench.teacher import Fitted

Step = Literal["standard_scaler", "pca", "random_projection", "lda", "logistic_regression",
               "random_forest", "knn", "gaussian_nb"]
PROBABILITY_FLOOR = 1e-7


def _classes() -> dict[str, Callable[..., Any]]:
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler
    from sklearn.random_projection import GaussianRandomProjection

    return {"standard_scaler": StandardScaler, "pca": PCA,
            "random_projection": GaussianRandomProjection, "lda": LinearDiscriminantAnalysis,
            "logistic_regression": LogisticRegression, "random_forest": RandomForestClassifier,
            "knn": KNeighborsClassifier, "gaussian_nb": GaussianNB}


@dataclass(frozen=True)
class EstimatorParams:
    steps: tuple[Step, ...] = ("pca", "logistic_regression")
    """The pipeline's steps, in order (each name once)."""
    options: dict = field(default_factory=dict)
    """Each step's scikit-learn parameters: ``[teacher.options.pca] n_components = 16``."""
    seed: int = bounded(0, low=0, high=2**32 - 1)
    """``random_state`` of every step that takes one (unless ``options`` sets it)."""

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("steps must name at least one scikit-learn step")
        if len(set(self.steps)) != len(self.steps):
            raise ValueError(f"steps names a step twice: {list(self.steps)}")
        for name, values in self.options.items():
            if name not in self.steps:
                raise ValueError(f"options.{name} is not one of the steps {list(self.steps)}")
            if not isinstance(values, dict):
                raise ValueError(f"options.{name} must be a table of {name}'s parameters")
        pipeline(self)  # unknown parameter names fail here, when the file is read


def pipeline(params: EstimatorParams) -> Any:
    """The unfitted scikit-learn pipeline of ``params``."""
    from sklearn.pipeline import Pipeline

    classes = _classes()
    steps = []
    for name in params.steps:
        estimator = classes[name]()
        values = dict(params.options.get(name, {}))
        if "random_state" in estimator.get_params() and "random_state" not in values:
            values["random_state"] = params.seed
        try:
            estimator.set_params(**values)
        except ValueError as error:
            raise ValueError(f"options.{name}: {str(error).splitlines()[0]}") from None
        steps.append((name, estimator))
    return Pipeline(steps)


def _transform(estimator: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """The pipeline's embedding: its transform, or that of the steps before its classifier."""
    last = estimator.steps[-1][1]
    if hasattr(last, "transform"):
        return estimator.transform
    if len(estimator.steps) > 1:
        return estimator[:-1].transform
    return None


class EstimatorTeacher(nn.Module):
    """A fitted scikit-learn pipeline as a frozen teacher with taps (it runs on the CPU)."""

    def __init__(self, estimator: Any, num_classes: int) -> None:
        super().__init__()
        self.estimator = estimator
        self.num_classes = num_classes
        self.embedding = nn.Identity()
        self._transform = _transform(estimator)
        has = self._transform is not None
        self.taps = TapPoints(embedding="embedding" if has else None,
                              stages=("embedding",) if has else (),
                              logits=hasattr(estimator, "predict_proba"))

    def forward(self, x: Tensor) -> Tensor:
        inputs = x.detach().flatten(1).cpu().double().numpy()
        out = None
        if self._transform is not None:
            out = self.embedding(torch.as_tensor(self._transform(inputs), dtype=torch.float32,
                                                 device=x.device))
        if self.taps.logits:
            probabilities = np.full((len(inputs), self.num_classes), PROBABILITY_FLOOR)
            classes = np.asarray(self.estimator.classes_, dtype=int)
            probabilities[:, classes] = np.maximum(self.estimator.predict_proba(inputs),
                                                   PROBABILITY_FLOOR)
            out = torch.as_tensor(np.log(probabilities), dtype=torch.float32, device=x.device)
        return out


class Estimator(Fitted):
    """A scikit-learn pipeline fitted on the training split: log predict_proba and transform."""

    Params = EstimatorParams
    suffix: ClassVar[str] = ".skops"
    versions: ClassVar[tuple[str, ...]] = ("scikit-learn", "skops")

    def fit(self, data: Dataset) -> nn.Module:
        estimator = pipeline(self.params)
        # Fitted on what it will be fed: every batch reaches a teacher through data.inputs.
        x = data.inputs(data.x_train).flatten(1).cpu().double().numpy()
        try:
            estimator.fit(x, data.y_train.cpu().numpy())
        except ValueError as error:
            raise KdbenchError(f"[teacher] sklearn {self.describe()} cannot be fitted: "
                               f"{str(error).splitlines()[0]}") from None
        return EstimatorTeacher(estimator, data.num_classes)

    def save(self, teacher: nn.Module, path: Path) -> None:
        import skops.io

        skops.io.dump(teacher.estimator, path)

    def restore(self, path: Path, data: Dataset) -> nn.Module:
        import skops.io

        untrusted = skops.io.get_untrusted_types(file=path)
        foreign = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
        if foreign:
            raise KdbenchError(f"fitted teacher {path} holds types other than scikit-learn's "
                               f"({', '.join(foreign)}); delete it to refit")
        return EstimatorTeacher(skops.io.load(path, trusted=untrusted), data.num_classes)

    def describe(self) -> str:
        def step(name: str) -> str:
            values = self.params.options.get(name, {})
            return name + ("(" + ", ".join(f"{k}={v!r}" for k, v in values.items()) + ")"
                           if values else "")

        return "sklearn " + " + ".join(step(name) for name in self.params.steps)
