"""What every training system shares: the table of systems by model kind, checkpoints that describe their
model, the on_nonfinite_loss policy and how a step's terms are reported."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, ClassVar

from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from PIL import Image
from torch import nn

from stylenet.training.config import refuse_unused
from stylenet.core.errors import StylenetError
from stylenet.core.images import load_image, resize_long_side, to_tensor
from stylenet.models.modelfile import METADATA_KEY, model_metadata, upgrade_checkpoint_state

log = logging.getLogger(__name__)

SYSTEMS: dict[str, type[StyleSystem]] = {}


def register_system(kind_name: str) -> Callable[[type[StyleSystem]], type[StyleSystem]]:
    """Class decorator: this system trains the model kind of this name (stylenet/models/kinds/<name>.py)."""

    def register(system: type[StyleSystem]) -> type[StyleSystem]:
        if kind_name in SYSTEMS:
            raise ValueError(f"a training system for {kind_name!r} is registered twice")
        SYSTEMS[kind_name] = system
        return system

    return register


class NonFiniteLoss(StylenetError):
    """A loss term became NaN or infinite."""


class StyleSystem(pl.LightningModule):
    """A LightningModule that trains `self.network`, one model kind's network.

    Subclasses build themselves from the config (from_config) and check their kind's keys (check_config);
    describe() is what their model files say beyond the network's arguments.
    """

    network: nn.Module
    uses_style_dataset: ClassVar[bool] = False  # True: batches are (photo, painting) pairs from style_dataset
    # Config keys (or groups) this kind does not read -> what it reads instead: overriding one is an error
    unused_config: ClassVar[dict[str, str]] = {"style_dataset": "its paintings are style=..."}
    run_facts: dict[str, Any]  # how this run trains (the precision train() chose): recorded in the metadata
    schedule: tuple[str, int] = ("constant", 0)  # the learning rate's shape and warm-up steps (optimizer.schedule)
    bench_encoder: ClassVar[str | None] = None  # what `stylenet bench train` names as the loss network, when not --loss-network

    @classmethod
    def check(cls, cfg: DictConfig, overrides: list[str]) -> None:
        """Every check of this kind's config: no override of a key it ignores, then its own keys' values."""
        refuse_unused(cls.unused_config, cfg.model.kind, overrides)
        cls.check_config(cfg)

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        """Raise a StylenetError naming the key if the kind's own settings are wrong."""

    @classmethod
    def from_config(cls, cfg: DictConfig, sample_styles: list[str]) -> StyleSystem:
        raise NotImplementedError

    @classmethod
    def for_bench(cls, arguments: dict[str, Any], painting: Image.Image, folder: Path, loss_network: dict[str, Any]) -> StyleSystem:
        """This kind's system as `stylenet bench train` times it: a preset's network arguments (its kind's
        presets), a synthetic painting (to save under folder, for kinds that learn their paintings) and the loss
        network spec of --loss-network. By default the system of those arguments, its other settings the config's."""
        return cls(**arguments)

    def describe(self) -> dict[str, Any]:
        """Metadata fields of this run's model files besides its kind and arguments (style, loss, ...)."""
        return {**(self.hparams.get("description") or {}), **getattr(self, "run_facts", {})}

    def eval_painting(self) -> str | None:
        """The painting eval during training judges against; None: the one the model's metadata names."""
        return None

    def model_metadata(self, steps: int) -> dict[str, Any]:
        """The metadata of model.safetensors, which every training checkpoint carries too."""
        return model_metadata(self.network, **self.describe(), steps=steps)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[METADATA_KEY] = self.model_metadata(self.global_step)  # nanoGPT's model_args, diffusers' config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume checkpoints from before the network attribute was named `network` (stylenet 0.1)."""
        upgrade_checkpoint_state(checkpoint["state_dict"])

    def with_schedule(self, optimizer: torch.optim.Optimizer) -> Any:
        """The optimizer, with the learning rate schedule train() set: constant, or a linear warm-up then a
        cosine decay to zero at trainer.max_steps (its state is in the checkpoints, so a resume continues it)."""
        shape, warmup = self.schedule
        if shape == "constant" and not warmup:
            return optimizer
        total = max(1, self.trainer.max_steps)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if shape == "constant":
                return 1.0
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def objective(self, batch: Any) -> dict[str, torch.Tensor]:
        """The weighted loss terms and their "total" for one batch from the data module: what training minimizes
        (training_step) and what `stylenet bench train` times."""
        raise NotImplementedError

    def objective_weights(self) -> dict[str, Any]:
        """The weights of objective()'s terms, as `stylenet bench train` records them: the perceptual loss's
        {weight_key: weight} and whether its terms are relative, else this system's own *_weight settings."""
        criterion = getattr(self, "criterion", None)
        if criterion is not None and hasattr(criterion, "weights"):
            return {**criterion.weights, "relative": criterion.normalize}
        return {key: value for key, value in self.hparams.items() if key.endswith("_weight")}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        return self.finish_step(self.objective(batch))

    def finish_step(self, terms: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Log the terms and return the total to backpropagate; None skips the batch (on_nonfinite_loss=skip)."""
        if self.nonfinite(terms):
            return None  # no backward, no optimizer step for this batch
        self.log_dict({f"train/{name}_loss": value for name, value in terms.items()}, prog_bar=True)
        return terms["total"]

    def nonfinite(self, terms: dict[str, torch.Tensor]) -> bool:
        """True if this batch is to be skipped; raises NonFiniteLoss if the run is to stop."""
        finite = bool(torch.stack([value.detach().float() for value in terms.values()]).isfinite().all())  # one sync
        if not self.trainer.strategy.reduce_boolean_decision(not finite, all=False):  # any rank: all ranks agree
            return False
        bad = {name: value.item() for name, value in terms.items() if not torch.isfinite(value)}
        what = ", ".join(f"{name}={value}" for name, value in bad.items()) or "on another rank"
        if self.hparams.on_nonfinite_loss == "skip":
            log.warning("step %d: non-finite loss (%s); batch skipped", self.global_step, what)
            return True
        raise NonFiniteLoss(
            f"loss became non-finite at step {self.global_step} ({what}); checkpoints/last.ckpt keeps the last good "
            "state. Lower optimizer.lr or loss weights, or set on_nonfinite_loss=skip to skip such batches"
        )


SAMPLE_ROWS = 3  # the TensorBoard grid of an any-style system: the photos in the first 3 paintings of its dataset
SAMPLE_SIZE = 256  # long side of those paintings (and of AdaIN's calibration paintings)


def load_paintings(paths: list[str] | None) -> list[torch.Tensor]:
    """Painting files as (3, H, W) tensors at SAMPLE_SIZE: the grid's rows (and AdaIN's calibration)."""
    return [to_tensor(resize_long_side(load_image(path, "style painting"), SAMPLE_SIZE)) for path in paths or []]


class AnyStyleSystem(StyleSystem):
    """What the any-style systems (adain, arbitrary, wct) share: batches of (photo, painting) pairs from style_dataset,
    forward(content, style), a grid row per sample painting, and a step that is their losses() total."""

    uses_style_dataset = True
    sample_styles: list[torch.Tensor]  # set by the subclass: the grid's paintings, (3, H, W) each

    def read_paintings(self, calibration_styles: list[str] | None, sample_styles: list[str] | None) -> None:
        """Calibrate the network's feature scale on the first paintings (a checkpoint's scale replaces it on
        resume) and keep the grid's rows; each file is decoded once (the two lists mostly name the same)."""
        calibration_styles, sample_styles = calibration_styles or [], sample_styles or []
        wanted = list(dict.fromkeys([*calibration_styles, *sample_styles]))
        loaded = dict(zip(wanted, load_paintings(wanted)))
        self.network.calibrate([loaded[path] for path in calibration_styles])
        self.sample_styles = [loaded[path] for path in sample_styles]  # the TensorBoard grid: one row per painting

    def eval_painting(self) -> str | None:
        """Any painting: eval during training judges the first of the sample grid's."""
        return (self.hparams.sample_styles or [None])[0]

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.network(content, style)

    def sample_rows(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [self.network(images, style.unsqueeze(0).to(images.device)) for style in self.sample_styles]

    def losses(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def objective(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.losses(*batch)
