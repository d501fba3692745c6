"""Training one MultiStyleTransformerNet for several paintings (Dumoulin et al. 2017): each photo of a batch
gets a random painting, that painting's norm parameters and its own Gram targets."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from stylenet.models.kinds.multistyle import MultiStyleTransformerNet
from stylenet.training.systems.base import register_system
from stylenet.training.systems.transformer import StyleTransferSystem


@register_system("multistyle")
class MultiStyleSystem(StyleTransferSystem):
    separate_styles = True

    def build_network(self) -> torch.nn.Module:
        return MultiStyleTransformerNet(self.hparams.style_names, self.hparams.channels, self.hparams.num_residual_blocks)

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        cls.check_perceptual(cfg)

    @staticmethod
    def describe_style(names: list[str], images: list[str], sha256: list[str], size: int) -> dict[str, Any]:
        return {"names": names, "images": images, "sha256": sha256, "size": size}

    def forward(self, images: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1], style weights (1 or B, S)."""
        return self.network(images, mix)

    def sample_rows(self, images: torch.Tensor) -> list[torch.Tensor]:
        one_hot = torch.eye(len(self.network.styles), device=images.device)  # row i: style i alone
        return [self.network(images, one_hot[index : index + 1]) for index in range(len(one_hot))]

    def objective(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        count = len(self.network.styles)
        style_ids = torch.randint(count, (content.shape[0],), device=content.device)  # a painting per photo
        mix = F.one_hot(style_ids, count).float()
        stylized = self.network(content, mix)
        return self.criterion(stylized, content, style_ids, network=lambda images: self.network(images, mix))
