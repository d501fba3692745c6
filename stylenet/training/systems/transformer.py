"""Training a single-style TransformerNet (Johnson et al. 2016): photo -> network -> loss network -> content,
style and total-variation terms -> Adam."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from stylenet.core.paths import data_relative
from stylenet.training.config import check_crop, check_style_image, painting_crops, paintings, require, style_layer_weights
from stylenet.core.images import load_image, resize_long_side, to_tensor
from stylenet.models.kinds.transformer import TransformerNet
from stylenet.models.loss_network import GATYS_STYLE_LAYERS, LossNetwork, check_layers
from stylenet.models.losses import PerceptualLoss, weight_keys
from stylenet.training.systems.base import StyleSystem, register_system


# conf/train.yaml's loss weights (tests/test_config.py checks they agree); a term they do not name weighs 0
DEFAULT_LOSS_WEIGHTS = {"content_weight": 1.0, "style_weight": 3.0, "tv_weight": 10.0, "temporal_weight": 0.0}


def config_loss_weights(cfg: DictConfig) -> dict[str, float]:
    """loss.<weight_key> of every loss term (models/losses.LOSS_TERMS); one the config does not set is 0."""
    return {key: float(cfg.loss.get(key, 0.0)) for key in weight_keys()}


@register_system("transformer")
class StyleTransferSystem(StyleSystem):
    """Trains a network so that its output keeps the photo's content and takes the painting(s)' style."""

    separate_styles = False  # one Gram target per painting (multistyle), or all paintings' blended

    # Defaults are those of conf/ (model=transformer, loss_network=vgg19_caffe, train.yaml's loss:); from_config
    # passes every value, and tests/test_config.py checks that the two agree.
    def __init__(
        self,
        style_images: list[str],
        style_names: list[str],
        channels: int = 32,
        num_residual_blocks: int = 5,
        style_size: int = 512,
        loss_network: dict[str, Any] | None = None,  # arch, weights, content_layers, style_layer_weights
        loss_weights: dict[str, float] | None = None,  # {weight_key: weight} of models/losses.LOSS_TERMS
        relative: bool = True,
        lr: float = 1e-3,
        on_nonfinite_loss: str = "stop",
        description: dict[str, Any] | None = None,
        style_crops: list[list[float] | None] | None = None,  # per painting: [left, top, right, bottom] fractions
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network = self.build_network()
        crops = style_crops or [None] * len(style_images)
        styles = [to_tensor(resize_long_side(crop_painting(load_image(path, "style.image"), crop), style_size))
                  for path, crop in zip(style_images, crops)]
        spec = loss_network or {"arch": "vgg19", "weights": "caffe", "content_layers": ["relu4_2"]}
        layer_weights = dict(spec.get("style_layer_weights") or dict.fromkeys(GATYS_STYLE_LAYERS, 1.0))
        content_layers = list(spec["content_layers"])
        network = LossNetwork(spec["arch"], spec["weights"], [*content_layers, *layer_weights])
        self.criterion = PerceptualLoss(
            network, styles, content_layers, layer_weights, DEFAULT_LOSS_WEIGHTS if loss_weights is None else loss_weights,
            normalize=relative, separate_styles=self.separate_styles,
        )

    def build_network(self) -> torch.nn.Module:
        return TransformerNet(self.hparams.channels, self.hparams.num_residual_blocks)

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        chosen = paintings(cfg)
        require(
            len(chosen) == 1,
            f"style=[{','.join(chosen)}] selects {len(chosen)} paintings, but model={cfg.model.kind} learns one; "
            "add model=multistyle for one network that holds them all, or pick one style",
        )
        cls.check_perceptual(cfg)

    @staticmethod
    def check_perceptual(cfg: DictConfig) -> None:
        """The keys the perceptual-loss kinds read: model size, loss network layers, loss weights, paintings."""
        require(cfg.model.channels >= 1, f"model.channels={cfg.model.channels}: must be >= 1")
        require(cfg.model.num_residual_blocks >= 0, f"model.num_residual_blocks={cfg.model.num_residual_blocks}: must be >= 0")
        network = cfg.loss_network
        for key in ("content_layers", "style_layers"):
            layers = network[key]
            require(OmegaConf.is_list(layers) and len(layers) > 0, f"loss_network.{key} must be a non-empty list")
            check_layers(network.arch, layers, f"loss_network.{key}")
        for layer, weight in style_layer_weights(cfg).items():
            require(math.isfinite(weight) and weight >= 0, f"loss_network.style_layer_weights.{layer}={weight}: must be a number >= 0")
        for key in weight_keys():
            value = cfg.loss.get(key, 0.0)
            require(isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, f"loss.{key}={value}: must be a number >= 0")
        require(cfg.loss.content_weight + cfg.loss.style_weight > 0, "loss: content_weight and style_weight are both 0")
        require(isinstance(cfg.loss.get("relative", False), bool), f"loss.relative={cfg.loss.get('relative')}: true or false")
        require(cfg.style.size >= 16, f"style.size={cfg.style.size}: must be at least 16 (pixels, long side)")
        chosen = paintings(cfg)
        for image in chosen.values():
            check_style_image(image)
        for name, crop in painting_crops(cfg).items():
            with Image.open(chosen[name]) as painting:  # the header only
                check_crop(name, crop, painting.size, cfg.style.size)

    @classmethod
    def from_config(cls, cfg: DictConfig, sample_styles: list[str]) -> StyleTransferSystem:
        chosen = paintings(cfg)
        loss_network = {
            "arch": cfg.loss_network.arch, "weights": cfg.loss_network.weights,
            "content_layers": list(cfg.loss_network.content_layers), "style_layer_weights": style_layer_weights(cfg),
        }
        sha256 = [hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in chosen.values()]
        crops = painting_crops(cfg)
        style = cls.describe_style(list(chosen), [data_relative(path) for path in chosen.values()], sha256, cfg.style.size)
        if crops:
            style["crop"] = crops  # {painting: [left, top, right, bottom]}: the part its Gram targets came from
        description = {
            "style": style,
            "loss_network": {"name": cfg.loss_network.name, "content_layers": loss_network["content_layers"],
                             "style_layer_weights": loss_network["style_layer_weights"]},
            "loss": OmegaConf.to_container(cfg.loss),
            "image_size": cfg.data.image_size,
            "batch_size": cfg.data.batch_size,
        }
        return cls(
            style_images=list(chosen.values()), style_names=list(chosen), channels=cfg.model.channels,
            num_residual_blocks=cfg.model.num_residual_blocks, style_size=cfg.style.size, loss_network=loss_network,
            loss_weights=config_loss_weights(cfg), relative=bool(cfg.loss.relative), lr=float(cfg.optimizer.lr),
            on_nonfinite_loss=cfg.on_nonfinite_loss,
            description=description, style_crops=[crops.get(name) for name in chosen],
        )

    @classmethod
    def for_bench(cls, arguments: dict[str, Any], painting: Image.Image, folder: Path,
                  loss_network: dict[str, Any]) -> StyleTransferSystem:
        """The synthetic painting (turned a quarter for each further style of a multi-style preset) as its style(s)."""
        arguments = dict(arguments)
        names = list(arguments.pop("styles", None) or ["synthetic"])
        paths = []
        for index, name in enumerate(names):
            paths.append(str(folder / f"{name}.png"))
            painting.rotate(90 * index).save(paths[-1])
        return cls(style_images=paths, style_names=names, loss_network=loss_network, **arguments)

    @staticmethod
    def describe_style(names: list[str], images: list[str], sha256: list[str], size: int) -> dict[str, Any]:
        return {"name": names[0], "image": images[0], "sha256": sha256[0], "size": size}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)

    def sample_rows(self, images: torch.Tensor) -> list[torch.Tensor]:
        """What the TensorBoard grid shows below the photos: their stylized versions, a row per painting."""
        return [self.network(images)]

    def objective(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        stylized = self.network(content)  # (B, 3, H, W) in [0, 1]
        return self.criterion(stylized, content, network=self.network)  # every loss term and the total

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.with_schedule(torch.optim.Adam(self.network.parameters(), lr=self.hparams.lr))


def crop_painting(image: Image.Image, crop: list[float] | None) -> Image.Image:
    """The [left, top, right, bottom] part of the painting (fractions of its size); None: all of it."""
    if crop is None:
        return image
    width, height = image.size
    left, top, right, bottom = crop
    return image.crop((round(left * width), round(top * height), round(right * width), round(bottom * height)))
