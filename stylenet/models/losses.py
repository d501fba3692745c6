"""Perceptual losses (Gatys et al. 2016; Johnson et al. 2016): content, Gram-matrix style, total variation.

One implementation serves the feed-forward trainer and the pixel optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stylenet.core.errors import StylenetError
from stylenet.models.loss_network import LossNetwork, check_layers


def feature_products(flat: torch.Tensor) -> torch.Tensor:
    """flat (B, C, N) -> flat @ flat^T (B, C, C), in float32 even under autocast."""
    with torch.autocast(flat.device.type, enabled=False):
        return torch.bmm(flat, flat.transpose(1, 2))


class FeatureProducts(torch.autograd.Function):
    """feature_products() with a backward of one product, (dG + dG^T) @ flat, where autograd would take two
    (one per operand) and add them: 2.5x faster for relu1_2 at 256 px on a 2-core CPU."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, flat: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(flat)
        return feature_products(flat)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (flat,) = ctx.saved_tensors
        with torch.autocast(flat.device.type, enabled=False):
            return torch.bmm(grad + grad.transpose(1, 2), flat)


def gram_matrix(features: torch.Tensor, fused_backward: bool = True) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrix normalized by C*H*W (Johnson et al.), computed in float32.

    fused_backward=False leaves the products to autograd, as pytorch/examples does (`stylenet bench --baseline`).
    """
    batch, channels, height, width = features.shape
    flat = features.float().reshape(batch, channels, height * width)
    products = FeatureProducts.apply(flat) if fused_backward else feature_products(flat)
    return products / (channels * height * width)


def relative(loss: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A squared error divided by its target's mean square: comparable across layers, sizes and loss networks."""
    return loss / target.float().pow(2).mean().clamp_min(1e-8)


