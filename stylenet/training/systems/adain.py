"""Training the decoder of an AdaINNet (Huang & Belongie 2017) on (photo, painting) pairs; the encoder is the
frozen VGG-19 of the loss network. Loss: content = MSE between the output's relu4_1 features and the AdaIN
target; style = MSE of channel means plus MSE of channel stds at relu1_1..relu4_1."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from stylenet.training.config import describe_style_dataset, require
from stylenet.models.kinds.adain import ADAIN_LAYER, ENCODER_LAYERS, AdaINNet, adain, channel_stats
from stylenet.models.loss_network import LossNetwork
from stylenet.training.systems.base import SAMPLE_ROWS, AnyStyleSystem, register_system



@register_system("adain")
class AdaINSystem(AnyStyleSystem):
    bench_encoder = "vgg19_caffe (AdaIN encoder)"
    unused_config: ClassVar[dict[str, str]] = {
        "style": "its paintings come from style_dataset",
        "loss": "its loss weights are model.content_weight and model.style_weight",
        **{f"loss_network.{key}": "its layers are fixed: AdaIN at relu4_1, style statistics at relu1_1..relu4_1"
           for key in ("content_layers", "style_layers", "style_layer_weights")},
    }

    def __init__(
        self,
        channels: int = 64,
        weights: str = "caffe",
        content_weight: float = 1.0,
        style_weight: float = 10.0,
        lr: float = 1e-4,
        on_nonfinite_loss: str = "stop",
        calibration_styles: list[str] | None = None,
        sample_styles: list[str] | None = None,
        description: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        encoder = LossNetwork("vgg19", weights, ENCODER_LAYERS)  # downloads torchvision's weights if asked
        self.network = AdaINNet(channels, weights, encoder.conv_state())
        self.read_paintings(calibration_styles, sample_styles)

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        model = cfg.model
        require(cfg.loss_network.arch == "vgg19",
                f"model=adain: its encoder is VGG-19 up to relu4_1; use loss_network=vgg19_caffe or vgg19, not {cfg.loss_network.name}")
        size = cfg.data.image_size
        require(size % 8 == 0, f"data.image_size={size}: model=adain needs a multiple of 8 (the encoder pools 3 times)")
        require(isinstance(model.channels, int) and 1 <= model.channels <= 512, f"model.channels={model.channels}: must be 1 to 512")
        for key in ("content_weight", "style_weight"):
            require(math.isfinite(model[key]) and model[key] >= 0, f"model.{key}={model[key]}: must be a number >= 0")
        calibration = model.calibration_styles
        require(isinstance(calibration, int) and calibration >= 1, f"model.calibration_styles={calibration}: must be an integer >= 1")

    @classmethod
    def from_config(cls, cfg: DictConfig, sample_styles: list[str]) -> AdaINSystem:
        model = cfg.model
        description = {
            "style": describe_style_dataset(cfg),
            "loss_network": {"name": cfg.loss_network.name, "content_layers": [ADAIN_LAYER], "style_layers": list(ENCODER_LAYERS)},
            "loss": {"content_weight": float(model.content_weight), "style_weight": float(model.style_weight)},
            "image_size": cfg.data.image_size,
            "batch_size": cfg.data.batch_size,
        }
        return cls(
            channels=model.channels, weights=cfg.loss_network.weights, content_weight=float(model.content_weight),
            style_weight=float(model.style_weight), lr=float(cfg.optimizer.lr), on_nonfinite_loss=cfg.on_nonfinite_loss,
            calibration_styles=sample_styles[: model.calibration_styles], sample_styles=sample_styles[:SAMPLE_ROWS],
            description=description,
        )

    def losses(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted content and style terms and their total for a batch of (photo, painting) pairs."""
        network = self.network
        with torch.no_grad():
            style_features = network.features(style)  # {layer: (B, C, h, w)}, scaled to mean ~1
            target = adain(network.encode(content), *channel_stats(style_features[ADAIN_LAYER]))
        output = network.decoder(target)  # (B, 3, H, W), unclamped: the loss pulls it into [0, 1]
        features = network.features(output)
        content_term = F.mse_loss(features[ADAIN_LAYER].float(), target.float())
        style_term = features[ADAIN_LAYER].new_zeros((), dtype=torch.float32)
        for layer in ENCODER_LAYERS:
            (mean, std), (style_mean, style_std) = channel_stats(features[layer]), channel_stats(style_features[layer])
            style_term = style_term + F.mse_loss(mean, style_mean) + F.mse_loss(std, style_std)
        terms = {"content": self.hparams.content_weight * content_term, "style": self.hparams.style_weight * style_term}
        terms["total"] = terms["content"] + terms["style"]
        return terms

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.with_schedule(torch.optim.Adam(self.network.decoder.parameters(), lr=self.hparams.lr))  # Huang & Belongie: 1e-4
