"""Config helpers: where the data lives, and checks that fail before any work with one line naming the key.

The checks here are the keys every model kind reads; each kind's training system checks its own
(stylenet/training/systems/<kind>.py, check_config).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from stylenet.core.errors import StylenetError
from stylenet.core.paths import data_relative, data_root
from stylenet.models.formats import torch_load
from stylenet.models.kinds import KINDS, presets
from stylenet.models.registry import StyleInput
from stylenet.core.images import IMAGE_ERRORS, bounded
from stylenet.models.loss_network import VGG_BLOCKS, check_layers


OmegaConf.register_new_resolver("stylenet_data", data_root, replace=True)


def run_folder(kind: str, style_name: str) -> str:
    """hydra.run.dir's folder under outputs/: the painting's name for a one-painting network, else the kind
    (multistyle, adain, arbitrary): train.yaml owns the run directory, the groups only name what it depends on."""
    known = KINDS.get(kind)  # an unknown kind is named by the config checks, not here
    return style_name if known is not None and known.style_input is StyleInput.NONE else kind


OmegaConf.register_new_resolver("run_folder", run_folder, replace=True)


def kind_preset(path: str) -> object:
    """${kind_preset:transformer.channels}: a network size from its kind's presets (stylenet/models/kinds/<kind>.py),
    the one place each is written; conf/model/ reads them, as `stylenet bench` does (a wheel has no conf/)."""
    name, _, key = path.partition(".")
    arguments = presets().get(name, (None, {}))[1]
    if key not in arguments:
        raise StylenetError(f"${{kind_preset:{path}}}: no preset {name!r} with {key!r}; the presets are {', '.join(sorted(presets()))}")
    return arguments[key]


OmegaConf.register_new_resolver("kind_preset", kind_preset, replace=True)


def describe_style_dataset(cfg: DictConfig) -> dict[str, object]:
    """What an any-style model file says of its paintings: style_dataset's name, its folder relative to the data
    root (data_relative), and the paintings held out of it."""
    return {"name": "any (--style-image)", "dataset": str(cfg.style_dataset.name),
            "root": data_relative(cfg.style_dataset.root), "held_out": list(cfg.style_dataset.get("exclude") or [])}


def require(condition: bool, message: str) -> None:
    if not condition:
        raise StylenetError(message)


def user_overrides() -> list[str]:
    """The key=value overrides on this run's command line; empty when not under @hydra.main (tests call train())."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def refuse_unused(unused: dict[str, str], kind: str, overrides: list[str]) -> None:
    """A command-line override of a key this model kind does not read is a one-line error, not silently ignored.
    unused: {key or group: what the kind reads instead}."""
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        for prefix, instead in unused.items():
            if key == prefix or key.startswith(prefix + "."):
                raise StylenetError(f"{key}: model={kind} does not use it ({instead}); drop it")


def style_layer_weights(cfg: DictConfig) -> dict[str, float]:
    """The weight of each style layer: loss_network.style_layer_weights, 1.0 for a layer it does not name."""
    weights = cfg.loss_network.get("style_layer_weights") or {}
    check_layers(cfg.loss_network.arch, weights, "loss_network.style_layer_weights")
    return {layer: float(weights.get(layer, 1.0)) for layer in cfg.loss_network.style_layers}


def paintings(cfg: DictConfig) -> dict[str, str]:
    """{name: image} of the selected style(s): `style=[a,b,c]` merges each style file's `paintings` entry.
    `style.image=PATH` (with `style.name=NAME`) replaces the last one chosen: a painting of your own."""
    chosen = {str(name): str(image) for name, image in (cfg.style.get("paintings") or {}).items()}
    if cfg.style.get("image"):
        if chosen:
            chosen.pop(list(chosen)[-1])
        chosen[str(cfg.style.name)] = str(cfg.style.image)
    return chosen


def painting_crops(cfg: DictConfig) -> dict[str, list[float]]:
    """{name: [left, top, right, bottom]} for the chosen paintings that `style.crop` names: the part of the
    painting's image to learn from, as fractions of its width and height (drop a mount, frame or wall). A name that
    is not a chosen painting (a typo), or a painting of your own given by style.image, is an error, not ignored."""
    crops = cfg.style.get("crop") or {}
    chosen = list(paintings(cfg))
    own = chosen[-1] if cfg.style.get("image") and chosen else None
    for name in crops:
        require(name != own, f"style.crop.{name}: style.crop is for the paintings of conf/style/; crop your own "
                             "style.image file before training")
        require(name in chosen, f"style.crop.{name}: no painting of that name is trained here (the paintings: "
                                f"{', '.join(chosen)}); check its spelling")
    return {str(name): [float(v) for v in crops[name]] for name in chosen if name in crops}


