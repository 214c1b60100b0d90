"""The method contract, checked where it breaks.

A method's ``loss`` (and each :class:`~kdbench.method.Stage`'s) must return a
dict of named, finite, floating-point scalar tensors that the loop can sum and
backpropagate. A method that returns something else would otherwise fail deep
inside torch ("values expected sparse tensor layout"), and a non-finite loss
would be reported as divergence even when it is a bug. This module turns both
into one line that names the method, what it did and what to do about it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from kdbench.errors import Diverged, KdbenchError
from kdbench.taps import TAP_NAMES, Tapped, Taps, TapShapes

if TYPE_CHECKING:
    from kdbench.data import DataInfo
    from kdbench.method import Method

EXPECTED = "a dict of named scalar tensors, e.g. {'ce': ..., 'kd': ...}"

# Typical ways a loss computes a non-finite value or gradient from finite inputs.
BUG_CAUSES = "log of 0, 0/0, sqrt or norm at 0, exp overflow"


class BrokenMethod(KdbenchError):
    """A method's loss broke the contract of :mod:`kdbench.method`: a bug in the method."""


@dataclass(frozen=True)
class Step:
    """Where the loop is: ``phase`` (a stage's name or ``train``), 1-based ``epoch`` of
    ``epochs`` and ``batch`` of ``batches``, and the optimiser ``updates`` made so far in
    the run (0 means the parameters are still the initial ones)."""

    phase: str
    epoch: int
    epochs: int
    batch: int
    batches: int
    updates: int

    def __str__(self) -> str:
        return (f"phase {self.phase!r}, epoch {self.epoch} of {self.epochs}, step {self.batch} "
                f"of {self.batches}")


def check_terms(terms: Any, who: str) -> dict[str, Tensor]:
    """``terms`` if it is a non-empty dict of named floating-point scalar tensors.

    ``who`` names the loss in the message (``method 'kd' (plugin ...): its loss``).
    Raises :class:`BrokenMethod` naming what was returned and what is expected.
    """
    if not isinstance(terms, dict):
        raise BrokenMethod(f"{who} returned {_describe(terms)}; expected {EXPECTED}")
    if not terms:
        raise BrokenMethod(f"{who} returned an empty dict; expected {EXPECTED}")
    for key, value in terms.items():
        if not isinstance(key, str):
            raise BrokenMethod(f"{who} returned a dict with key {key!r} ({type(key).__name__}); "
                               f"expected {EXPECTED}")
        if not isinstance(value, Tensor):
            raise BrokenMethod(f"{who} returned term {key!r} as {_describe(value)}; expected "
                               f"{EXPECTED} (compute each term with torch so it backpropagates)")
        if value.numel() != 1:
            raise BrokenMethod(f"{who} returned term {key!r} as {_describe(value)}; expected "
                               f"{EXPECTED} (reduce each term to a scalar, e.g. with .mean())")
        if not value.is_floating_point():
            raise BrokenMethod(f"{who} returned term {key!r} as {_describe(value)}; expected "
                               f"{EXPECTED} of a floating-point dtype")
    return terms


def check_total(total: Tensor, terms: dict[str, Tensor], who: str) -> None:
    """The summed loss must reach some trained parameter, or there is nothing to train."""
    if not total.requires_grad:
        raise BrokenMethod(
            f"{who} returned no term that depends on a trained parameter "
            f"({', '.join(map(repr, terms))}: detached or constant); at least one term must be "
            "computed from the student's taps or the method's modules")


def non_finite_loss(terms: dict[str, float], method: str, step: Step,
                    outputs_finite: bool = True) -> Diverged:
    """The error for a non-finite loss: which terms, where, and whether it looks like a bug
    in the loss or like divergence.

    Before the first update the parameters are the initial ones, so a non-finite term
    cannot be divergence. After updates, non-finite network outputs (the student's taps, a
    peer teacher's: ``outputs_finite`` false) mean the parameters blew up: divergence.
    Finite outputs with a non-finite term point at the term's computation.
    """
    bad = {k: v for k, v in terms.items() if not math.isfinite(v)}
    fine = [k for k in terms if k not in bad]
    what = ", ".join(f"{k!r} = {v}" for k, v in bad.items())
    others = f" (finite: {', '.join(map(repr, fine))})" if fine else ""
    head = f"{method} gave non-finite loss term {what}{others} in {step}"
    if step.updates == 0:
        hint = (f"before any update, so not divergence but a bug in the loss ({BUG_CAUSES}); "
                "check how the named term is computed")
    elif not outputs_finite:
        hint = (f"training diverged at epoch {step.epoch} (the network's outputs are "
                f"non-finite too, after {step.updates} updates); lower the learning rate or "
                "the method's loss weights")
    else:
        hint = (f"the network's outputs are finite, so the named term's computation produced "
                f"it: likely a numerical bug in the loss ({BUG_CAUSES}); guard it with an "
                "epsilon or a clamp")
    return Diverged(f"{head}: {hint}")


