"""Perceptual losses (Gatys et al. 2016; Johnson et al. 2016): content, Gram-matrix style, total variation.

One implementation serves the feed-forward trainer and the pixel optimizer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stylenet import StylenetError
from stylenet.loss_network import LossNetwork, check_layers


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrix normalized by C*H*W (Johnson et al.), computed in float32."""
    batch, channels, height, width = features.shape
    flat = features.float().reshape(batch, channels, height * width)
    return torch.bmm(flat, flat.transpose(1, 2)) / (channels * height * width)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between feature maps."""
    return F.mse_loss(features.float(), target.float())


def style_loss(
    features: Mapping[str, torch.Tensor], target_grams: Mapping[str, torch.Tensor], layer_weights: Mapping[str, float]
) -> torch.Tensor:
    """Weighted sum over layers of the MSE between Gram matrices; targets (1 or B, C, C) broadcast over the batch."""
    total = features[next(iter(layer_weights))].new_zeros((), dtype=torch.float32)
    for layer, weight in layer_weights.items():
        grams = gram_matrix(features[layer])  # (B, C, C)
        total = total + weight * F.mse_loss(grams, target_grams[layer].expand_as(grams))
    return total


def tv_loss(images: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference between neighbouring pixels, horizontally plus vertically."""
    horizontal = (images[..., :, 1:] - images[..., :, :-1]).float().pow(2).mean()
    vertical = (images[..., 1:, :] - images[..., :-1, :]).float().pow(2).mean()
    return horizontal + vertical


class PerceptualLoss(nn.Module):
    """content + style + tv for a fixed style image; returns a dict of weighted named terms and their 'total'.

    The style Gram targets are computed once here and kept in non-persistent buffers.
    """

    def __init__(
        self,
        loss_network: LossNetwork,
        style_image: torch.Tensor,
        content_layers: Sequence[str],
        style_layer_weights: Mapping[str, float],
        content_weight: float,
        style_weight: float,
        tv_weight: float,
    ) -> None:
        super().__init__()
        check_layers(loss_network.arch, content_layers, "loss_network.content_layers")
        check_layers(loss_network.arch, style_layer_weights, "loss_network.style_layers")
        if not content_layers or not style_layer_weights:
            raise StylenetError("loss_network: content_layers and style_layers each need at least one layer")
        self.loss_network = loss_network
        self.content_layers = list(content_layers)
        self.style_layer_weights = dict(style_layer_weights)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self.layers = list(dict.fromkeys(self.content_layers + list(self.style_layer_weights)))
        with torch.no_grad():
            features = loss_network(style_image.unsqueeze(0) if style_image.dim() == 3 else style_image, self.style_layers)
        for layer in self.style_layers:
            self.register_buffer(f"style_gram_{layer}", gram_matrix(features[layer]), persistent=False)  # (1, C, C)

    @property
    def style_layers(self) -> list[str]:
        return list(self.style_layer_weights)

    def style_grams(self) -> dict[str, torch.Tensor]:
        return {layer: getattr(self, f"style_gram_{layer}") for layer in self.style_layers}

    def forward(self, stylized: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """stylized, content: (B, 3, H, W) RGB in [0, 1] -> {'content', 'style', 'tv', 'total'} (weighted)."""
        features = self.loss_network(stylized, self.layers)
        with torch.no_grad():
            content_targets = self.loss_network(content, self.content_layers)
        terms = {
            "content": self.content_weight
            * sum(content_loss(features[layer], content_targets[layer]) for layer in self.content_layers),
            "style": self.style_weight * style_loss(features, self.style_grams(), self.style_layer_weights),
            "tv": self.tv_weight * tv_loss(stylized),
        }
        terms["total"] = terms["content"] + terms["style"] + terms["tv"]
        return terms
