"""A picture of synthetic inputs (ZSKD's data impressions) for MLflow: one row per class,
a few samples per scale; images as images, 1-D signals as curves."""

from __future__ import annotations

import io

import torch
from torch import Tensor


def impression_grid(x: Tensor, group: Tensor, rows: list[str], cols: list[str],
                    per_cell: int = 2) -> bytes:
    """A PNG of the first ``per_cell`` inputs of each group: group ``g`` is row
    ``g // len(cols)``, column block ``g % len(cols)``. ``x`` holds images ``(C, H, W)``
    or ``(H, W)``, or signals ``(C, L)`` or ``(L,)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), len(cols) * per_cell
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.2 * n_cols, 1.2 * n_rows),
                             squeeze=False)
    for r in range(n_rows):
        for c in range(len(cols)):
            members = torch.nonzero(group == r * len(cols) + c).flatten()[:per_cell]
            for j in range(per_cell):
                ax = axes[r][c * per_cell + j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(members):
                    _draw(ax, x[members[j]].detach().float().cpu())
                if r == 0 and j == 0:
                    ax.set_title(cols[c], fontsize=8, loc="left")
            axes[r][0].set_ylabel(rows[r], fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def _draw(ax, sample: Tensor) -> None:
    if sample.dim() == 3 and sample.shape[0] in (1, 3):  # an image (C, H, W)
        image = sample.permute(1, 2, 0).numpy()
        lo, hi = image.min(), image.max()
        image = (image - lo) / (hi - lo if hi > lo else 1.0)
        ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray")
    elif sample.dim() == 2 and sample.shape[0] > 3:  # a single-channel image (H, W)
        ax.imshow(sample.numpy(), cmap="gray")
    else:  # signals: one curve per channel
        for curve in sample.reshape(-1, sample.shape[-1]):
            ax.plot(curve.numpy(), linewidth=0.6)