def content_loss(features: torch.Tensor, target: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Mean squared error between feature maps; with normalize, relative to the target's mean square."""
    error = F.mse_loss(features.float(), target.float())
    return relative(error, target) if normalize else error


def style_loss(
    features: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    layer_weights: Mapping[str, float],
    normalize: bool = False,
    fused_backward: bool = True,
) -> torch.Tensor:
    """Weighted sum over layers of the MSE between Gram matrices; targets (1 or B, C, C) broadcast over the batch.

    With normalize, each image's MSE is relative to its own target Gram's mean square (see relative()), so
    each painting of a multi-style batch is weighed on its own scale.
    """
    total = features[next(iter(layer_weights))].new_zeros((), dtype=torch.float32)
    for layer, weight in layer_weights.items():
        grams = gram_matrix(features[layer], fused_backward)  # (B, C, C)
        targets = target_grams[layer].float().expand_as(grams)
        if normalize:  # per image: (B,) errors over (B,) target scales
            error = ((grams - targets).pow(2).mean((1, 2)) / targets.pow(2).mean((1, 2)).clamp_min(1e-8)).mean()
        else:
            error = F.mse_loss(grams, targets)
        total = total + weight * error
    return total


def tv_loss(images: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference between neighbouring pixels, horizontally plus vertically."""
    horizontal = (images[..., :, 1:] - images[..., :, :-1]).float().pow(2).mean()
    vertical = (images[..., 1:, :] - images[..., :-1, :]).float().pow(2).mean()
    return horizontal + vertical


@dataclass
class TermInputs:
    """What a loss term may read for one batch."""

    stylized: torch.Tensor                    # (B, 3, H, W) in [0, 1]: what the loss judges
    features: Mapping[str, torch.Tensor]      # the loss network's features of `stylized`, every layer it reads
    content_targets: Mapping[str, torch.Tensor]  # the photos' features at the content layers
    grams: Mapping[str, torch.Tensor]         # the style Gram targets, (1 or B, C, C) per style layer
    criterion: PerceptualLoss                 # its layers, layer weights and normalize
    photos: torch.Tensor | None = None        # the photos themselves, when given (not only their features)
    network: Callable[[torch.Tensor], torch.Tensor] | None = None  # what made `stylized`, for terms that run it again


@dataclass(frozen=True)
class LossTerm:
    """One term of the perceptual objective, declared once: its name (the key of the terms a loss returns,
    TensorBoard's train/<name>_loss, `stylenet optimize`'s summary), the key of its weight (loss.<weight_key> in the
    training config, a column of `stylenet bench train`'s objective, --<weight-key> for `stylenet optimize` when it
    needs no network), and how it is computed, unweighted. optional: computed only when its weight is above 0 (a term
    that costs a second pass); others are always reported, 0 when weighted 0."""

    name: str
    weight_key: str
    compute: Callable[[TermInputs], torch.Tensor]
    layers: tuple[str, ...] = ()    # which of the loss's layer lists it reads: "content", "style" (none: pixels)
    needs_network: bool = False     # runs the network again (training only: `stylenet optimize` has none)
    optional: bool = False


LOSS_TERMS: dict[str, LossTerm] = {}


def register_loss_term(term: LossTerm) -> LossTerm:
    """Add a term to every perceptual objective (training systems, optimize, bench); its weight defaults to 0."""
    if term.name in LOSS_TERMS or term.name == "total":
        raise ValueError(f"loss term {term.name!r} is registered twice (or named 'total')")
    LOSS_TERMS[term.name] = term
    return term


def weight_keys() -> list[str]:
    return [term.weight_key for term in LOSS_TERMS.values()]


register_loss_term(LossTerm("content", "content_weight", layers=("content",), compute=lambda inputs: sum(
    content_loss(inputs.features[layer], inputs.content_targets[layer], inputs.criterion.normalize)
    for layer in inputs.criterion.content_layers)))
register_loss_term(LossTerm("style", "style_weight", layers=("style",), compute=lambda inputs: style_loss(
    inputs.features, inputs.grams, inputs.criterion.style_layer_weights, inputs.criterion.normalize,
    inputs.criterion.fast_ops)))
register_loss_term(LossTerm("tv", "tv_weight", compute=lambda inputs: tv_loss(inputs.stylized)))


class PerceptualLoss(nn.Module):
    """The weighted LOSS_TERMS (content, style, tv, ...) for fixed style image(s); returns a dict of weighted named
    terms and their 'total'.

    weights: {weight_key: weight} (content_weight, style_weight, tv_weight, ...); a term not given weighs 0.
    The style Gram targets are computed once here and kept in non-persistent buffers (no style images: none,
    and forward() takes each batch's targets, painting_grams() of its paintings, as model=arbitrary does); several style images
    mix their Gram matrices with `style_blend` weights, or, with `separate_styles`, stay one target each
    (S, C, C), and forward() picks each image's painting by `style_ids` (the multi-style network).
    With `normalize`, each content and style layer's error
    is relative to its target's mean square and the style layers' weights are divided by their sum, so one
    style_weight behaves alike across layers, image sizes and loss networks (the optimizer uses this).
    """

    def __init__(
        self,
        loss_network: LossNetwork,
        style_image: torch.Tensor | Sequence[torch.Tensor],
        content_layers: Sequence[str],
        style_layer_weights: Mapping[str, float],
        weights: Mapping[str, float],
        style_blend: Sequence[float] | None = None,
        normalize: bool = False,
        separate_styles: bool = False,
    ) -> None:
        super().__init__()
        check_layers(loss_network.arch, content_layers, "loss_network.content_layers")
        check_layers(loss_network.arch, style_layer_weights, "loss_network.style_layers")
        if not content_layers or not style_layer_weights:
            raise StylenetError("loss_network: content_layers and style_layers each need at least one layer")
        unknown = [key for key in weights if key not in weight_keys()]
        if unknown:
            raise StylenetError(f"loss weight {unknown[0]!r} names no loss term; the terms' weights are {', '.join(weight_keys())}")
        self.loss_network = loss_network
        self.content_layers = list(content_layers)
        self.style_layer_weights = dict(style_layer_weights)
        self.weights = {key: float(weights.get(key, 0.0)) for key in weight_keys()}
        self.normalize = normalize
        self.fast_ops = True  # the Gram matrices' fused backward (see gram_matrix)
        if normalize:
            total = sum(self.style_layer_weights.values()) or 1.0
            self.style_layer_weights = {layer: weight / total for layer, weight in self.style_layer_weights.items()}
        self.layers = list(dict.fromkeys(self.content_layers + list(self.style_layer_weights)))
        styles = [style_image] if isinstance(style_image, torch.Tensor) else list(style_image)
        blend = list(style_blend) if style_blend is not None else [1.0] * len(styles)
        if separate_styles:
            per_style = [self.blended_grams([style], [1.0]) for style in styles]
            grams = {layer: torch.cat([g[layer] for g in per_style]) for layer in self.style_layers}  # (S, C, C)
        else:
            grams = self.blended_grams(styles, blend)  # (1, C, C)
        for layer, gram in grams.items():
            self.register_buffer(f"style_gram_{layer}", gram, persistent=False)

    def blended_grams(self, styles: list[torch.Tensor], blend: list[float]) -> dict[str, torch.Tensor]:
        """sum_i blend_i * gram(style_i) / sum_i blend_i, per style layer."""
        grams: dict[str, torch.Tensor] = {}
        total = sum(blend)
        with torch.no_grad():
            for style, weight in zip(styles, blend):
                features = self.loss_network(style.unsqueeze(0) if style.dim() == 3 else style, self.style_layers)
                for layer in self.style_layers:
                    grams[layer] = grams.get(layer, 0) + weight / total * gram_matrix(features[layer])
        return grams

    @property
    def style_layers(self) -> list[str]:
        return list(self.style_layer_weights)

    def style_grams(self, style_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Each style layer's Gram target: (1, C, C), or (B, C, C) for the paintings style_ids (B,) pick."""
        grams = {layer: getattr(self, f"style_gram_{layer}") for layer in self.style_layers}
        return grams if style_ids is None else {layer: gram[style_ids] for layer, gram in grams.items()}

    @torch.no_grad()
    def painting_grams(self, paintings: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each style layer's Gram matrices of a batch of paintings (B, 3, H, W): (B, C, C), one target per image."""
        features = self.loss_network(paintings, self.style_layers)
        return {layer: gram_matrix(features[layer]) for layer in self.style_layers}

    def content_features(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """The content targets of a batch of photos (no gradient)."""
        with torch.no_grad():
            return self.loss_network(content, self.content_layers)

    def forward(
        self, stylized: torch.Tensor, content: torch.Tensor | Mapping[str, torch.Tensor],
        style_ids: torch.Tensor | None = None, grams: Mapping[str, torch.Tensor] | None = None,
        network: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """stylized (B, 3, H, W) RGB in [0, 1]; content: the photos, or their content_features() when fixed;
        style_ids (B,): each image's painting, with separate_styles; grams: this batch's own targets instead;
        network: what made `stylized` from the photos (terms that need it: the stability term)."""
        inputs = TermInputs(
            stylized=stylized, features=self.loss_network(stylized, self.layers),
            content_targets=content if isinstance(content, Mapping) else self.content_features(content),
            grams=self.style_grams(style_ids) if grams is None else grams, criterion=self,
            photos=None if isinstance(content, Mapping) else content, network=network,
        )
        terms: dict[str, torch.Tensor] = {}
        for term in LOSS_TERMS.values():
            weight = self.weights[term.weight_key]
            if term.optional and weight == 0:
                continue
            if term.needs_network and (network is None or inputs.photos is None):
                raise StylenetError(f"loss.{term.weight_key}: the {term.name} term runs the network again; this "
                                    "objective has none (set it to 0)")
            terms[term.name] = weight * term.compute(inputs)
        terms["total"] = sum(terms.values())
        return terms


def random_motion(images: torch.Tensor, generator: torch.Generator | None = None, shift: float = 4.0,
                  degrees: float = 1.0, zoom: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """A small random camera motion per image, as between two video frames: (B, H, W, 2) sampling grid for
    F.grid_sample and the (B, 1, H, W) mask of pixels that stay inside the image. shift in px, degrees of
    rotation, zoom as a fraction; each drawn uniformly in +-."""
    batch, _, height, width = images.shape
    draw = lambda: (torch.rand(batch, generator=generator) * 2 - 1)  # noqa: E731
    angle, scale = draw() * math.radians(degrees), 1 + draw() * zoom
    dx, dy = draw() * shift * 2 / width, draw() * shift * 2 / height  # grid units: the image spans [-1, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin * height / width, dx], 1),
                         torch.stack([sin * width / height, cos, dy], 1)], 1).to(images)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    inside = (grid.abs() <= 1).all(dim=3, keepdim=True).permute(0, 3, 1, 2).to(images)
    return grid, inside


def stability_loss(network: Callable[[torch.Tensor], torch.Tensor], content: torch.Tensor, stylized: torch.Tensor,
                   generator: torch.Generator | None = None, noise: float = 0.02) -> torch.Tensor:
    """Temporal stability without video (Gupta et al. 2017; ReCoNet): the output for the photo moved by a small
    random motion, with slight sensor noise, should be the output for the photo moved the same way. Mean squared
    difference in [0, 1] pixels over the pixels that stay inside the frame."""
    grid, inside = random_motion(content, generator)
    moved = F.grid_sample(content, grid, mode="bilinear", padding_mode="border", align_corners=False)
    moved = (moved + noise * torch.randn(moved.shape, generator=generator).to(moved)).clamp(0, 1)
    expected = F.grid_sample(stylized, grid, mode="bilinear", padding_mode="border", align_corners=False)
    difference = (network(moved) - expected).square() * inside
    return difference.sum() / (inside.sum() * content.shape[1]).clamp_min(1)


register_loss_term(LossTerm(
    "temporal", "temporal_weight", needs_network=True, optional=True,
    compute=lambda inputs: stability_loss(inputs.network, inputs.photos, inputs.stylized),
))
