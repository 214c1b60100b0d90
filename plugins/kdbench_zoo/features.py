"""Fixed feature extractors as teachers: an embedding and no logits.

PKT (Passalis and Tefas, ECCV 2018) distils handcrafted features into a network (their
YouTube Faces experiment); this provider gives three such representations, computed in
torch so that they run on the data's device:

``pca``
    the first ``dim`` principal components of the flattened training split (less
    validation), fitted by scikit-learn's PCA with the full SVD (deterministic);
``random``
    a Gaussian random projection of the flattened input to ``dim`` values, entries
    N(0, 1/dim) drawn from ``seed`` (Johnson–Lindenstrauss; nothing is fitted);
``hog``
    a histogram of oriented gradients (Dalal and Triggs, CVPR 2005), for images
    ``(C, H, W)``: central-difference gradients of the channel mean, unsigned orientations
    in ``bins`` bins over [0, π) weighted by magnitude, summed over a ``cells × cells``
    grid, then the whole descriptor L2-normalised (one block; no overlapping block
    normalisation, hence "HOG-like").

The embedding is also the teacher's one (flat) stage, for hint-based methods (FitNet with
``guided = -1``). With no logits, KD and every logit method are refused at planning time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.data import Dataset
from kdbench.errors import KdbenchError
from kdbench.params import bounded
from kdbench.taps import TapPoints
from kdbench.teacher import Fitted


@dataclass(frozen=True)
class FeatureParams:
    kind: Literal["pca", "random", "hog"] = "pca"
    dim: int = bounded(16, low=1)
    """Components (pca) or projected values (random); hog's size is cells² × bins."""
    seed: int = bounded(0, low=0, high=2**32 - 1)
    """The random projection's seed."""
    cells: int = bounded(2, low=1)
    """hog: cells per side of the image."""
    bins: int = bounded(9, low=1)
    """hog: orientation bins over [0, π) (Dalal and Triggs: 9)."""


def hog(x: Tensor, cells: int, bins: int) -> Tensor:
    """HOG-like descriptors ``(N, cells² · bins)`` of images ``x`` ``(N, C, H, W)``."""
    image = x.float().mean(1, keepdim=True)
    gx = F.pad(image[..., :, 2:] - image[..., :, :-2], (1, 1, 0, 0))
    gy = F.pad(image[..., 2:, :] - image[..., :-2, :], (0, 0, 1, 1))
    magnitude = (gx.square() + gy.square()).sqrt()
    angle = torch.atan2(gy, gx) % math.pi
    index = (angle / math.pi * bins).long().clamp_max(bins - 1)
    votes = torch.zeros(x.shape[0], bins, *x.shape[2:], device=x.device)
    votes.scatter_(1, index, magnitude)
    # Cell means, not sums: the normalisation below removes the difference.
    return F.normalize(F.adaptive_avg_pool2d(votes, cells).flatten(1), dim=1, eps=1e-12)


class FeatureTeacher(nn.Module):
    """A fixed feature map as a frozen teacher: ``embedding`` (and stage) only."""

    def __init__(self, kind: str, state: dict[str, Tensor], cells: int = 2, bins: int = 9
                 ) -> None:
        super().__init__()
        self.kind, self.cells, self.bins = kind, cells, bins
        for name, tensor in state.items():
            self.register_buffer(name, tensor)
        self.embedding = nn.Identity()
        self.taps = TapPoints(embedding="embedding", stages=("embedding",), logits=False)

    def forward(self, x: Tensor) -> Tensor:
        """The embedding (there are no logits: ``taps.logits`` is False)."""
        if self.kind == "hog":
            features = hog(x, self.cells, self.bins)
        elif self.kind == "pca":
            features = (x.flatten(1).float() - self.mean) @ self.components.T
        else:
            features = x.flatten(1).float() @ self.projection
        return self.embedding(features)


class Features(Fitted):
    """A fixed feature extractor (PCA, random projection, HOG): an embedding, no logits."""

    Params = FeatureParams
    suffix: ClassVar[str] = ".pt"
    versions: ClassVar[tuple[str, ...]] = ("scikit-learn",)

    def fit(self, data: Dataset) -> nn.Module:
        p: FeatureParams = self.params
        # Fitted on what it will be fed: every batch reaches a teacher through data.inputs.
        x = data.inputs(data.x_train).cpu()
        if p.kind == "hog":
            if x.dim() != 4:
                raise KdbenchError(f"[teacher] features kind = \"hog\" needs images (C, H, W); "
                                   f"dataset {data.name!r} has samples of shape "
                                   f"{tuple(x.shape[1:])}: use kind = \"pca\" or \"random\"")
            return FeatureTeacher("hog", {}, p.cells, p.bins)
        flat = x.flatten(1).double()
        if p.kind == "pca":
            from sklearn.decomposition import PCA

            if p.dim > min(flat.shape):
                raise KdbenchError(f"[teacher] features dim = {p.dim} exceeds the "
                                   f"{min(flat.shape)} principal components the data have")
            pca = PCA(n_components=p.dim, svd_solver="full").fit(flat.numpy())
            return FeatureTeacher("pca", {
                "mean": torch.as_tensor(pca.mean_, dtype=torch.float32),
                "components": torch.as_tensor(pca.components_, dtype=torch.float32)})
        generator = torch.Generator().manual_seed(p.seed)
        projection = torch.randn(flat.shape[1], p.dim, generator=generator) / math.sqrt(p.dim)
        return FeatureTeacher("random", {"projection": projection})

    def save(self, teacher: nn.Module, path: Path) -> None:
        torch.save({k: v.cpu() for k, v in teacher.state_dict().items()}, path)

    def restore(self, path: Path, data: Dataset) -> nn.Module:
        p: FeatureParams = self.params
        state = torch.load(path, map_location="cpu", weights_only=True)
        return FeatureTeacher(p.kind, state, p.cells, p.bins)

    def describe(self) -> str:
        p: FeatureParams = self.params
        if p.kind == "hog":
            return f"features HOG ({p.cells}×{p.cells} cells, {p.bins} bins)"
        if p.kind == "pca":
            return f"features PCA ({p.dim} components)"
        return f"features random projection ({p.dim} values, seed {p.seed})"
