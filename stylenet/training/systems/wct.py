"""Training a WCTNet's decoders (Li et al. 2017): each learns to invert its level's VGG-19 features, on photos and
paintings alike (the pairs of style_dataset, both halves reconstructed). Loss per level: pixel MSE plus feature
MSE at that level (Li et al.'s lambda = 1). No style term: the style comes from the transform, not the weights.
model.train_levels picks the decoders this run trains (one at a time if you like); model.start_from takes the
others (and a matching AdaIN decoder for relu4_1) from a model file trained before."""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from stylenet.training.config import describe_style_dataset, require
from stylenet.core.errors import StylenetError
from stylenet.models.formats import load_network
from stylenet.models.kinds.adain import ENCODER_LAYERS, AdaINNet
from stylenet.models.kinds.wct import LEVELS, WCTNet
from stylenet.models.loss_network import LossNetwork
from stylenet.models import zoo
from stylenet.training.systems.base import SAMPLE_ROWS, AnyStyleSystem, register_system

log = logging.getLogger(__name__)

LINEAR_LEVEL = "relu1_1"  # its decoder is a single convolution (kinds/wct.py's decoder_plan)
FIT_BATCHES = 12  # batches of (photo, painting) pairs the least-squares fit reads: 96 images at the default sizes


def start_path(start_from: str) -> Path | None:
    """model.start_from as a file (a path, or a ready-made model's name such as any); None if there is none."""
    try:
        return zoo.resolve(start_from)
    except StylenetError:
        return None


