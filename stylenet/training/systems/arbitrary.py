"""Training an ArbitraryStyleNet (Ghiasi et al. 2017) on (photo, painting) pairs: the painting's predicted style
vector sets the transformer's norms; the output is judged by the loss network against the photo's content
and that painting's own Gram matrices (relative terms, as the per-painting recipe and eval's judge)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from omegaconf import DictConfig

from stylenet.training.config import describe_style_dataset, require, style_layer_weights
from stylenet.models.kinds.arbitrary import ArbitraryStyleNet
from stylenet.models.loss_network import GATYS_STYLE_LAYERS, LossNetwork
from stylenet.models.losses import PerceptualLoss
from stylenet.training.systems.base import SAMPLE_ROWS, AnyStyleSystem, load_paintings, register_system
from stylenet.training.systems.transformer import DEFAULT_LOSS_WEIGHTS, StyleTransferSystem, config_loss_weights


@register_system("arbitrary")
class ArbitrarySystem(AnyStyleSystem):
    unused_config: ClassVar[dict[str, str]] = {"style": "its paintings come from style_dataset"}

    def __init__(
        self,
        channels: int = 16,
        num_residual_blocks: int = 5,
        style_dims: int = 100,
        loss_network: dict[str, Any] | None = None,  # arch, weights, content_layers, style_layer_weights
        loss_weights: dict[str, float] | None = None,  # {weight_key: weight} of models/losses.LOSS_TERMS
        lr: float = 1e-3,
        on_nonfinite_loss: str = "stop",
        sample_styles: list[str] | None = None,
        description: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        spec = loss_network or {"arch": "vgg19", "weights": "caffe", "content_layers": ["relu4_2"],
                                "style_layer_weights": dict.fromkeys(GATYS_STYLE_LAYERS, 1.0)}
        layer_weights, content_layers = dict(spec["style_layer_weights"]), list(spec["content_layers"])
        network = LossNetwork(spec["arch"], spec["weights"], [*content_layers, *layer_weights])
        # relative terms, as the per-painting recipe; no fixed painting: each batch brings its targets (losses())
        weights = DEFAULT_LOSS_WEIGHTS if loss_weights is None else loss_weights
        self.criterion = PerceptualLoss(network, [], content_layers, layer_weights, weights, normalize=True)
        # the predictor reads the same VGG-19 (check_config holds the loss network to it): its weights, once loaded
        self.network = ArbitraryStyleNet(channels, num_residual_blocks, style_dims, spec["weights"], network.conv_state())
        self.sample_styles = load_paintings(sample_styles)  # the TensorBoard grid: one row per painting

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        StyleTransferSystem.check_perceptual(cfg)
        require(cfg.loss_network.arch == "vgg19" and cfg.loss_network.weights != "random",
                f"model=arbitrary: its style predictor reads VGG-19 up to relu4_1; use loss_network=vgg19_caffe or vgg19, "
                f"not {cfg.loss_network.name}")
        dims = cfg.model.style_dims
        require(isinstance(dims, int) and 1 <= dims <= 4096, f"model.style_dims={dims}: must be an integer from 1 to 4096")

    @classmethod
    def from_config(cls, cfg: DictConfig, sample_styles: list[str]) -> ArbitrarySystem:
        model = cfg.model
        loss_network = {"arch": cfg.loss_network.arch, "weights": cfg.loss_network.weights,
                        "content_layers": list(cfg.loss_network.content_layers), "style_layer_weights": style_layer_weights(cfg)}
        description = {
            "style": describe_style_dataset(cfg),
            "loss_network": {"name": cfg.loss_network.name, "content_layers": loss_network["content_layers"],
                             "style_layer_weights": loss_network["style_layer_weights"]},
            "loss": {**config_loss_weights(cfg), "relative": True},
            "image_size": cfg.data.image_size,
            "batch_size": cfg.data.batch_size,
        }
        return cls(
            channels=model.channels, num_residual_blocks=model.num_residual_blocks, style_dims=model.style_dims,
            loss_network=loss_network, loss_weights=config_loss_weights(cfg), lr=float(cfg.optimizer.lr),
            on_nonfinite_loss=cfg.on_nonfinite_loss,
            sample_styles=sample_styles[:SAMPLE_ROWS], description=description,
        )

    def losses(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted content, style and tv terms and their total for a batch of (photo, painting) pairs; each
        photo's style term is against its own painting's Gram matrices, relative to their scale."""
        stylized = self.network(content, style)  # (B, 3, H, W) in [0, 1]
        return self.criterion(stylized, content, grams=self.criterion.painting_grams(style),
                              network=lambda images: self.network(images, style))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trained = [*self.network.bottleneck.parameters(), *self.network.transfer.parameters()]  # the VGG stays frozen
        return self.with_schedule(torch.optim.Adam(trained, lr=self.hparams.lr))
