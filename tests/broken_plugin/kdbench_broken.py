"""Methods that break the contract of :mod:`kdbench.method`, one way each (and one probe).

A third party's plugin as kdbench's tests install it (``pip install --target``):
each method is what a plugin author could plausibly get wrong.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import kdbench
from kdbench.method import Method, Stage


class ReturnsTensor(Method):
    """Returns the loss itself instead of a dict of its terms."""

    name = "returns-tensor"

    def loss(self, s, t, y, idx):
        return F.cross_entropy(s.logits, y)


class ReturnsPerSample(Method):
    """Forgets to reduce a term over the batch."""

    name = "returns-per-sample"

    def loss(self, s, t, y, idx):
        return {"ce": F.cross_entropy(s.logits, y, reduction="none")}


class ReturnsFloat(Method):
    """Returns a term as a Python number."""

    name = "returns-float"

    def loss(self, s, t, y, idx):
        return {"ce": F.cross_entropy(s.logits, y), "kd": 0.5}


class Detached(Method):
    """Detaches every term: nothing to train."""

    name = "detached"

    def loss(self, s, t, y, idx):
        return {"ce": F.cross_entropy(s.logits, y).detach()}


class StageReturnsList(Method):
    """A warm-up stage whose loss returns a list."""

    name = "stage-returns-list"

    def stages(self):
        return [Stage("warmup", 1, self.warmup)]

    def warmup(self, s, t, y, idx):
        return [F.cross_entropy(s.logits, y)]


class NanAtStart(Method):
    """A term that is 0/0 from the first batch on."""

    name = "nan-at-start"

    def loss(self, s, t, y, idx):
        return {"ce": F.cross_entropy(s.logits, y), "ratio": (s.logits * 0).sum() / 0.0}


@dataclass(frozen=True)
class LateParams:
    step: int = 7
    """The call of ``loss`` (1-based, over the run) from which the term is NaN."""


class NanLate(Method):
    """A term that turns NaN at a given step while the network stays finite."""

    name = "nan-late"
    Params = LateParams

    def __init__(self, params=None):
        super().__init__(params)
        self.calls = 0

    def loss(self, s, t, y, idx):
        self.calls += 1
        broken = float("nan") if self.calls >= self.params.step else 0.0
        return {"ce": F.cross_entropy(s.logits, y), "bad": s.logits.mean() * 0 + broken}


class NanGradient(Method):
    """A finite term whose gradient is not: the square root of a distance at 0."""

    name = "nan-gradient"

    def loss(self, s, t, y, idx):
        distance = torch.sqrt(((s.logits - s.logits.detach()) ** 2).sum())
        return {"ce": F.cross_entropy(s.logits, y), "distance": distance}


class WrongCall(Method):
    """Calls torch with mismatched shapes: an error raised inside torch."""

    name = "wrong-call"

    def loss(self, s, t, y, idx):
        return {"ce": F.cross_entropy(s.logits, y[:5])}


class ReportsThreads(Method):
    """Not broken: logs the torch threads it trains with as a (constant) loss term."""

    name = "reports-threads"

    def loss(self, s, t, y, idx):
        return {"ce": F.cross_entropy(s.logits, y),
                "threads": torch.tensor(float(torch.get_num_threads()))}


METHODS = [ReturnsTensor, ReturnsPerSample, ReturnsFloat, Detached, StageReturnsList,
           NanAtStart, NanLate, NanGradient, WrongCall, ReportsThreads]


@kdbench.hookimpl
def kdbench_methods(register):
    for method in METHODS:
        register(method.name, method)
