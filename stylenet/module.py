"""The LightningModules: photo -> transformer -> loss network -> losses -> Adam; and AdaIN's decoder training."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from stylenet import StylenetError
from stylenet.adain import ADAIN_LAYER, ENCODER_LAYERS, AdaINNet, adain, channel_stats
from stylenet.images import load_image, resize_long_side, to_tensor
from stylenet.loss_network import LossNetwork
from stylenet.losses import PerceptualLoss
from stylenet.transformer import MultiStyleTransformerNet, TransformerNet

log = logging.getLogger(__name__)


class NonFiniteLoss(StylenetError):
    """A loss term became NaN or infinite."""


class StyleSystem(pl.LightningModule):
    """What the training systems share: the on_nonfinite_loss policy and how a step's terms are reported."""

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


class StyleTransferModule(StyleSystem):
    """Trains a TransformerNet so that its output keeps the photo's content and takes one painting's style.

    With lists of style images and names (model=multistyle), it trains one MultiStyleTransformerNet for all
    of them: each photo of a batch gets a random painting, its norm parameters and its Gram targets.
    """

    # Defaults are those of conf/ (model=transformer, loss_network=vgg19_caffe); training passes every value.
    def __init__(
        self,
        style_image: str | list[str],
        style_name: str | list[str] = "style",
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
        self.multistyle = isinstance(style_image, list)
        images = list(style_image) if self.multistyle else [style_image]
        names = list(style_name) if self.multistyle else [style_name]
        self.transformer: TransformerNet | MultiStyleTransformerNet = (
            MultiStyleTransformerNet(names, channels, num_residual_blocks) if self.multistyle
            else TransformerNet(channels, num_residual_blocks)
        )
        styles = [to_tensor(resize_long_side(load_image(path, "style.image"), style_size)) for path in images]
        self.style_sha256 = [hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in images]
        gatys_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
        style_layer_weights = dict(style_layer_weights or dict.fromkeys(gatys_layers, 1.0))
        loss_network = LossNetwork(loss_arch, loss_weights, [*content_layers, *style_layer_weights])
        self.criterion = PerceptualLoss(
            loss_network, styles, content_layers, style_layer_weights, content_weight, style_weight, tv_weight,
            separate_styles=self.multistyle,
        )

    def forward(self, images: torch.Tensor, *mix: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1]; for model=multistyle also the style weights (1 or B, S)."""
        return self.transformer(images, *mix)

    def sample_rows(self, images: torch.Tensor) -> list[torch.Tensor]:
        """What the TensorBoard grid shows below the photos: their stylized versions, a row per painting."""
        if not self.multistyle:
            return [self.transformer(images)]
        one_hot = torch.eye(len(self.transformer.styles), device=images.device)  # row i: style i alone
        return [self.transformer(images, one_hot[index : index + 1]) for index in range(len(one_hot))]

    def training_step(self, content: torch.Tensor, batch_idx: int) -> torch.Tensor | None:
        if self.multistyle:  # each photo of the batch gets a random painting
            style_ids = torch.randint(len(self.transformer.styles), (content.shape[0],), device=content.device)
            stylized = self.transformer(content, F.one_hot(style_ids, len(self.transformer.styles)).float())
        else:
            style_ids, stylized = None, self.transformer(content)  # (B, 3, H, W) in [0, 1]
        return self.finish_step(self.criterion(stylized, content, style_ids))  # content, style, tv and total

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.transformer.parameters(), lr=self.hparams.lr)


class AdaINModule(StyleSystem):
    """Trains the decoder of an AdaINNet (Huang & Belongie 2017) on (photo, painting) pairs; the encoder is the
    frozen VGG-19 of the loss network. Loss: content = MSE between the output's relu4_1 features and the AdaIN
    target; style = MSE of channel means plus MSE of channel stds at relu1_1..relu4_1."""

    def __init__(
        self,
        channels: int = 64,
        loss_weights: str = "caffe",
        content_weight: float = 1.0,
        style_weight: float = 10.0,
        lr: float = 1e-4,
        on_nonfinite_loss: str = "stop",
        sample_styles: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        encoder = LossNetwork("vgg19", loss_weights, ENCODER_LAYERS)  # downloads torchvision's weights if asked
        self.transformer = AdaINNet(channels, loss_weights, encoder.conv_state())
        paintings = [to_tensor(resize_long_side(load_image(path, "sample style"), 256)) for path in sample_styles or []]
        self.sample_styles = paintings  # the TensorBoard grid: one row per painting
        self.transformer.calibrate(paintings)  # overwritten by the checkpoint's value on resume

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.transformer(content, style)

    def sample_rows(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [self.transformer(images, style.unsqueeze(0).to(images.device)) for style in self.sample_styles]

    def losses(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted content and style terms and their total for a batch of (photo, painting) pairs."""
        network = self.transformer
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

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        return self.finish_step(self.losses(*batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.transformer.decoder.parameters(), lr=self.hparams.lr)  # Huang & Belongie: 1e-4