@register_system("wct")
class WCTSystem(AnyStyleSystem):
    bench_encoder = "vgg19_caffe (WCT encoder)"
    unused_config: ClassVar[dict[str, str]] = {
        "style": "its paintings come from style_dataset",
        "loss": "its loss weights are model.pixel_weight and model.feature_weight",
        **{f"loss_network.{key}": "its layers are model.levels" for key in ("content_layers", "style_layers", "style_layer_weights")},
    }

    def __init__(
        self,
        levels: list[str] | None = None,
        channels: int = 32,
        strength: float | list[float] = 1.0,
        weights: str = "caffe",
        train_levels: list[str] | None = None,
        pixel_weight: float = 1.0,
        feature_weight: float = 1.0,
        lr: float = 1e-4,
        start_from: str | None = None,
        on_nonfinite_loss: str = "stop",
        calibration_styles: list[str] | None = None,
        sample_styles: list[str] | None = None,
        description: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        levels = list(levels or LEVELS)
        encoder = LossNetwork("vgg19", weights, ENCODER_LAYERS)
        self.network = WCTNet(levels, channels, strength, encoder_weights=weights, encoder_state=encoder.conv_state())
        self.read_paintings(calibration_styles, sample_styles)
        if start_from:
            self.take_decoders(start_from)  # after calibrate: a started decoder keeps the scale it was trained on
        self.train_levels = list(train_levels or levels)
        # relu1_1's decoder is one linear convolution: least squares fits it (train_start) far better than Adam
        # did (mean error 0.007 and 0.013 against 0.10 and 0.09 after 1500 steps, on two held-out paintings): Adam leaves it
        self.fitted_levels = [level for level in self.train_levels if level == LINEAR_LEVEL]
        self.descended_levels = [level for level in self.train_levels if level != LINEAR_LEVEL]
        for level in levels:
            self.network.decoders[level].requires_grad_(level in self.descended_levels)

    def take_decoders(self, path: str) -> None:
        """Start from a model file: a wct model's decoders of the same widths, or an AdaIN model's decoder for
        relu4_1; its feature scale too (what those decoders were trained to read)."""
        network, metadata = load_network(Path(path))
        taken = []
        if isinstance(network, WCTNet):
            for level, decoder in network.decoders.items():
                if level in self.network.decoders and network.channels == self.network.channels:
                    self.network.decoders[level].load_state_dict(decoder.state_dict())
                    taken.append(level)
        elif isinstance(network, AdaINNet) and "relu4_1" in self.network.decoders and network.channels == self.network.channels:
            self.network.decoders["relu4_1"].load_state_dict(network.decoder.state_dict())
            taken.append("relu4_1")
        if not taken:
            raise StylenetError(f"model.start_from={path}: holds no decoder of these levels with channels={self.network.channels}")
        self.network.feature_scale.copy_(network.feature_scale)
        # the model file says how its decoders came to be, run by run (each run's own facts and where it started)
        self.started_from = {"file": Path(path).name, "levels": taken, "architecture": metadata.get("architecture"),
                             **{key: metadata[key] for key in ("steps", "training", "recipe", "started_from") if key in metadata}}
        log.info("decoders %s taken from %s", ", ".join(taken), path)

    def describe(self) -> dict[str, Any]:
        started = getattr(self, "started_from", None)
        return {**super().describe(), **({"started_from": started} if started else {})}

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        model = cfg.model
        require(cfg.loss_network.arch == "vgg19",
                f"model=wct: its encoder is VGG-19 up to relu4_1; use loss_network=vgg19_caffe or vgg19, not {cfg.loss_network.name}")
        size = cfg.data.image_size
        require(size % 8 == 0, f"data.image_size={size}: model=wct needs a multiple of 8 (the encoder pools 3 times)")
        levels = list(model.levels)
        require(bool(levels) and all(level in LEVELS for level in levels) and len(set(levels)) == len(levels),
                f"model.levels={levels}: must be distinct ones of {', '.join(LEVELS)}")
        train_levels = list(model.train_levels or levels)
        require(all(level in levels for level in train_levels), f"model.train_levels={train_levels}: must be among model.levels {levels}")
        require(isinstance(model.channels, int) and 1 <= model.channels <= 512, f"model.channels={model.channels}: must be 1 to 512")
        strengths = list(model.strength) if OmegaConf.is_list(model.strength) else [model.strength] * len(levels)
        require(len(strengths) == len(levels) and all(0 < value <= 1 for value in strengths),
                f"model.strength={model.strength}: must be above 0 and at most 1, one number or one per level")
        for key in ("pixel_weight", "feature_weight"):
            require(math.isfinite(model[key]) and model[key] >= 0, f"model.{key}={model[key]}: must be a number >= 0")
        require(model.start_from is None or start_path(model.start_from) is not None,
                f"model.start_from={model.start_from}: no such file; give a ready-made name or the model.safetensors "
                "of a wct or adain model")

    @classmethod
    def from_config(cls, cfg: DictConfig, sample_styles: list[str]) -> WCTSystem:
        model = cfg.model
        levels = list(model.levels)
        description = {
            "style": describe_style_dataset(cfg),
            "loss_network": {"name": cfg.loss_network.name, "content_layers": levels, "style_layers": []},
            "loss": {"pixel_weight": float(model.pixel_weight), "feature_weight": float(model.feature_weight)},
            "image_size": cfg.data.image_size,
            "batch_size": cfg.data.batch_size,
        }
        strength = list(model.strength) if OmegaConf.is_list(model.strength) else float(model.strength)
        return cls(
            levels=levels, channels=model.channels, strength=strength, weights=cfg.loss_network.weights,
            train_levels=list(model.train_levels or levels), pixel_weight=float(model.pixel_weight),
            feature_weight=float(model.feature_weight), lr=float(cfg.optimizer.lr),
            start_from=str(start_path(model.start_from)) if model.start_from else None, on_nonfinite_loss=cfg.on_nonfinite_loss,
            calibration_styles=sample_styles[:1], sample_styles=sample_styles[:SAMPLE_ROWS], description=description,
        )

    def losses(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruction terms of the trained levels for a batch of photos and paintings, and their total."""
        network, images = self.network, torch.cat([content, style])  # (2B, 3, H, W)
        with torch.no_grad():
            targets = network.features(images, self.train_levels)
        pixel = images.new_zeros((), dtype=torch.float32)
        feature = images.new_zeros((), dtype=torch.float32)
        for level in self.train_levels:
            output = network.decoders[level](targets[level])  # (2B, 3, H, W), unclamped
            pixel = pixel + F.mse_loss(output.float(), images.float())
            feature = feature + F.mse_loss(network.features(output, (level,))[level].float(), targets[level].float())
        terms = {"pixel": self.hparams.pixel_weight * pixel, "feature": self.hparams.feature_weight * feature}
        terms["total"] = terms["pixel"] + terms["feature"]
        return terms

    def on_train_start(self) -> None:
        if self.fitted_levels and self.global_step == 0:  # a resumed run keeps the fit in its checkpoint
            batches = itertools.islice(self.trainer.datamodule.train_dataloader(), FIT_BATCHES)  # a loader of its own
            images = [torch.cat(batch).to(self.device) for batch in batches]
            error = fit_linear_decoder(self.network, images)
            log.info("%s decoder fitted by least squares on %d images: mean error %.4f", LINEAR_LEVEL,
                     sum(len(batch) for batch in images), error)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        loss = self.finish_step(self.objective(batch))
        return loss if self.descended_levels else None  # only the fit: nothing for Adam, the step logs the loss

    def configure_optimizers(self) -> Any:
        parameters = [p for level in self.descended_levels for p in self.network.decoders[level].parameters()]
        if not parameters:
            return None  # only the least-squares fit: the steps only log the loss
        return self.with_schedule(torch.optim.Adam(parameters, lr=self.hparams.lr))


@torch.no_grad()
def fit_linear_decoder(network: WCTNet, images: list[torch.Tensor], ridge: float = 1e-3) -> float:
    """Set relu1_1's decoder (reflection pad, one 3x3 convolution) to the least-squares map from its 3x3
    neighbourhood of relu1_1 features to each pixel, over these (B, 3, H, W) batches; returns its mean error."""
    conv = network.decoders[LINEAR_LEVEL].layers[1]
    inputs = conv.in_channels * 9 + 1  # the neighbourhood and a bias
    gram = torch.zeros(inputs, inputs, dtype=torch.float64, device=images[0].device)
    cross = torch.zeros(inputs, 3, dtype=torch.float64, device=images[0].device)
    for batch in images:
        features = network.features(batch.float(), (LINEAR_LEVEL,))[LINEAR_LEVEL].float()
        columns = F.unfold(F.pad(features, (1, 1, 1, 1), mode="reflect"), 3).transpose(1, 2).reshape(-1, inputs - 1)
        rows = torch.cat([columns, torch.ones_like(columns[:, :1])], 1).double()  # (B*H*W, inputs)
        gram += rows.T @ rows
        cross += rows.T @ batch.float().permute(0, 2, 3, 1).reshape(-1, 3).double()
    solution = torch.linalg.solve(gram + ridge * torch.eye(inputs, dtype=torch.float64, device=gram.device), cross)
    conv.weight.copy_(solution[:-1].T.reshape(3, conv.in_channels, 3, 3).to(conv.weight))
    conv.bias.copy_(solution[-1].to(conv.bias))
    return sum(float((network.decoders[LINEAR_LEVEL](network.features(batch.float(), (LINEAR_LEVEL,))[LINEAR_LEVEL]) - batch)
                     .abs().mean()) for batch in images) / len(images)
