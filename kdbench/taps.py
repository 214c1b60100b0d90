"""Named features of a model for methods to read: logits, embedding, stages.

A model plugin names its taps with a :class:`TapPoints` attribute ``taps``:
the module whose output is the embedding (the penultimate features) and the
modules whose outputs end each resolution stage. :class:`Tapped` wraps the
model with forward hooks so one forward pass returns every tap a method needs,
for 1-D maps ``(N, C, L)``, 2-D maps ``(N, C, H, W)`` and flat features alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from kdbench.errors import PluginError

TAP_NAMES = ("logits", "embedding", "stages")


@dataclass(frozen=True)
class TapPoints:
    """Where a model's taps are: dotted module names as in ``model.named_modules()``."""

    embedding: str | None
    stages: tuple[str, ...] = ()
    logits: bool = True
    """Whether the model's forward returns logits (a fixed feature extractor's does not)."""

    def available(self) -> frozenset[str]:
        """The taps the model has."""
        return frozenset(name for name, has in (("logits", self.logits),
                                                ("embedding", self.embedding is not None),
                                                ("stages", bool(self.stages))) if has)


@dataclass
class Taps:
    """The taps of one forward pass. Absent taps are ``None`` (no stages: an empty list).

    ``targets``: what the method derives from a frozen teacher's taps, sample by sample
    (:meth:`kdbench.method.Method.teacher_targets`), filled in by the loop; empty otherwise.
    """

    logits: Tensor | None
    embedding: Tensor | None = None
    stages: list[Tensor] = field(default_factory=list)
    targets: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class TapShapes:
    """Per-sample shapes of a model's taps (the batch dimension left out)."""

    logits: tuple[int, ...] | None
    embedding: tuple[int, ...] | None
    stages: tuple[tuple[int, ...], ...]

    @property
    def spatial(self) -> bool:
        """Whether the stages are feature maps ``(C, L)`` or ``(C, H, W)``, not flat vectors."""
        return bool(self.stages) and all(len(s) >= 2 for s in self.stages)


class Tapped(nn.Module):
    """``model`` whose forward returns :class:`Taps` with the taps in ``needs``."""

    def __init__(self, model: nn.Module, needs: frozenset[str] | set[str]) -> None:
        super().__init__()
        unknown = set(needs) - set(TAP_NAMES)
        if unknown:
            raise PluginError(f"unknown taps {sorted(unknown)}; taps are {', '.join(TAP_NAMES)}")
        self.model = model
        self.needs = frozenset(needs)
        self._seen: dict[str, Tensor] = {}
        points = tap_points(model)
        modules = dict(model.named_modules())
        # No stages is an empty list, as it always was; a missing tensor tap cannot be faked.
        missing = (self.needs - {"stages"}) - points.available()
        if missing:
            raise PluginError(f"{type(model).__name__} has no {' or '.join(sorted(missing))} "
                              "tap")
        wanted: list[str] = []
        if "embedding" in self.needs:
            wanted.append(points.embedding)
        if "stages" in self.needs:
            wanted.extend(points.stages)
        self._handles = []
        for name in dict.fromkeys(wanted):
            if name not in modules:
                raise PluginError(
                    f"{type(model).__name__} names tap {name!r}, which is not one of its modules"
                )
            self._handles.append(modules[name].register_forward_hook(self._keeper(name)))
        self._points = points

    def _keeper(self, name: str):
        def keep(_module: nn.Module, _inputs: object, output: Tensor) -> None:
            self._seen[name] = output

        return keep

    def forward(self, x: Tensor) -> Taps:
        self._seen = {}
        logits = self.model(x)
        taps = Taps(logits=logits if self._points.logits else None)
        if "embedding" in self.needs:
            taps.embedding = self._seen[self._points.embedding].flatten(1)
        if "stages" in self.needs:
            taps.stages = [self._seen[name] for name in self._points.stages]
        self._seen = {}
        return taps

    def remove(self) -> None:
        """Take the hooks off the wrapped model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def tap_points(model: nn.Module) -> TapPoints:
    points = getattr(model, "taps", None)
    if not isinstance(points, TapPoints):
        raise PluginError(
            f"model {type(model).__name__} has no `taps` attribute (a kdbench.taps.TapPoints); "
            "model plugins must name their embedding and stage modules"
        )
    return points


@torch.no_grad()
def shapes(model: nn.Module, sample: Tensor) -> TapShapes:
    """The shapes of every tap of ``model`` on a batch like ``sample``."""
    was_training = model.training
    model.eval()
    tapped = Tapped(model, tap_points(model).available())
    try:
        taps = tapped(sample[:2])
    finally:
        tapped.remove()
        model.train(was_training)
    return TapShapes(
        logits=tuple(taps.logits.shape[1:]) if taps.logits is not None else None,
        embedding=tuple(taps.embedding.shape[1:]) if taps.embedding is not None else None,
        stages=tuple(tuple(s.shape[1:]) for s in taps.stages),
    )
