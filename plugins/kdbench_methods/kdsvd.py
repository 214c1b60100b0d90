"""KD-SVD: self-supervised knowledge distillation using singular value decomposition.

Lee, Kim and Song (2018), "Self-supervised Knowledge Distillation Using Singular Value
Decomposition", ECCV 2018, arXiv:1807.06819.

Each stage's map, reshaped per sample to a matrix X ∈ R^{HW×C} (positions × channels),
is compressed by a truncated SVD X ≈ U Σ Vᵀ to its k leading right singular vectors
v_1..v_k ∈ R^C, weighted by the teacher's normalised singular values σ̂_κ = σ_κ/‖σ‖₂.
Consecutive stages l − 1 and l are related by a radial basis function over every pair of
channel components,

    G^l_{i,j,κ} = exp(−(σ̂_κ v^l_{κ,i} − σ̂_κ v^{l−1}_{κ,j})² / 8)

and the student matches the teacher's relations:

    L = CE(y, p_S) + β · (1/N) Σ_n Σ_l ‖G_S^l − G_T^l‖²_F

Choices where implementations differ, after the authors' code (sseung0703/SSKD_SVD):

* Reshape: ``(N, C, *spatial)`` → ``(N, HW, C)``, so the singular vectors live in channel
  space (the authors'); a ``(N, C, HW)`` reshape would give spatial vectors instead.
  Student and teacher vectors are compared component by component, so their widths must
  agree: where a student stage is narrower or wider, a 1×1 convolution (no bias, trained
  with the student) maps it to the teacher's width first; equal widths use no connector.
* Sign and order: singular vectors have arbitrary signs and the student's may come in
  another order. For each teacher vector, the student's best-matching vector among its
  k + ``candidates`` leading ones (largest |cosine|) is taken and flipped to agree with
  it; the choice and the flip carry no gradient. The teacher's vectors get a canonical
  sign first (non-negative component sum, i.e. non-negative components for the leading
  vector of a post-ReLU map), so the target does not depend on the SVD routine. The
  authors flip the teacher onto the student instead; RepDistiller flips the student.
* Scale: the authors sum ½·√k·‖·‖² over the batch and clip the distillation gradient of
  each variable to the norm of its cross-entropy gradient, ramped in by sigmoid(epoch − 2).
  The loop optimises one summed loss, so the per-variable clipping cannot be reproduced:
  the loss is averaged over the batch (as RepDistiller) with weight β, and the ramp is kept
  (``ramp``). With β = 1 its gradient on the MNIST-1D CNNs is of the order of the
  cross-entropy's at initialisation, the regime the authors' clipping enforces.
* Gradient: the decomposition runs without autograd; the singular vectors' gradient is the
  exact first-order one, dv_i = Σ_{j≠i} v_j v_jᵀ d(XᵀX) v_i / (σ_i² − σ_j²), with each
  1/gap damped to gap/(gap² + δ²), δ = 10⁻³·σ_1², so repeated singular values (common with
  ReLU maps) give finite gradients instead of NaN. The authors truncate the same sum to
  the 5 leading vectors and zero non-finite values.

The frozen teacher's side (its vectors and weights σ̂) depends on each sample's maps alone:
the loop computes it once per training sample where it caches the teacher's taps (no
augmentation), and once per batch otherwise (``teacher_targets``). Both sides are decomposed
through the smaller of the two Gram matrices rather than by a full SVD.

Stages are paired from the deepest and need at least two pairs; maps may be 1-D or 2-D
(any spatial rank, flattened); flat stages are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.errors import Incompatible
from kdbench.method import LossTerms, Method
from kdbench.params import Around, bounded
from kdbench.taps import Taps, TapShapes
from kdbench_methods._maps import CONVS, paired

GAP_DAMPING = 1e-3
"""δ/σ_1²: singular-value gaps below this fraction of the largest are damped in backward."""

NEGLIGIBLE = 1e-6
"""σ_j/σ_1 below which a wide matrix's singular vector is rounding noise: zero, σ_j = 0."""