def non_finite_gradient(method: str, step: Step) -> Diverged:
    """The error for a finite loss whose gradient is not: a bug in the loss's backward."""
    return Diverged(
        f"{method} gave a finite loss with a non-finite gradient in {step} (after {step.updates} "
        f"updates): its backward is undefined somewhere ({BUG_CAUSES}; acos or asin at ±1); "
        "guard the term with an epsilon or a clamp")


def gradient_sum(parameters: Iterable[torch.nn.Parameter]) -> Tensor | None:
    """The float64 sum of every gradient (``None``: no gradient), on their device.

    A float64 sum is non-finite exactly when an element is (float32 values cannot
    overflow it), and costs one pass per tensor: about 3% of a step of the smallest
    student, against 7% for an element-wise test.
    """
    sums = [p.grad.sum(dtype=torch.float64) for p in parameters if p.grad is not None]
    return torch.stack(sums).sum() if sums else None


def absent_teacher_tap(error: BaseException) -> str | None:
    """The tap a loss read from ``t = None``, or ``None`` when ``error`` is anything else.

    ``t`` is ``None`` exactly when a method declares no teacher taps: ``teacher_needs``
    defaults to the empty set (the baseline's "no teacher"), so a method that reads
    ``t.logits`` without setting it fails on its first step with an ``AttributeError`` on
    ``None``, which this recognises by its ``name`` and ``obj``.
    """
    if isinstance(error, AttributeError) and error.obj is None and error.name in TAP_NAMES:
        return error.name
    return None


def undeclared_teacher(who: str, tap: str) -> BrokenMethod:
    """The error for a loss that reads the teacher's ``tap`` while declaring no teacher."""
    return BrokenMethod(
        f"{who} reads the teacher's {tap!r} tap (t.{tap}) but declares no teacher: "
        "Method.teacher_needs defaults to an empty set (no teacher), so its loss gets t = None; "
        "set teacher_needs = None (the same taps as `needs`) or the taps it reads, e.g. "
        f"teacher_needs = frozenset({{{tap!r}}})")


def check_teacher_declared(method: Method, student: torch.nn.Module, x: Tensor, y: Tensor,
                           student_shapes: TapShapes, teacher_shapes: TapShapes | None,
                           info: DataInfo, who: str) -> None:
    """Raise :func:`undeclared_teacher` if ``method`` declares no teacher and its loss (or a
    warm-up stage that trains the student) reads one.

    Called at planning time for such methods only (a method that declares teacher taps gets
    them): the loss runs once on the batch ``x``, ``y`` with ``t = None``, as the loop would
    call it. Any other failure is left to the run, which reports it in full."""
    if method.uses_teacher() or method.trains_teacher:
        return
    was_training = student.training
    student.eval()
    tapped = None
    try:
        with torch.no_grad():
            try:
                tapped = Tapped(student, method.needs)
                method.build(student_shapes, teacher_shapes, info)
                method.start_epoch(0, 1)
                s = tapped(x)
                losses = [method.loss, *(stage.loss for stage in method.stages()
                                         if stage.trains_student)]
            except Exception:  # the run itself reports a method that fails to build
                return
            idx = torch.arange(len(y), device=y.device)
            for loss in losses:
                try:
                    loss(s, None, y, idx)
                except AttributeError as error:
                    tap = absent_teacher_tap(error)
                    if tap is not None:
                        raise undeclared_teacher(who, tap) from None
                except Exception:  # any other failure: the run reports it in full
                    pass
    finally:
        if tapped is not None:
            tapped.remove()
        student.train(was_training)


def outputs_sum(outputs: Iterable[Taps | None]) -> Tensor | None:
    """The float64 sum of every floating-point tap of ``outputs`` (``None``: none): finite
    exactly when every tap is."""
    sums = [t.detach().sum(dtype=torch.float64) for taps in outputs if taps is not None
            for t in (taps.logits, taps.embedding, *taps.stages)
            if t is not None and t.is_floating_point()]
    return torch.stack(sums).sum() if sums else None


