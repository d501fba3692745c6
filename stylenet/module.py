"""The LightningModule: photo -> transformer -> loss network -> losses -> Adam."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch

from stylenet import StylenetError
from stylenet.images import load_image, resize_long_side, to_tensor
from stylenet.loss_network import LossNetwork
from stylenet.losses import PerceptualLoss
from stylenet.transformer import TransformerNet

log = logging.getLogger(__name__)


class NonFiniteLoss(StylenetError):
    """A loss term became NaN or infinite."""


class StyleTransferModule(pl.LightningModule):
    """Trains a TransformerNet so that its output keeps the photo's content and takes one painting's style."""

    # Defaults are those of conf/ (model=transformer, loss_network=vgg19_caffe); training passes every value.
    def __init__(
        self,
        style_image: str,
        style_name: str = "style",
        channels: int = 32,
        num_residual_blocks: int = 5,
        style_size: int = 512,
        loss_arch: str = "vgg19",
        loss_weights: str = "caffe",
        content_layers: tuple[str, ...] = ("relu4_2",),
        style_layer_weights: dict[str, float] | None = None,
        content_weight: float = 1.0,
        style_weight: float = 0.3,
        tv_weight: float = 1.0e3,
        lr: float = 1e-3,
        on_nonfinite_loss: str = "stop",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.transformer = TransformerNet(channels, num_residual_blocks)
        style = resize_long_side(load_image(style_image, "style.image"), style_size)
        self.style_sha256 = hashlib.sha256(Path(style_image).read_bytes()).hexdigest()
        gatys_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
        style_layer_weights = dict(style_layer_weights or dict.fromkeys(gatys_layers, 1.0))
        loss_network = LossNetwork(loss_arch, loss_weights, [*content_layers, *style_layer_weights])
        self.criterion = PerceptualLoss(
            loss_network, to_tensor(style), content_layers, style_layer_weights, content_weight, style_weight, tv_weight
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.transformer(images)

    def training_step(self, content: torch.Tensor, batch_idx: int) -> torch.Tensor | None:
        stylized = self.transformer(content)  # (B, 3, H, W) in [0, 1]
        terms = self.criterion(stylized, content)  # weighted content, style, tv and their total
        if self.nonfinite(terms):
            return None  # on_nonfinite_loss=skip: no backward, no optimizer step for this batch
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

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.transformer.parameters(), lr=self.hparams.lr)
