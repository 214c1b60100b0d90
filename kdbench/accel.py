"""How a run uses its device: bf16 autocast, channels-last convolutions, ``torch.compile``.

Each is off by default and set per command (``--amp bf16``, ``--channels-last``,
``--compile``). All three can change a run's numbers (bf16 rounds activations;
channels-last and compiled kernels sum in other orders), so :class:`Accel` is part of
every run's fingerprint, like the device and the thread count: runs made with other
settings are never reused for these.

Under ``amp = "bf16"`` the networks' forward passes run in ``torch.autocast`` with
bfloat16; their taps (logits, embeddings, maps) are cast back to float32 before the
method's loss, which runs, with its own modules, in float32: softmax at a temperature,
KL divergences and contrastive losses lose too much in 8 bits of mantissa. Evaluation runs
in float32. No gradient scaler is needed: bfloat16 has float32's range.
"""

from __future__ import annotations

import importlib.util
import shutil
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from kdbench.errors import KdbenchError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from kdbench.taps import Taps

COMPILE_BACKEND = "inductor"
"""The ``torch.compile`` backend of ``--compile`` (tests use ``aot_eager``: no C compiler
run, the same graph capture)."""


@dataclass(frozen=True)
class Accel:
    """The device settings of a run (:mod:`kdbench.accel`)."""

    amp: Literal["off", "bf16"] = "off"
    """``bf16``: forward passes under bfloat16 autocast; losses in float32."""
    channels_last: bool = False
    """Convolution weights and image batches in channels-last (NHWC) memory order."""
    compile: bool = False
    """The student and teacher compiled with ``torch.compile`` (the first steps pay for it)."""

    def describe(self) -> str:
        on = [f"amp {self.amp}"] if self.amp != "off" else []
        on += ["channels-last"] * self.channels_last + ["compile"] * self.compile
        return ", ".join(on) or "fp32"


def configured(device: str, amp: str = "off", channels_last: bool = False,
               compile: bool = False) -> Accel:
    """The :class:`Accel` of the command-line flags, refused where ``device`` cannot run it."""
    if amp not in ("off", "bf16"):
        raise KdbenchError(f"--amp must be off or bf16, got {amp!r}")
    if compile:
        check_compile(device)
    return Accel(amp, channels_last, compile)  # type: ignore[arg-type]


def check_compile(device: str) -> None:
    """Refuse ``--compile`` where ``torch.compile``'s default backend cannot build kernels:
    on CPU it compiles C++ (needs a C++ compiler), on CUDA it writes Triton kernels."""
    if COMPILE_BACKEND != "inductor":
        return
    if device.startswith("cuda"):
        if importlib.util.find_spec("triton") is None:
            raise KdbenchError("--compile on CUDA needs the triton package (pip install "
                               "triton, or a torch build that ships it); or leave out --compile")
    elif not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        raise KdbenchError("--compile on CPU needs a C++ compiler on PATH (g++ or clang++) "
                           "for torch.compile's kernels; install one or leave out --compile")


def autocast(accel: Accel, device: torch.device) -> AbstractContextManager[Any]:
    """The forward passes' autocast context (a no-op unless ``amp = "bf16"``)."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=accel.amp == "bf16")


def prepare(model: nn.Module, accel: Accel) -> nn.Module:
    """``model`` in channels-last order and compiled, as ``accel`` says (in place: its
    modules keep their names, so taps still find them)."""
    import torch

    if accel.channels_last:
        model.to(memory_format=torch.channels_last)
    if accel.compile:
        model.compile(backend=COMPILE_BACKEND)
    return model


def batch(x: torch.Tensor, accel: Accel) -> torch.Tensor:
    """An input batch in the memory order the convolutions expect."""
    import torch

    if accel.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def fp32(taps: Taps | None) -> Taps | None:
    """``taps`` with every tensor in float32 (autocast's bfloat16 ones cast, the graph
    kept), for the method's loss."""
    import torch

    from kdbench.taps import Taps

    if taps is None:
        return None

    def up(t: torch.Tensor | None) -> torch.Tensor | None:
        return t.float() if t is not None and t.is_floating_point() and \
            t.dtype != torch.float32 else t

    return Taps(up(taps.logits), up(taps.embedding), [up(s) for s in taps.stages],
                {k: up(v) for k, v in taps.targets.items()})
