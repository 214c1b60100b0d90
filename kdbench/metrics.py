"""Evaluation metrics over a whole test split.

A metric sees the student's logits, the labels and, when there is one, the
teacher's logits on the same samples, and returns one number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[Tensor, Tensor, Tensor | None], float]
    higher_is_better: bool = True
    needs_teacher: bool = False

    def __call__(self, logits: Tensor, y: Tensor, teacher_logits: Tensor | None) -> float:
        return self.compute(logits, y, teacher_logits)


@dataclass(frozen=True)
class TopKParams:
    k: int = 1


def top1(params: None = None) -> Metric:
    """Top-1 accuracy: share of samples whose highest logit is the label."""
    return Metric("top1", lambda z, y, _t: (z.argmax(1) == y).float().mean().item())


def topk(params: TopKParams) -> Metric:
    """Top-k accuracy: share of samples whose label is among the k highest logits."""
    k = params.k

    def compute(z: Tensor, y: Tensor, _t: Tensor | None) -> float:
        return (z.topk(min(k, z.shape[1]), dim=1).indices == y[:, None]).any(1).float().mean().item()

    return Metric(f"top{k}", compute)


def agreement(params: None = None) -> Metric:
    """Teacher agreement: share of samples where the student's top class is the teacher's."""

    def compute(z: Tensor, _y: Tensor, t: Tensor | None) -> float:
        if t is None:
            return float("nan")
        return (z.argmax(1) == t.argmax(1)).float().mean().item()

    return Metric("agreement", compute, needs_teacher=True)
