"""Config helpers: where the data lives, and checks that fail before any work with one line naming the key."""

from __future__ import annotations

import math
import os
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from stylenet import StylenetError
from stylenet.images import IMAGE_ERRORS, bounded
from stylenet.loss_network import VGG_BLOCKS, check_layers

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"


def data_root() -> str:
    """$STYLENET_DATA if set; else ../shared/data beside the repository if present; else ./data."""
    if os.environ.get("STYLENET_DATA"):
        return os.environ["STYLENET_DATA"]
    shared = REPO_ROOT.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else "data"


OmegaConf.register_new_resolver("stylenet_data", data_root, replace=True)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise StylenetError(message)


def style_layer_weights(cfg: DictConfig) -> dict[str, float]:
    """The weight of each style layer: loss_network.style_layer_weights, 1.0 for a layer it does not name."""
    weights = cfg.loss_network.get("style_layer_weights") or {}
    check_layers(cfg.loss_network.arch, weights, "loss_network.style_layer_weights")
    return {layer: float(weights.get(layer, 1.0)) for layer in cfg.loss_network.style_layers}


def paintings(cfg: DictConfig) -> dict[str, str]:
    """{name: image} of the selected style(s): `style=[a,b,c]` merges each style file's `selected` entry;
    style.name/style.image (the last one chosen) win, so `style.image=...` overrides still apply."""
    selected = {str(name): str(image) for name, image in (cfg.style.get("selected") or {}).items()}
    selected[str(cfg.style.name)] = str(cfg.style.image)
    return selected


MODELS = ("transformer", "transformer_small", "multistyle", "adain")


def validate(cfg: DictConfig) -> None:
    """Check the values a user sets; each failure is one line naming the key, the value and what is valid."""
    network = cfg.loss_network
    _require(network.arch in VGG_BLOCKS, f"loss_network.arch={network.arch}: valid are {', '.join(VGG_BLOCKS)}")
    for key in ("content_layers", "style_layers"):
        layers = network[key]
        _require(isinstance(layers, ListConfig) and len(layers) > 0, f"loss_network.{key} must be a non-empty list")
        check_layers(network.arch, layers, f"loss_network.{key}")
    for layer, weight in style_layer_weights(cfg).items():
        _require(math.isfinite(weight) and weight >= 0, f"loss_network.style_layer_weights.{layer}={weight}: must be a number >= 0")
    for key in ("content_weight", "style_weight", "tv_weight"):
        _require(math.isfinite(cfg.loss[key]) and cfg.loss[key] >= 0, f"loss.{key}={cfg.loss[key]}: must be a number >= 0")
    _require(cfg.loss.content_weight + cfg.loss.style_weight > 0, "loss: content_weight and style_weight are both 0")
    size = cfg.data.image_size
    _require(size >= 16 and size % 4 == 0, f"data.image_size={size}: must be a multiple of 4, at least 16")
    _require(cfg.data.batch_size >= 1, f"data.batch_size={cfg.data.batch_size}: must be >= 1")
    _require(cfg.data.num_workers >= 0, f"data.num_workers={cfg.data.num_workers}: must be >= 0")
    _require(cfg.style.size >= 16, f"style.size={cfg.style.size}: must be at least 16 (pixels, long side)")
    _require(cfg.model.channels >= 1, f"model.channels={cfg.model.channels}: must be >= 1")
    _require(cfg.model.num_residual_blocks >= 0, f"model.num_residual_blocks={cfg.model.num_residual_blocks}: must be >= 0")
    _require(math.isfinite(cfg.optimizer.lr) and cfg.optimizer.lr > 0, f"optimizer.lr={cfg.optimizer.lr}: must be a number > 0")
    _require(cfg.on_nonfinite_loss in ("stop", "skip"), f"on_nonfinite_loss={cfg.on_nonfinite_loss}: valid are stop, skip")
    _require(cfg.trainer.max_steps >= 1, f"trainer.max_steps={cfg.trainer.max_steps}: must be >= 1")
    _require(cfg.checkpoint.every_n_steps >= 1, f"checkpoint.every_n_steps={cfg.checkpoint.every_n_steps}: must be >= 1")
    _require(cfg.checkpoint.every_n_minutes > 0, f"checkpoint.every_n_minutes={cfg.checkpoint.every_n_minutes}: must be > 0")
    model = cfg.model.get("name", "transformer")
    _require(model in MODELS, f"model.name={model}: valid are {', '.join(MODELS)}")
    chosen = paintings(cfg)
    if model == "adain":
        _require(network.arch == "vgg19", f"model=adain: its encoder is VGG-19 up to relu4_1; use loss_network=vgg19_caffe or vgg19, not {network.name}")
        _require(size % 8 == 0, f"data.image_size={size}: model=adain needs a multiple of 8 (the encoder pools 3 times)")
    if model == "multistyle":
        for image in chosen.values():
            check_style_image(image)
    elif model != "adain":
        _require(
            len(chosen) == 1,
            f"style=[{','.join(chosen)}] selects {len(chosen)} paintings, but model={model} learns one; "
            "add model=multistyle for one network that holds them all, or pick one style",
        )
        check_style_image(cfg.style.image)
    if cfg.ckpt_path is not None:
        _require(Path(cfg.ckpt_path).is_file(), f"ckpt_path={cfg.ckpt_path}: no such checkpoint file")
        check_checkpoint(Path(cfg.ckpt_path))


def check_checkpoint(path: Path) -> None:
    """A resume checkpoint must be a stylenet training checkpoint that loads with weights_only=True."""
    from stylenet.formats import torch_load

    content = torch_load(path)  # refuses pickles that would run code, with one line
    _require(
        isinstance(content, dict) and "state_dict" in content and "loops" in content,
        f"ckpt_path={path}: not a training checkpoint (resume from RUN/checkpoints/last.ckpt)",
    )


def check_style_image(path: str) -> None:
    """The painting must exist and decode; the error says how to get the bundled ones."""
    from PIL import Image

    if not Path(path).is_file():
        raise StylenetError(
            f"style.image={path}: file not found; run `make data` to fetch the paintings, "
            "set STYLENET_DATA to a folder holding styles/, or pass style.image=/path/to/painting.jpg"
        )
    try:
        with bounded(), Image.open(path) as image:
            image.verify()
    except IMAGE_ERRORS as error:
        raise StylenetError(f"style.image={path}: not a readable image ({error})") from None
