"""A nearest-class-mean classifier as a teacher, fitted by kdbench on the training split.

Mensink, Verbeek, Perronnin and Csurka (2013), "Distance-Based Image Classification:
Generalizing to New Classes at Near-Zero Cost", IEEE TPAMI 35(11): the NCM classifier gives
class c the probability ∝ exp(−½ d(x, μ_c)), where μ_c is the mean of the training samples
of class c and d the squared distance. Here d is Euclidean (the paper's metric learning is
left out), scaled by ``scale``:

    logits_c(x) = −½ · scale · ‖x − μ_c‖²

The means are computed on the inputs the teacher will see during distillation
(``data.inputs(x_train)``: the dataset's ``prepare`` applied), on the training split less
validation. A class the fit never saw (a smoke test's few samples) gets a logit ``ABSENT``
below the sample's lowest, a probability of about e⁻¹⁶ times the nearest class's: finite,
so that temperature-scaled losses stay finite. Taps: logits and, as the embedding, the
flattened input.
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

ABSENT = 16.0


@dataclass(frozen=True)
class NCMParams:
    scale: float = bounded(1.0, low=0, low_open=True)
    """Multiplies the squared distances: larger gives sharper class probabilities."""


class NCMTeacher(nn.Module):
    """Class means as a frozen model: logits from distances, the input as the embedding."""

    def __init__(self, means: Tensor, present: Tensor, scale: float) -> None:
        super().__init__()
        # Buffers move with .to(device) and are saved in state_dict(); they are not trained.
        self.register_buffer("means", means)
        self.register_buffer("present", present)
        self.scale = scale
        self.flatten = nn.Flatten()
        self.taps = TapPoints(embedding="flatten")

    def forward(self, x: Tensor) -> Tensor:
        z = self.flatten(x).float()
        logits = -0.5 * self.scale * (z[:, None, :] - self.means[None]).square().sum(-1)
        lowest = logits.masked_fill(~self.present, torch.inf).min(1, keepdim=True).values
        return torch.where(self.present, logits, lowest - ABSENT)


def class_means(x: Tensor, y: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """The mean of each class's samples ``(num_classes, features)`` (zeros for a class
    without samples), and which classes have samples."""
    sums = torch.zeros(num_classes, x.shape[1]).index_add_(0, y, x)
    counts = torch.bincount(y, minlength=num_classes)
    return sums / counts.clamp_min(1)[:, None], counts > 0


class NCM(Fitted):
    """Nearest class mean (Mensink et al. 2013), fitted on the training split."""

    Params = NCMParams
    suffix: ClassVar[str] = ".pt"
    versions: ClassVar[tuple[str, ...]] = ()  # no library besides torch changes the fit

    def fit(self, data: Dataset) -> nn.Module:
        x = data.inputs(data.x_train).flatten(1).float().cpu()
        means, present = class_means(x, data.y_train.cpu(), data.num_classes)
        return NCMTeacher(means, present, self.params.scale)

    def save(self, teacher: nn.Module, path: Path) -> None:
        torch.save({k: v.cpu() for k, v in teacher.state_dict().items()}, path)

    def restore(self, path: Path, data: Dataset) -> nn.Module:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return NCMTeacher(state["means"], state["present"], self.params.scale)

    def describe(self) -> str:
        return f"nearest class mean (scale {self.params.scale:g})"


@kdbench.hookimpl
def kdbench_teachers(register: Register) -> None:
    register("ncm", NCM)
