"""Shared plumbing of the feature-map methods: pooling maps to a common size, pairing
stages, and 1×1 connectors, for 1-D ``(N, C, L)``, 2-D ``(N, C, H, W)`` and 3-D maps alike.

Private (the leading underscore keeps the plugin's discovery from looking for methods here).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.errors import Incompatible
from kdbench.taps import TapShapes

CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
"""The convolution for maps with that many spatial axes."""
POOLS = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


def pool_to(f: Tensor, size: tuple[int, ...]) -> Tensor:
    """Feature map ``f`` ``(N, C, *spatial)`` adaptive-average-pooled to ``size``."""
    if tuple(f.shape[2:]) == tuple(size):
        return f
    return POOLS[len(size)](f, size)


def match_sizes(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``a`` and ``b`` pooled to their common smaller spatial size (dimension by dimension)."""
    size = tuple(min(m, n) for m, n in zip(a.shape[2:], b.shape[2:], strict=True))
    return pool_to(a, size), pool_to(b, size)


def paired(student: TapShapes, teacher: TapShapes) -> list[tuple[tuple[int, ...], ...]]:
    """Stage shapes paired from the deepest: a model with more stages loses its shallowest."""
    n = min(len(student.stages), len(teacher.stages))
    return list(zip(student.stages[len(student.stages) - n:],
                    teacher.stages[len(teacher.stages) - n:], strict=True))


def connector(c_in: int, c_out: int, spatial_dims: int, bias: bool = True) -> nn.Module:
    """A 1×1 convolution over maps with ``spatial_dims`` positions axes (0: a linear layer)."""
    if spatial_dims == 0:
        return nn.Linear(c_in, c_out, bias=bias)
    return CONVS[spatial_dims](c_in, c_out, kernel_size=1, bias=bias)


def require_maps(method: str, who: str, shapes: TapShapes) -> None:
    """Raise :class:`Incompatible` unless every stage of ``shapes`` is a feature map."""
    if not shapes.stages:
        raise Incompatible(f"{method} needs stage taps and the {who} names none")
    if not shapes.spatial:
        flat = ", ".join(str(s) for s in shapes.stages)
        raise Incompatible(f"{method} needs feature maps (C, L) or (C, H, W) and the {who}'s "
                           f"stages are flat: {flat}")