def right_singular_vectors(X: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k leading right singular vectors V (N, C, k) and singular values σ (N, k) of the
    matrices X (N, M, C); V's gradient stays finite when singular values repeat.

    X is decomposed through its smaller Gram matrix (:func:`eigenbasis`): one small
    symmetric eigenproblem per sample, a fraction of the cost of the full SVD whose C × C
    basis the gradient would otherwise take. The gradient is the exact first-order one
    (module docstring); for a wide X the part of R^C beyond its M rows has σ = 0, and its
    vectors enter the sum only through their projector I − V Vᵀ.
    """
    c = X.shape[2]
    k = min(k, c)
    V, lam = eigenbasis(X.detach())
    short = max(k - V.shape[2], 0)  # vectors beyond a wide X's M rows: zero, σ = 0
    V_k, lam_k = F.pad(V[..., :k], (0, short)), F.pad(lam[:, :k], (0, short))
    if not X.requires_grad:
        return V_k, lam_k.sqrt()
    G = X.mT @ X
    gap = lam_k[:, None, :] - lam[:, :, None]  # [n, j, i] = σ_i² − σ_j², zero where j = i
    delta = GAP_DAMPING * lam[:, :1, None] + 1e-12
    inv_gap = gap / (gap.pow(2) + delta.pow(2))
    # v_jᵀ (XᵀX) v_i vanishes at X, so dV adds nothing to the value, only the derivative
    GV = G @ V_k
    VtGV = V.mT @ GV
    dV = V @ (VtGV * inv_gap)
    if V.shape[2] < c:  # the rest of R^C, where σ_j = 0: the gap is σ_i²
        dV = dV + (GV - V @ VtGV) * (lam_k / (lam_k.pow(2) + delta[:, 0].pow(2)))[:, None, :]
    return V_k + (dV - dV.detach()), lam_k.sqrt()


@torch.no_grad()
def eigenbasis(X: Tensor) -> tuple[Tensor, Tensor]:
    """Right singular vectors V (N, C, r) of X (N, M, C) and their σ² (N, r), descending,
    from the smaller Gram matrix, in float64 so that squaring X's condition number costs the
    leading vectors no precision: r = C from XᵀX (C × C), whose eigenvectors are V, when
    M ≥ C (a 784 × C matrix of a 28×28 map: a hundred times cheaper than its SVD); r = M
    from XXᵀ (M × M) for a wide X (the short maps of 1-D CNNs), whose eigenvectors u_i give
    v_i = Xᵀu_i / σ_i, zero where σ_i < 10⁻⁶ σ_1 (rounding noise; σ_i is then 0)."""
    m, c = X.shape[1:]
    Xd = X.double()
    if m >= c:
        lam, V = torch.linalg.eigh(Xd.mT @ Xd)
        return V.flip(-1).to(X.dtype), lam.flip(-1).clamp(min=0).to(X.dtype)
    lam, U = torch.linalg.eigh(Xd @ Xd.mT)
    lam, U = lam.flip(-1).clamp(min=0), U.flip(-1)
    kept = lam > NEGLIGIBLE**2 * lam[:, :1]
    lam = lam * kept
    V = Xd.mT @ U / torch.where(kept, lam, 1).sqrt()[:, None, :] * kept[:, None, :]
    return V.to(X.dtype), lam.to(X.dtype)


def canonical_sign(V: Tensor) -> Tensor:
    """V with each column's sign chosen so that its components sum to a non-negative value."""
    return V * torch.where(V.sum(dim=1, keepdim=True) >= 0, 1.0, -1.0).to(V.dtype)


def align(V_s: Tensor, V_t: Tensor) -> Tensor:
    """For each teacher vector (column of V_t), the student's column with the largest
    |cosine| to it, its sign flipped to agree; choice and sign carry no gradient."""
    cosine = (V_s.mT @ V_t).detach()  # (N, k_s, k_t)
    pick = cosine.abs().argmax(dim=1, keepdim=True)  # (N, 1, k_t)
    chosen = V_s.gather(2, pick.expand(-1, V_s.shape[1], -1))
    sign = torch.where(cosine.gather(1, pick) >= 0, 1.0, -1.0).to(V_s.dtype)
    return chosen * sign


def rbf(V_l: Tensor, V_prev: Tensor) -> Tensor:
    """G[n, i, j, κ] = exp(−(V_l[n, i, κ] − V_prev[n, j, κ])² / 8)."""
    return torch.exp(-(V_l[:, :, None, :] - V_prev[:, None, :, :]).pow(2) / 8)


def kdsvd_loss(V_s: list[Tensor], V_t: list[Tensor]) -> Tensor:
    """(1/N) Σ_n Σ_l ‖G_S^l − G_T^l‖²_F over consecutive stages of aligned, weighted
    singular vectors (each (N, C_l, k))."""
    total = V_s[0].new_zeros(())
    for i in range(1, len(V_s)):
        G_s = rbf(V_s[i], V_s[i - 1])
        G_t = rbf(V_t[i], V_t[i - 1])
        total = total + (G_s - G_t).pow(2).sum() / V_s[i].shape[0]
    return total


def as_matrices(f: Tensor) -> Tensor:
    """(N, C, *spatial) → (N, HW, C): positions as rows, channels as columns."""
    return f.flatten(2).mT



@dataclass(frozen=True)
class KDSVDParams:
    beta: float = bounded(1.0, low=0, search=Around(10))
    """Weight β of the distillation term."""
    k: int = bounded(1, low=1)
    """Singular vectors kept per stage (the authors' code: 1)."""
    candidates: int = bounded(1, low=0)
    """Extra student vectors searched by the alignment (the authors decompose k + 1)."""
    ramp: bool = True
    """Ramp the distillation term in by sigmoid(epoch − 2), as the authors' code."""


class KDSVD(Method):
    """Lee et al. 2018: match how the leading singular vectors of consecutive stages relate."""

    name = "kdsvd"
    Params = KDSVDParams
    needs = frozenset({"logits", "stages"})
    teacher_needs = frozenset({"stages"})

    def __init__(self, params: KDSVDParams | None = None) -> None:
        super().__init__(params or KDSVDParams())
        self.connectors: nn.ModuleList | None = None
        self.weight = self._ramp(0)

    def _ramp(self, epoch: int) -> float:
        return 1.0 / (1.0 + math.exp(2.0 - epoch)) if self.params.ramp else 1.0

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        if teacher is None or not teacher.stages or not student.stages:
            raise Incompatible("kdsvd needs the stage taps of both the student and the teacher")
        pairs = paired(student, teacher)
        for s, t in pairs:
            if len(s) < 2 or len(t) < 2 or len(s) - 1 not in CONVS:
                raise Incompatible(
                    f"kdsvd decomposes feature maps, got stage shapes {s} (student) and {t} "
                    "(teacher); flat stages have no positions to decompose")
        if len(pairs) < 2:
            raise Incompatible(
                "kdsvd relates consecutive stages, so it needs at least two stages in both "
                f"models, got {len(student.stages)} (student) and {len(teacher.stages)} "
                "(teacher)")
        if self.params.k < 1 or self.params.candidates < 0:
            raise Incompatible("kdsvd needs k >= 1 and candidates >= 0")

    def build(self, student: TapShapes, teacher: TapShapes | None,
              info: DataInfo) -> nn.Module:
        self.connectors = nn.ModuleList(
            nn.Identity() if s[0] == t[0] else CONVS[len(s) - 1](s[0], t[0], 1, bias=False)
            for s, t in paired(student, teacher))
        return self.connectors

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.weight = self._ramp(epoch)

    def teacher_targets(self, t: Taps) -> dict[str, Tensor]:
        """Per paired stage i of the frozen teacher, sample by sample: its k leading right
        singular vectors ``v{i}`` (N, C, k), canonically signed, and their weights σ̂
        ``w{i}`` (N, 1, k). The loop caches them per sample where the teacher's taps are."""
        n = len(self.connectors)
        targets = {}
        # SVD has no half-precision kernels
        with torch.no_grad(), torch.autocast(t.stages[0].device.type, enabled=False):
            for i, f_t in enumerate(t.stages[-n:]):
                v_t, sigma_t = right_singular_vectors(as_matrices(f_t.float()), self.params.k)
                targets[f"v{i}"] = canonical_sign(v_t)
                targets[f"w{i}"] = F.normalize(sigma_t, dim=1)[:, None, :]
        return targets

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        hp: KDSVDParams = self.params
        targets = t.targets or self.teacher_targets(t)
        V_s, V_t = [], []
        # SVD has no half-precision kernels, and the damped gaps need float32's range
        with torch.autocast(s.logits.device.type, enabled=False):
            stages = s.stages[-len(self.connectors):]
            for i, (r, f_s) in enumerate(zip(self.connectors, stages, strict=True)):
                v_t, w = targets[f"v{i}"], targets[f"w{i}"]
                v_s, _ = right_singular_vectors(as_matrices(r(f_s.float())),
                                                hp.k + hp.candidates)
                V_s.append(align(v_s, v_t) * w)
                V_t.append(v_t * w)
            distill = kdsvd_loss(V_s, V_t)
        return {
            "ce": F.cross_entropy(s.logits, y),
            "kdsvd": hp.beta * self.weight * distill,
        }
