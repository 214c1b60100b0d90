"""What a distillation method is: the taps it reads, the modules it adds, the loss it computes.

The training loop (``kdbench.train``) owns everything else: data order,
optimiser, schedule, evaluation, logging. A method subclasses :class:`Method`
and overrides what its paper changes::

    class KD(Method):
        '''Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".'''
        name = "kd"
        Params = KDParams          # a dataclass with the paper's defaults
        needs = frozenset({"logits"})

        def loss(self, s, t, y, idx):
            return {"ce": ..., "kd": ...}

:class:`Method` itself is the baseline: the student trained alone with
cross-entropy.

A data-free method (ZSKD's data impressions) also overrides :meth:`Method.transfer_set`: the
run then trains on the inputs it returns instead of the benchmark's training split, which is
sealed for the whole run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from kdbench.data import DataInfo
from kdbench.taps import Taps, TapShapes

LossTerms = dict[str, Tensor]
"""Named loss terms; the loop sums them, backpropagates the sum and logs each.

Each term is a floating-point scalar tensor, and at least one depends on a trained
parameter. The loop checks this at every step (:mod:`kdbench.contract`): anything else,
or a non-finite term or gradient, fails the run with a message naming the method, the
term, the phase, the epoch and the step (finiteness is read at the end of each epoch, so
that no step waits for the device)."""


@dataclass(frozen=True)
class Stage:
    """A warm-up phase that runs before the main training (FitNet's hint stage, AB's
    initialisation). It trains every parameter that ``loss`` reaches (student and the
    method's modules) with the recipe's optimiser at a constant learning rate, and is
    logged as its own phase.

    A stage that trains only the method's own modules (FT's paraphraser) sets
    ``trains_student = False``: the loop then skips the student's forward pass, hands
    ``loss`` ``None`` for the student's taps, and does not count the stage against the
    student's epochs (see ``Recipe.stage_budget``)."""

    name: str
    epochs: int
    loss: Callable[[Taps | None, Taps | None, Tensor, Tensor], LossTerms]
    trains_student: bool = True


@dataclass(frozen=True)
class TransferContext:
    """What :meth:`Method.transfer_set` may use besides the frozen teacher: never data.

    ``info``
        The input shape and number of classes of the benchmark's data (``num_train`` is the
        size of the real training split, which the run does not read).
    ``teacher_id``
        The fingerprint of the teacher's weights: a cache of transfer sets is keyed by it.
    ``cache_dir``
        A directory for this method's cached transfer sets, shared by every run of every
        sweep that uses the same cache (``--cache-dir``). Created on demand by the method.
    ``device``
        Where the teacher is; the transfer set may be made there.
    """

    info: DataInfo
    teacher_id: str
    cache_dir: Path
    device: str = "cpu"


@dataclass
class TransferSet:
    """The inputs a data-free method trains its student on.

    ``x`` has the data's per-sample shape (``info.input_shape``). ``y`` holds class indices,
    one per input (ZSKD: the teacher's argmax): the labels ``loss`` receives and the ones
    the run's ``train.<metric>`` values are measured against. ``artifacts``: files the run
    logs to MLflow (name -> bytes, e.g. ``impressions.png``); the worker returns them with
    its result and the driver writes them.
    """

    x: Tensor
    y: Tensor
    artifacts: dict[str, bytes] = field(default_factory=dict)


