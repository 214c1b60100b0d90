"""Evaluation metrics over a whole split.

A metric sees the model's outputs on every sample of a split and returns one number. Most
read the logits, the labels and, when there is one, the teacher's logits on the same samples:
``compute(student_logits, targets, teacher_logits) -> float``. A metric that reads more
declares it in ``needs`` and is then called with the whole :class:`Outputs`:

``"embedding"``
    the model's embedding tap (its penultimate features) on the split;
``"database"``
    the model's embeddings and labels on the training split (less validation): a retrieval
    metric queries it with the split's embeddings (:mod:`kdbench.retrieval`).

The loop leaves a metric out where its inputs do not exist (agreement without a teacher,
top-1 of a teacher with no logits, retrieval on the training split itself, whose queries
would find themselves), never scoring it on something else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

NEEDS = ("logits", "teacher", "embedding", "database")
"""What a metric may read: ``logits`` (the default), the ``teacher``'s logits, the model's
``embedding`` and the training split as a retrieval ``database``."""


@dataclass(frozen=True)
class Database:
    """The items a retrieval query ranks: embeddings of the training split and their labels."""

    embedding: Tensor
    y: Tensor


@dataclass(frozen=True)
class Outputs:
    """What a metric sees of one model on one split. Absent parts are ``None``."""

    y: Tensor
    logits: Tensor | None = None
    teacher_logits: Tensor | None = None
    embedding: Tensor | None = None
    database: Database | None = None

    def has(self, need: str) -> bool:
        return {"logits": self.logits, "teacher": self.teacher_logits,
                "embedding": self.embedding, "database": self.database}[need] is not None


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[..., float]
    """``(logits, y, teacher_logits) -> float``; ``(outputs) -> float`` when ``needs`` names
    anything beyond ``logits`` and ``teacher``."""
    higher_is_better: bool = True
    needs_teacher: bool = False
    needs: frozenset[str] = frozenset({"logits"})

    def __post_init__(self) -> None:
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"metric {self.name!r} needs {sorted(unknown)}; a metric may "
                             f"need {', '.join(NEEDS)}")
        if self.needs_teacher and "teacher" not in self.needs:
            object.__setattr__(self, "needs", self.needs | {"teacher"})

    @property
    def reads_outputs(self) -> bool:
        """Whether ``compute`` takes the whole :class:`Outputs` (embedding or database)."""
        return bool(self.needs & {"embedding", "database"})

    def __call__(self, logits: Tensor, y: Tensor, teacher_logits: Tensor | None) -> float:
        return self.score(Outputs(y, logits, teacher_logits))

    def applies(self, outputs: Outputs) -> bool:
        """Whether ``outputs`` hold everything this metric reads."""
        return all(outputs.has(need) for need in self.needs if need != "teacher") and (
            "teacher" not in self.needs or outputs.has("teacher"))

    def score(self, outputs: Outputs) -> float:
        if self.reads_outputs:
            return float(self.compute(outputs))
        if "teacher" in self.needs and outputs.teacher_logits is None:
            return float("nan")
        return float(self.compute(outputs.logits, outputs.y, outputs.teacher_logits))


def needs_of(metrics: Any) -> frozenset[str]:
    """Everything the ``metrics`` (an iterable of :class:`Metric`) read together."""
    return frozenset().union(*(m.needs for m in metrics))


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
