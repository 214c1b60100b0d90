"""Teachers: trained once by kdbench, fitted by it, or loaded from elsewhere, then frozen.

A teacher provider is registered under ``kdbench_teachers`` as a class with a
``Params`` dataclass and:

``trains``
    ``True`` when kdbench trains the teacher itself (a ``teacher`` run of the
    sweep, cached by fingerprint); ``False`` when the weights come from
    elsewhere and the teacher run only evaluates it.
``needs_model``
    Whether ``[teacher] model`` (an architecture name) is required.
``fingerprint(spec_fingerprint) -> str``
    The identity of the teacher's weights; raises a clear error for a missing
    checkpoint at planning time.
``load(model, checkpoint) -> nn.Module``
    The teacher, given the freshly built architecture (or ``None``) and the
    checkpoint kdbench wrote for a trained teacher.

Optional:

``needs_data``
    ``load(model, checkpoint, data)`` also gets the dataset as a run sees it (the
    training split less validation): to fit on it, or to size a network by it.
``fits``
    kdbench fits the teacher itself (a :class:`Fitted` provider): the fit is cached
    at ``checkpoint`` (named by the teacher's fingerprint, with the provider's
    ``suffix``), made at planning time and logged with the teacher run.
``describe() -> str``
    The teacher in words, for messages and the leaderboard.

The returned module carries ``taps`` (:class:`kdbench.taps.TapPoints`) like any
model; a teacher that is not a network may lack logits or an embedding, and a
method that reads a missing tap is refused at planning time.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from kdbench.errors import KdbenchError


def freeze(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with gradients off: a teacher never learns from its student."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_state(path: Path, model: nn.Module) -> nn.Module:
    """Load a state dict saved by ``torch.save`` into ``model``, safely (``weights_only``)."""
    if not path.is_file():
        raise KdbenchError(f"teacher checkpoint {path} does not exist: fix [teacher] path, "
                           "or use provider = \"train\" to let kdbench train one")
    stat = path.stat()
    state = _read(str(path), stat.st_mtime_ns, stat.st_size)
    # Training scripts wrap the weights: {"state_dict": ...} (the seeds), {"model": ...}
    # (RepDistiller's released teachers).
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise KdbenchError(f"teacher checkpoint {path} does not fit the architecture: {first}"
                           ) from None
    return model


@functools.lru_cache(maxsize=2)  # two teachers' weights at most (an ImageNet one: 100s of MB)
def _read(path: str, mtime_ns: int, size: int) -> Any:
    """A checkpoint's contents, read once per process while the file is unchanged: every run
    of a sweep loads the same teacher, and the safe unpickler takes a tenth of a second for a
    resnet56 (a quarter of a smoke run). ``load_state_dict`` copies the tensors, so the
    cached ones are never written."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise KdbenchError(f"cannot read teacher checkpoint {path}: {error}") from None


@dataclass(frozen=True)
class NoParams:
    pass


class Trained:
    """A teacher that kdbench trains with ``[teacher.recipe]`` and caches by fingerprint."""

    Params = NoParams
    trains: ClassVar[bool] = True
    needs_model: ClassVar[bool] = True

    def __init__(self, params: NoParams) -> None:
        self.params = params

    def fingerprint(self, spec_fingerprint: str) -> str:
        return spec_fingerprint

    def load(self, model: nn.Module | None, checkpoint: Path | None) -> nn.Module:
        assert model is not None and checkpoint is not None
        return load_state(checkpoint, model)


@dataclass(frozen=True)
class CheckpointParams:
    path: str = ""
    """A file written by ``torch.save(model.state_dict())`` (or a dict holding it under
    ``state_dict`` or ``model``)."""


class Checkpoint:
    """A teacher architecture loaded from a state-dict checkpoint file."""

    Params = CheckpointParams
    trains: ClassVar[bool] = False
    needs_model: ClassVar[bool] = True

    def __init__(self, params: CheckpointParams) -> None:
        if not params.path:
            raise KdbenchError("[teacher] provider \"checkpoint\" needs path = \"...\"")
        self.path = Path(params.path).expanduser()

    def fingerprint(self, spec_fingerprint: str) -> str:
        if not self.path.is_file():
            raise KdbenchError(f"teacher checkpoint {self.path} does not exist: fix [teacher] "
                               "path, or use provider = \"train\" to let kdbench train one")
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return hashlib.sha256(f"{spec_fingerprint}:{digest}".encode()).hexdigest()

    def load(self, model: nn.Module | None, checkpoint: Path | None) -> nn.Module:
        assert model is not None
        return load_state(self.path, model)


class Fitted:
    """A teacher that kdbench fits on the training split (less validation), deterministically,
    and caches by fingerprint like a trained one (a scikit-learn estimator, PCA, ...).

    A subclass sets ``Params`` and implements :meth:`fit`, :meth:`save`, :meth:`restore`
    and :meth:`describe`; ``versions`` names the libraries whose version can change a fit
    (they join the fingerprint, beside the parameters and the provider's code).
    """

    trains: ClassVar[bool] = False
    fits: ClassVar[bool] = True
    needs_data: ClassVar[bool] = True
    needs_model: ClassVar[bool] = False
    suffix: ClassVar[str] = ".pt"
    versions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Any) -> None:
        self.params = params

    def fingerprint(self, spec_fingerprint: str) -> str:
        from importlib.metadata import version

        libraries = ",".join(f"{name}={version(name)}" for name in self.versions)
        return hashlib.sha256(f"{spec_fingerprint}:{libraries}".encode()).hexdigest()

    def load(self, model: nn.Module | None, checkpoint: Path | None, data: Any) -> nn.Module:
        """The fitted teacher: read from ``checkpoint`` when a run already fitted it, else
        fitted on ``data``'s training split and written there (atomically)."""
        if checkpoint is not None and checkpoint.is_file():
            return self.restore(checkpoint, data)
        fitted = self.fit(data)
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            tmp = checkpoint.with_name(f"{checkpoint.name}.{os.getpid()}.tmp")
            self.save(fitted, tmp)
            tmp.replace(checkpoint)
        return fitted

    def fit(self, data: Any) -> nn.Module:
        raise NotImplementedError

    def save(self, teacher: nn.Module, path: Path) -> None:
        raise NotImplementedError

    def restore(self, path: Path, data: Any) -> nn.Module:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__