class StepLog:
    """One epoch's steps as the loop checks them, without making the host wait for the
    device at every step: on an asynchronous device (a GPU) each step's loss terms, summed
    loss, gradient sum and outputs' sum stay there until :meth:`read`, once per epoch (or
    when an error interrupts it); on the CPU, where reading a value costs no wait, they are
    read at once, as floats, and a single run stops at its first non-finite step. The
    first step with a non-finite loss or gradient raises the error that step would have
    raised at once; where it is read later, the steps after it trained on non-finite
    values, which changes nothing for a run that fails.

    ``runs``: the steps of that many stacked runs at once (every value has a leading run
    dimension, :mod:`kdbench.batched`), read run by run. ``defer``: keep the values on
    their device even on the CPU (the tests' way to the GPU's path).
    """

    def __init__(self, method: str, phase: str, epoch: int, epochs: int, batches: int,
                 runs: int | None = None, defer: bool = False) -> None:
        self.method = method
        self.where = (phase, epoch, epochs, batches)
        self.shape = () if runs is None else (runs,)
        self.defer = defer
        self._on_device: list[Tensor] = []
        self._rows: list[list[Any]] = []
        self._steps: list[tuple[tuple[str, ...], int, int]] = []

    def add(self, terms: dict[str, Tensor], total: Tensor, batch: int, updates: int,
            gradients: Tensor | None, outputs: Callable[[], Tensor | None] | None = None
            ) -> None:
        """Step ``batch`` (1-based), taken after ``updates`` optimiser updates; ``gradients``
        from :func:`gradient_sum`; ``outputs`` gives :func:`outputs_sum`, asked for on the
        CPU only where the loss is not finite."""
        self._steps.append((tuple(terms), batch, updates))
        if total.device.type == "cpu" and not self.defer:
            row = [v.detach().tolist() for v in (*terms.values(), total)]
            row.append(0.0 if gradients is None else gradients.tolist())
            finite = _finite(row[-2:])
            out = outputs() if outputs is not None and not finite else None
            row.append(0.0 if out is None else out.tolist())  # 0.0: not needed, not asked
            self._rows.append(row)
            if not finite and not self.shape:
                self.read()  # nothing to wait for: one run stops at once
            return
        zero = total.new_zeros(self.shape, dtype=torch.float64)
        out = outputs() if outputs is not None else None
        self._on_device.append(torch.stack(
            [*(v.detach().double().reshape(self.shape) for v in terms.values()),
             total.detach().double().reshape(self.shape),
             zero if gradients is None else gradients, zero if out is None else out]))

    def read(self, run: int | None = None) -> list[dict[str, float]]:
        """Each step's loss terms (of run ``run``), as floats; raises the error of the
        first step whose loss or gradient is not finite. One synchronisation in all."""
        if self._on_device:
            values, at = torch.cat(self._on_device).tolist(), 0
            for names, _, _ in self._steps[len(self._rows):]:
                self._rows.append(values[at:at + len(names) + 3])
                at += len(names) + 3
            self._on_device = []
        rows = []
        phase, epoch, epochs, batches = self.where
        for (names, batch, updates), row in zip(self._steps, self._rows, strict=True):
            *values, total, gradients, outputs = [_scalar(v, run) for v in row]
            terms = dict(zip(names, values, strict=True))
            if not math.isfinite(total) or not math.isfinite(gradients):
                step = Step(phase, epoch, epochs, batch, batches, updates)
                if not math.isfinite(total):
                    raise non_finite_loss(terms, self.method, step, math.isfinite(outputs))
                raise non_finite_gradient(self.method, step)
            rows.append(terms)
        return rows


def _finite(values: Any) -> bool:
    """Whether a float, or every float of a nested list, is finite."""
    if isinstance(values, list):
        return all(_finite(v) for v in values)
    return math.isfinite(values)


def _scalar(value: Any, run: int | None) -> float:
    """One step's value: a float, a term of shape (1,), or one per run of a stack."""
    if isinstance(value, list) and run is not None:
        value = value[run]
    while isinstance(value, list):
        value = value[0]
    return value


def _describe(value: Any) -> str:
    """A value in words: its type, and a tensor's shape and dtype."""
    if isinstance(value, Tensor):
        kind = "a scalar tensor" if value.dim() == 0 else f"a tensor of shape {tuple(value.shape)}"
        return f"{kind} ({str(value.dtype).removeprefix('torch.')})"
    if value is None:
        return "None"
    if isinstance(value, list | tuple):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, int | float):
        return f"a {type(value).__name__} ({value!r})"
    return f"a {type(value).__name__}"
