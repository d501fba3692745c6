"""A model kind that only the tests know: its network, its registry entry and its training system here, its config
in conf/model/toy.yaml beside this file. tests/test_architecture.py trains, stylizes, exports, benches and evaluates
it through stylenet's own entry points, which find it only through the registries."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stylenet.models.registry import KINDS, ConfigMixin, ModelKind, register_kind
from stylenet.training.systems import SYSTEMS, register_system
from stylenet.training.systems.transformer import StyleTransferSystem

CONF = Path(__file__).parent / "conf"  # hydra.searchpath=[file://CONF] adds model=toy


class ToyNet(ConfigMixin, nn.Module):
    """A few 3x3 convolutions and a sigmoid: RGB in [0, 1] -> RGB in [0, 1], any size."""

    def __init__(self, channels: int = 4, num_residual_blocks: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(3, channels, 3), nn.ReLU()]
        for _ in range(num_residual_blocks):
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.Conv2d(channels, 3, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(images))


class ToySystem(StyleTransferSystem):
    """The per-painting recipe (content, Gram style and TV terms on the loss network) around ToyNet."""

    def build_network(self) -> nn.Module:
        return ToyNet(self.hparams.channels, self.hparams.num_residual_blocks)


def register() -> ModelKind:
    """Add the toy kind and its system to stylenet's tables (unregister() takes them out again)."""
    register_system("toy")(ToySystem)
    return register_kind(ModelKind(name="toy", network=ToyNet, tileable=False,
                                   presets={"toy": {"channels": 4, "num_residual_blocks": 1}}))


def unregister() -> None:
    del KINDS["toy"], SYSTEMS["toy"]
