"""Zero-shot knowledge distillation: a student taught on data impressions, with no data.

Nayak, Mopuri, Shaj, Babu and Chakraborty (2019), "Zero-Shot Knowledge Distillation in
Deep Networks", ICML 2019, arXiv:1905.08114 (code: github.com/vcl-iisc/ZSKD).

The teacher's final layer ``z = W e + b`` (one row ``w_k`` of ``W`` per class) gives the
class similarity matrix (paper, section 3.2)

    C[i, j] = w_iᵀ w_j / (‖w_i‖ ‖w_j‖),

each row min-max normalised to [0, 1] (``c_k``). For every class k and scale β ∈ {1.0, 0.1}
soft labels are sampled from a Dirichlet distribution, ``y ~ Dir(β · c_k + ε)``: β = 1 gives
mixtures spread over the classes similar to k, β = 0.1 nearly one-hot ones. Each label is
turned into a "data impression": a random input ``x`` optimised so that the frozen teacher,
at temperature τ = 20, maps it to that label,

    x* = argmin_x  Σ_i  CE(y_i, softmax(T(x_i) / τ)),

and the student is trained on the impressions with Hinton's KD loss at temperature T = 20
and the teacher's outputs on them (section 3; no hard-label term).

Which convention is followed where paper and the authors' code differ:

- β: the paper's. The authors' ``dirichmat.py`` divides the similarity matrix by 10 for the
  β = 0.1 half, but ``generateDirch`` min-max normalises the row again and scales by 1, so in
  their code both halves sample ``Dir(c_k + 1e-4)``; here the second half uses ``0.1 c_k``.
- ε = 1e-4, added to every concentration: the authors' code (a min-max-normalised row has a
  0, which is not a valid Dirichlet parameter).
- steps = 1500, lr = 0.001 (Adam), uniform [0, 1] initial inputs, 100 impressions per batch,
  each impression min-max rescaled to the input range after every step: the authors' code
  (``--iterations 1500 --lr 0.001 --batch_size 100`` and ``noise_image_clip``; they rescale a
  whole batch by its common min and max, here each impression by its own, so an impression
  does not depend on which others share its batch). The input range [low, high] is the
  teacher's input range: [0, 1] for images scaled as the authors' (and kdbench's digits).
- The impression loss is summed over the batch (the authors' code averages): under Adam the
  two differ only through ε, and the sum makes each impression's update independent of how
  many share its batch, so ``batch`` sets speed and memory, not the result.
- The teacher is in eval mode (kdbench's frozen teacher; BatchNorm uses running statistics).
  The authors' TensorFlow graph left ``is_training`` at its default, True.
- Impressions are split evenly over classes and scales (the paper: equal halves per β); the
  default count is the authors' CIFAR-10 run (40 000; the paper's MNIST row used 24 000).
- The student's loss: the authors' ``train.py`` (``T² · CE(p_T^τ, p_S^τ)``, τ = 20, on the
  teacher's softmax of the final impressions), computed as T² · KL, which has the same
  gradient. Labels ``y`` of the transfer set are the teacher's argmax (their ``train.py``).

Impressions do not depend on the student's seed: they are made once per teacher and
setting and cached (:func:`cached_impressions`); a grid of some of them is logged to MLflow
as ``impressions.png``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.data import batches
from kdbench.errors import Incompatible
from kdbench.method import LossTerms, Method, TransferContext, TransferSet
from kdbench.params import bounded
from kdbench.taps import Tapped, Taps, TapShapes
from kdbench_methods._grid import impression_grid
from kdbench_methods.kd import kd_loss

EPSILON = 1e-4
"""Added to every Dirichlet concentration (the authors' ``generateDirch``)."""


def class_similarity(W: Tensor) -> Tensor:
    """C[i, j] = w_iᵀ w_j / (‖w_i‖ ‖w_j‖) for the rows ``w_k`` of the final layer's weight
    ``W`` (K × D): the cosine similarity of the classes' weight vectors (section 3.2.1)."""
    unit = F.normalize(W.double(), dim=1)
    return (unit @ unit.T).to(W.dtype)


def concentration(c: Tensor, beta: float) -> Tensor:
    """The Dirichlet concentration of one class: ``β · minmax(c) + ε``, where ``c`` is the
    class's row of :func:`class_similarity` and ``minmax`` maps it onto [0, 1]."""
    lo, hi = c.min(), c.max()
    return beta * (c - lo) / (hi - lo).clamp_min(1e-12) + EPSILON


def sample_soft_labels(alpha: Tensor, n: int, rng: np.random.Generator) -> Tensor:
    """``n`` soft labels ``y ~ Dir(alpha)`` (rows on the simplex), drawn from ``rng``."""
    draws = rng.dirichlet(alpha.double().cpu().numpy(), size=n)
    return torch.as_tensor(draws, dtype=torch.float32).reshape(n, len(alpha))


def impression_loss(z: Tensor, y: Tensor, tau: float) -> Tensor:
    """Σ_i CE(y_i, softmax(z_i / τ)) = −Σ_i Σ_k y_ik log softmax(z_i / τ)_k: how far the
    teacher's tempered outputs ``z`` on a batch of impressions are from their labels."""
    return -(y * F.log_softmax(z / tau, dim=1)).sum()


def rescale(x: Tensor, low: float, high: float) -> Tensor:
    """Each sample of ``x`` min-max rescaled onto [low, high] (the authors' clip, per sample)."""
    flat = x.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return (low + (high - low) * (flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(x)


def split_evenly(n: int, parts: int) -> list[int]:
    """``n`` items over ``parts`` groups: ``n // parts`` each, one more for the first
    ``n % parts``."""
    return [n // parts + (i < n % parts) for i in range(parts)]


@dataclass(frozen=True)
class ZSKDParams:
    impressions: int = bounded(40000, low=1, smoke=20)
    """Number of data impressions, split evenly over classes and scales."""
    betas: tuple[float, ...] = bounded((1.0, 0.1), low=0, low_open=True)
    """Scales β of the Dirichlet concentration; an equal share of impressions each."""
    tau: float = bounded(20.0, low=0, low_open=True)
    """Temperature of the teacher's softmax while impressions are optimised."""
    steps: int = bounded(1500, low=1, smoke=2)
    """Adam steps per batch of impressions."""
    lr: float = bounded(0.001, low=0, low_open=True)
    """Adam's learning rate for the impressions."""
    batch: int = bounded(100, low=1)
    """Impressions optimised at once (speed and memory only; see the module docstring)."""
    low: float = 0.0
    """Lower end of the teacher's input range: initial noise and the rescaling use it."""
    high: float = 1.0
    """Upper end of the teacher's input range."""
    seed: int = bounded(0, low=0, high=2**32 - 1)
    """Seed of the labels and the initial noise (not the student's: impressions are shared)."""
    T: float = bounded(20.0, low=0, low_open=True)
    """Temperature of the student's KD loss on the impressions."""

    def __post_init__(self) -> None:
        if not self.betas:
            raise ValueError("betas must list at least one scale, e.g. [1.0, 0.1]")
        if self.high <= self.low:
            raise ValueError(f"high ({self.high}) must be above low ({self.low})")


def final_layer(teacher: nn.Module, sample: Tensor) -> nn.Linear:
    """The teacher's classifier: the ``nn.Linear`` that maps its embedding tap to its logits,
    found among its modules and checked on ``sample`` (eval mode)."""
    tapped = Tapped(teacher, frozenset({"embedding"}))
    try:
        with torch.no_grad():
            taps = tapped(sample)
    finally:
        tapped.remove()
    e, z = taps.embedding, taps.logits
    for module in reversed(list(teacher.modules())):
        if isinstance(module, nn.Linear) and module.in_features == e.shape[1] \
                and module.out_features == z.shape[1]:
            with torch.no_grad():
                if torch.allclose(module(e), z, rtol=1e-4, atol=1e-5):
                    return module
    raise Incompatible("zskd needs the teacher's final layer as an nn.Linear from its embedding "
                       f"tap to its logits; {type(teacher).__name__} has none")


@dataclass
class Impressions:
    """Data impressions with the soft labels they were optimised towards, by group: impression
    ``i`` belongs to class ``group[i] // len(betas)`` and scale ``betas[group[i] % len(betas)]``."""

    x: Tensor
    targets: Tensor
    group: Tensor


def make_impressions(teacher: nn.Module, W: Tensor, input_shape: tuple[int, ...],
                     p: ZSKDParams, device: str = "cpu") -> Impressions:
    """Every impression of the setting ``p``: labels sampled per class and scale, inputs
    optimised batch by batch (all of a batch at once) against the frozen ``teacher``."""
    C = class_similarity(W.detach().cpu())
    K = len(C)
    rng = np.random.default_rng(p.seed)
    groups = [(k, beta) for k in range(K) for beta in p.betas]
    counts = split_evenly(p.impressions, len(groups))
    targets = torch.cat([sample_soft_labels(concentration(C[k], beta), n, rng)
                         for (k, beta), n in zip(groups, counts, strict=True)])
    group = torch.repeat_interleave(torch.arange(len(groups)), torch.tensor(counts))
    noise = torch.Generator().manual_seed(p.seed)
    x = p.low + (p.high - p.low) * torch.rand((p.impressions, *input_shape), generator=noise)
    for idx in batches(p.impressions, p.batch):
        x[idx] = optimise(teacher, x[idx].to(device), targets[idx].to(device), p).cpu()
    return Impressions(x, targets, group)


def optimise(teacher: nn.Module, x0: Tensor, y: Tensor, p: ZSKDParams) -> Tensor:
    """Inputs ``x0`` after ``p.steps`` Adam steps on :func:`impression_loss` towards ``y``."""
    x = x0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=p.lr)
    for _ in range(p.steps):
        loss = impression_loss(teacher(x), y, p.tau)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            x.copy_(rescale(x, p.low, p.high))
    return x.detach()


def cache_key(context: TransferContext, p: ZSKDParams) -> str:
    """What impressions depend on: the teacher's weights, the generation parameters (not the
    student's T), this module's code, the input shape, the device and torch's version."""
    from kdbench.identity import source_sha256

    setting = {k: v for k, v in asdict(p).items() if k != "T"}
    text = json.dumps({"teacher": context.teacher_id, "params": setting,
                       "code": source_sha256((__name__,)), "shape": context.info.input_shape,
                       "classes": context.info.num_classes, "device": context.device,
                       "torch": torch.__version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached_impressions(teacher: nn.Module, context: TransferContext, p: ZSKDParams
                       ) -> tuple[Impressions, Tensor]:
    """The impressions of ``p`` for this teacher and the teacher's labels on them, made once
    and cached under ``context.cache_dir`` (written to a unique temporary file, then renamed;
    a lock makes concurrent runs of the same setting wait for one to make them)."""
    from filelock import FileLock

    directory = Path(context.cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{cache_key(context, p)}.pt"
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            stored = torch.load(path, map_location="cpu", weights_only=True)
            return Impressions(stored["x"], stored["targets"], stored["group"]), stored["y"]
        sample = p.low + (p.high - p.low) * torch.rand((2, *context.info.input_shape),
                                                        generator=torch.Generator().manual_seed(0))
        W = final_layer(teacher, sample.to(context.device)).weight
        made = make_impressions(teacher, W, context.info.input_shape, p, context.device)
        with torch.no_grad():
            y = torch.cat([teacher(made.x[i].to(context.device)).argmax(1).cpu()
                           for i in batches(len(made.x), 1024)])
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.stem}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save({"x": made.x, "targets": made.targets, "group": made.group, "y": y}, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return made, y


class ZSKD(Method):
    """Nayak et al. 2019: distil on data impressions made from the teacher alone."""

    name = "zskd"
    Params = ZSKDParams
    needs = frozenset({"logits"})
    teacher_needs = None

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        if teacher is None:
            raise Incompatible("it makes its data from a teacher, and the benchmark has none")
        if teacher.embedding is None or len(teacher.embedding) != 1:
            raise Incompatible("it needs the teacher's final layer, an nn.Linear on a flat "
                               "embedding tap")

    def transfer_set(self, teacher: nn.Module, context: TransferContext) -> TransferSet:
        p: ZSKDParams = self.params
        made, y = cached_impressions(teacher, context, p)
        grid = impression_grid(made.x, made.group, [f"class {k}" for k in
                                                    range(context.info.num_classes)],
                               [f"β={b:g}" for b in p.betas])
        return TransferSet(made.x, y, {"impressions.png": grid})

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        return {"kd": kd_loss(s.logits, t.logits, self.params.T)}