def check_crop(name: str, crop: list[float], painting: tuple[int, int] | None = None, style_size: int = 512) -> None:
    """The crop's fractions; with the painting's (width, height), also that its part keeps 16 px on its short
    side once scaled to style_size on its long side (what the loss network's pooling needs)."""
    left, top, right, bottom = crop if len(crop) == 4 else (0, 0, 0, 0)
    require(len(crop) == 4 and 0 <= left < right <= 1 and 0 <= top < bottom <= 1,
            f"style.crop.{name}={crop}: give [left, top, right, bottom] as fractions of the painting, 0 <= left < right <= 1 "
            "and 0 <= top < bottom <= 1")
    if painting is not None:
        width, height = (right - left) * painting[0], (bottom - top) * painting[1]
        short = min(width, height) / max(width, height) * style_size
        require(short >= 16, f"style.crop.{name}={crop}: leaves a {width:.0f}x{height:.0f}-px part, {short:.0f} px on "
                             f"its short side at style.size={style_size}; the loss network needs 16: widen the crop")


def validate(cfg: DictConfig) -> None:
    """Check the values every model kind reads; each failure is one line naming the key, the value and what is valid."""
    require(cfg.loss_network.arch in VGG_BLOCKS, f"loss_network.arch={cfg.loss_network.arch}: valid are {', '.join(VGG_BLOCKS)}")
    size = cfg.data.image_size
    require(size >= 16 and size % 4 == 0, f"data.image_size={size}: must be a multiple of 4, at least 16")
    require(cfg.data.batch_size >= 1, f"data.batch_size={cfg.data.batch_size}: must be >= 1")
    require(cfg.data.num_workers >= 0, f"data.num_workers={cfg.data.num_workers}: must be >= 0")
    require(math.isfinite(cfg.optimizer.lr) and cfg.optimizer.lr > 0, f"optimizer.lr={cfg.optimizer.lr}: must be a number > 0")
    require(cfg.optimizer.schedule in ("constant", "cosine"), f"optimizer.schedule={cfg.optimizer.schedule}: valid are constant, cosine")
    warmup = cfg.optimizer.warmup_steps
    require(isinstance(warmup, int) and warmup >= 0, f"optimizer.warmup_steps={warmup}: must be an integer >= 0")
    require(cfg.on_nonfinite_loss in ("stop", "skip"), f"on_nonfinite_loss={cfg.on_nonfinite_loss}: valid are stop, skip")
    require(cfg.trainer.max_steps >= 1, f"trainer.max_steps={cfg.trainer.max_steps}: must be >= 1")
    accelerator = str(cfg.trainer.accelerator)
    require(accelerator not in ("gpu", "cuda") or torch.cuda.is_available(),
            f"trainer.accelerator={accelerator} (trainer=gpu, experiment=gpu or gpu_any): torch sees no CUDA GPU here; "
            "train on the CPU with the default trainer (experiment=cpu and cpu_any are the CPU recipes)")
    require(cfg.checkpoint.every_n_steps >= 1, f"checkpoint.every_n_steps={cfg.checkpoint.every_n_steps}: must be >= 1")
    require(cfg.checkpoint.every_n_minutes > 0, f"checkpoint.every_n_minutes={cfg.checkpoint.every_n_minutes}: must be > 0")
    check_eval(cfg)
    if cfg.ckpt_path is not None:
        require(Path(cfg.ckpt_path).is_file(), f"ckpt_path={cfg.ckpt_path}: no such checkpoint file")
        check_checkpoint(Path(cfg.ckpt_path))


def check_eval(cfg: DictConfig) -> None:
    """eval.every_n_steps: 0 (off) or N; when on, each eval.photos entry must be a folder or an image file."""
    settings = cfg.get("eval") or {}
    every = settings.get("every_n_steps", 0)
    require(isinstance(every, int) and every >= 0, f"eval.every_n_steps={every}: 0 (off) or a number of steps")
    if every:
        require(settings.size >= 32, f"eval.size={settings.size}: must be at least 32 (pixels, long side)")
        photos = settings.photos
        require(OmegaConf.is_list(photos) and len(photos) > 0, "eval.photos must be a non-empty list of photos or folders")
        for photo in photos:
            require(Path(photo).exists(), f"eval.photos: {photo} not found; list photos the model never trains on, "
                                          "or turn eval off with eval.every_n_steps=0")


def check_checkpoint(path: Path) -> None:
    """A resume checkpoint must be a stylenet training checkpoint that loads with weights_only=True."""
    content = torch_load(path)  # refuses pickles that would run code, with one line
    require(
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
