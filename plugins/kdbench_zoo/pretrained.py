"""A torchvision architecture with weights from a file on disk, as a frozen teacher.

``torchvision.models.get_model(name, num_classes=...)`` builds the network (no download:
``weights`` is never passed), and the state dict in ``path`` is loaded safely
(``torch.load(weights_only=True)``, as the ``checkpoint`` provider does). Its taps: the
logits; the embedding is the input of its last ``nn.Linear`` (the pooled features of a
ResNet, the penultimate layer of a VGG's classifier); its stages are ``layer1`` to
``layer4`` where the network has them (ResNets), else none. A one-channel image is
repeated to the three channels the network's first convolution expects.

    [teacher]
    provider = "torchvision"
    name = "resnet18"
    path = "resnet18-cifar10.pt"
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from torch import Tensor, nn

from kdbench.data import Dataset
from kdbench.errors import KdbenchError
from kdbench.params import bounded
from kdbench.taps import TapPoints
from kdbench.teacher import load_state


@dataclass(frozen=True)
class TorchvisionParams:
    name: str = ""
    """A ``torchvision.models`` architecture name (``torchvision.models.list_models()``)."""
    path: str = ""
    """A file written by ``torch.save(model.state_dict())`` (or a dict with ``state_dict``)."""
    num_classes: int | None = bounded(None, low=1)
    """The classifier's outputs; default: the dataset's classes."""


class TorchvisionTeacher(nn.Module):
    """A torchvision network whose last linear layer's input is the embedding tap."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.embedding = nn.Identity()
        modules = dict(net.named_modules())
        linear = [m for m in modules.values() if isinstance(m, nn.Linear)]
        if not linear:
            raise KdbenchError(f"torchvision model {type(net).__name__} has no nn.Linear head "
                               "whose input could be the embedding")
        linear[-1].register_forward_pre_hook(lambda _m, args: (self.embedding(args[0]),))
        convs = [m for m in modules.values() if isinstance(m, nn.Conv2d)]
        self.in_channels = convs[0].in_channels if convs else None
        stages = tuple(f"net.layer{i}" for i in range(1, 5) if f"layer{i}" in modules)
        self.taps = TapPoints(embedding="embedding", stages=stages)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4 and x.shape[1] == 1 and self.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)


class Torchvision:
    """A torchvision architecture loaded from a state-dict file (no download)."""

    Params = TorchvisionParams
    trains: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False
    needs_data: ClassVar[bool] = True

    def __init__(self, params: TorchvisionParams) -> None:
        import torchvision

        if not params.name or not params.path:
            raise KdbenchError('[teacher] provider "torchvision" needs name = "<architecture>" '
                               'and path = "<state dict file>"')
        if params.name not in torchvision.models.list_models():
            raise KdbenchError(f"[teacher] name {params.name!r} is not a torchvision model; see "
                               "torchvision.models.list_models()")
        self.params = params
        self.path = Path(params.path).expanduser()

    def fingerprint(self, spec_fingerprint: str) -> str:
        if not self.path.is_file():
            raise KdbenchError(f"teacher weights {self.path} do not exist: fix [teacher] path")
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return hashlib.sha256(f"{spec_fingerprint}:{digest}".encode()).hexdigest()

    def load(self, model: nn.Module | None, checkpoint: Path | None, data: Dataset
             ) -> nn.Module:
        import torchvision

        net = torchvision.models.get_model(
            self.params.name, weights=None, num_classes=self.params.num_classes or data.num_classes)
        return TorchvisionTeacher(load_state(self.path, net))

    def describe(self) -> str:
        return f"torchvision {self.params.name} ({self.path.name})"