class Method:
    """The student baseline: cross-entropy on the labels, no teacher.

    Class attributes a method sets:

    ``name``
        The name benchmark files use.
    ``Params``
        A dataclass of hyperparameters whose defaults are the paper's.
    ``needs``
        The student taps ``loss`` reads: any of ``logits``, ``embedding``,
        ``stages``.
    ``teacher_needs``
        The teacher taps ``loss`` reads; ``None`` means the same as ``needs``,
        an empty set means the method uses no teacher.
    ``trains_teacher``
        The teacher is a peer trained from scratch together with the student
        (mutual learning): the loop initialises the teacher architecture, hands
        its taps to ``loss`` with gradients, and optimises its parameters too.
    ``batchable``
        ``loss`` is a pure function of its tensors (no ``.item()``, no branch on values, no
        state updated in place), so several seeds can train as one stacked model under
        :func:`torch.func.vmap` (:mod:`kdbench.batched`). Off unless a method declares it.
    """

    name: ClassVar[str] = "baseline"
    Params: ClassVar[type | None] = None
    needs: ClassVar[frozenset[str]] = frozenset({"logits"})
    teacher_needs: ClassVar[frozenset[str] | None] = frozenset()
    trains_teacher: ClassVar[bool] = False
    batchable: ClassVar[bool] = False

    def __init__(self, params: Any = None) -> None:
        self.params = params

    @classmethod
    def teacher_taps(cls) -> frozenset[str]:
        return cls.needs if cls.teacher_needs is None else cls.teacher_needs

    @classmethod
    def uses_teacher(cls) -> bool:
        return bool(cls.teacher_taps())

    def check(self, student: TapShapes, teacher: TapShapes | None) -> None:
        """Raise :class:`kdbench.errors.Incompatible` if this method cannot work on
        these models. Called at planning time, before any training."""

    def build(self, student: TapShapes, teacher: TapShapes | None,
              info: DataInfo) -> nn.Module | None:
        """Extra trainable modules (connectors, regressors, embeddings), built from the tap
        shapes. The method keeps a reference for ``loss``; the loop trains them with the
        student and drops them after training (they are not part of the student's size)."""
        return None

    def stages(self) -> list[Stage]:
        """Warm-up stages, run in order before the main training."""
        return []

    def transfer_set(self, teacher: nn.Module, context: TransferContext) -> TransferSet:
        """Optional: the data the student trains on, made from the frozen ``teacher`` alone.

        A method that overrides this is data-free. The loop seals the run's real training
        split before anything reads it (any use raises) and trains on the returned
        :class:`TransferSet` instead, with the teacher's taps computed on it as on real data.
        The protocol is unchanged: validation scores every epoch, the test split is read once.
        The recipe then counts the transfer set: ``epochs`` are passes over it and
        ``batch_size`` batches of it, so the number of optimiser steps (and a schedule's
        length) follows its size, not the real split's; the dataset's augmentation, if any,
        applies to its inputs. ``train.<metric>`` is measured on it, against ``y``.

        Called once per run, after the teacher is loaded; the method should cache what does
        not depend on the run's seed (under ``context.cache_dir``, keyed by
        ``context.teacher_id`` and its parameters). Needs a frozen teacher: a method cannot
        both make a transfer set and train its teacher (``trains_teacher``)."""
        raise NotImplementedError

    @classmethod
    def makes_transfer_set(cls) -> bool:
        """Whether the method trains on its own :meth:`transfer_set` (it overrides it)."""
        return cls.transfer_set is not Method.transfer_set

    def teacher_targets(self, t: Taps) -> dict[str, Tensor]:
        """Optional: tensors ``loss`` needs that depend on the frozen teacher's taps alone,
        each sample's rows on that sample's taps only (KD-SVD's singular vectors).

        The loop computes them without gradient and hands them to ``loss`` as
        ``t.targets``: once per training sample where it caches the teacher's taps (no
        augmentation), once per batch otherwise, instead of every epoch. Called after
        :meth:`build`. ``loss`` computes them itself when ``t.targets`` is empty (a caller
        that hands it plain taps)."""
        return {}

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each epoch of the main training (0-based), for schedules such as
        DKD's warm-up."""

    def loss(self, s: Taps, t: Taps | None, y: Tensor, idx: Tensor) -> LossTerms:
        """Loss terms for one batch: ``s`` and ``t`` are the student's and teacher's taps,
        ``y`` the labels and ``idx`` the samples' indices in the training set."""
        return {"ce": F.cross_entropy(s.logits, y)}
