"""Optimization-based stylization (Gatys et al. 2016): optimize one image's pixels under the frozen VGG.

It uses the training's loss network and losses (PerceptualLoss with normalize=True), and goes coarse to fine:
optimize at the smallest scale, upsample the result, continue at the next with half the steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from stylenet.core.errors import StylenetError
from stylenet.core.images import preserve_color, resize_long_side, to_pil, to_tensor
from stylenet.models.loss_network import PRESETS, LossNetwork
from stylenet.models.losses import LOSS_TERMS, PerceptualLoss
from stylenet.core.device import auto_precision, autocast, resolve_device

log = logging.getLogger(__name__)


def optimize_weight_keys() -> list[str]:
    """The loss terms `stylenet optimize` can weigh: every term that does not run a network (the pixels are the
    variable), each a --<weight-key> flag."""
    return [term.weight_key for term in LOSS_TERMS.values() if not term.needs_network]


@dataclass
class OptimizeSettings:
    """Every knob of `stylenet optimize`; the defaults give a painted photo without tuning."""

    size: int = 512                    # long side of the result (px)
    scales: list[int] = field(default_factory=list)  # coarse-to-fine long sides; empty: size/2, size (>= 256)
    steps: int = 150                   # evaluations at the first scale; each later scale gets half
    optimizer: str = "lbfgs"           # L-BFGS as Gatys et al. and jcjohnson/neural-style; adam also works
    init: str = "content"              # content | noise | style
    # {weight_key: weight} of the loss terms (models/losses.LOSS_TERMS; one not named weighs 0): style 10 on relative
    # errors (10, 100, 1000 all painted a 192-px photo, 10 kept it clearest), TV on [0, 1] pixels
    weights: dict[str, float] = field(default_factory=lambda: {"content_weight": 1.0, "style_weight": 10.0, "tv_weight": 1.0})
    loss_network: str = "vgg19_caffe"  # a loss_network.PRESETS name: its layers (Gatys et al. for VGG-19)
    adam_lr: float = 0.02              # per step, in [0, 1] pixel units
    preserve_color: bool = False
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"            # auto: bf16 autocast where the hardware computes it natively, else fp32

    def resolved_precision(self) -> str:
        """fp32 or bf16: what "auto" means on this device (Gram matrices and losses stay fp32 either way)."""
        return auto_precision(resolve_device(self.device)) if self.precision == "auto" else self.precision

    def scale_list(self) -> list[int]:
        if self.scales:
            return list(self.scales)
        return [self.size // 2, self.size] if self.size >= 512 else [self.size]

    def steps_per_scale(self) -> list[int]:
        """Loss evaluations at each scale: `steps` at the first, half as many at each later one."""
        return [max(1, self.steps >> index) for index in range(len(self.scale_list()))]

    def validate(self, num_styles: int, blend: list[float]) -> None:
        checks = [
            (self.optimizer in ("lbfgs", "adam"), f"--optimizer {self.optimizer}: valid are lbfgs, adam"),
            (self.init in ("content", "noise", "style"), f"--init {self.init}: valid are content, noise, style"),
            (self.loss_network in PRESETS, f"--loss-network {self.loss_network}: valid are {', '.join(sorted(PRESETS))}"),
            (all(s >= 32 for s in self.scale_list()), f"--size/--scales {self.scale_list()}: each must be >= 32 px"),
            (self.steps >= 1, f"--steps {self.steps}: must be >= 1"),
            (all(w >= 0 for w in self.weights.values()), "--*-weight: weights must be >= 0"),
            (self.weights.get("content_weight", 0) + self.weights.get("style_weight", 0) > 0,
             "--content-weight and --style-weight are both 0: nothing to optimize"),
            (set(self.weights) <= set(optimize_weight_keys()),
             f"loss weights {', '.join(sorted(self.weights))}: stylenet optimize weighs {', '.join(optimize_weight_keys())}"),
            (len(blend) == num_styles, f"--style-blend has {len(blend)} weights for {num_styles} style image(s)"),
            (min(blend) >= 0 and sum(blend) > 0, f"--style-blend {blend}: weights must be >= 0, not all 0"),
            (self.precision in ("auto", "fp32", "bf16"), f"--precision {self.precision}: valid are auto, fp32, bf16"),
        ]
        for ok, message in checks:
            if not ok:
                raise StylenetError(message)


def loss_builder(settings: OptimizeSettings) -> Callable[[list[torch.Tensor], list[float]], PerceptualLoss]:
    """Load the loss network once; the returned function makes the loss for one scale's style images."""
    preset = PRESETS[settings.loss_network]
    weights = dict.fromkeys(preset.style_layers, 1.0)  # equal, as every conf/loss_network file
    network = LossNetwork(preset.arch, preset.weights, [*preset.content_layers, *weights]).to(settings.device)

    def build(styles: list[torch.Tensor], blend: list[float]) -> PerceptualLoss:
        return PerceptualLoss(network, styles, list(preset.content_layers), weights, settings.weights, style_blend=blend,
                              normalize=True)

    return build


def initial_image(settings: OptimizeSettings, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    if settings.init == "content":
        return content.clone()
    if settings.init == "style":
        return F.interpolate(style.unsqueeze(0), size=content.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
    generator = torch.Generator().manual_seed(settings.seed)
    return torch.rand(content.shape, generator=generator).to(content.device)


def optimize(
    content: Image.Image,
    styles: list[Image.Image],
    blend: list[float] | None = None,
    settings: OptimizeSettings | None = None,
    on_image: Callable[[Image.Image, int], None] | None = None,
    save_every: int = 0,
) -> tuple[Image.Image, dict[str, float]]:
    """Paint `content` in the blended style(s); returns the image and a summary (steps, seconds, final losses)."""
    settings = settings or OptimizeSettings()
    blend = list(blend) if blend is not None else [1.0] * len(styles)
    settings.validate(len(styles), blend)
    torch.manual_seed(settings.seed)
    started, done, image, terms = time.perf_counter(), 0, None, {}
    scales, build_loss = settings.scale_list(), loss_builder(settings)
    steps_per_scale = settings.steps_per_scale()
    with tqdm(total=sum(steps_per_scale), desc="optimize", unit="step") as bar:
        for scale, steps in zip(scales, steps_per_scale):
            photo = to_tensor(resize_long_side(content, scale)).unsqueeze(0).to(settings.device)  # (1, 3, H, W)
            style_tensors = [to_tensor(resize_long_side(style, scale)).to(settings.device) for style in styles]
            criterion = build_loss(style_tensors, blend)
            targets = criterion.content_features(photo)
            if image is None:
                image = initial_image(settings, photo, style_tensors[0])
            else:  # coarse to fine: the last scale's result, upsampled
                image = F.interpolate(image, size=photo.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
            image = image.detach().contiguous().requires_grad_(True)
            terms = run_optimizer(settings, criterion, image, targets, steps, bar, on_image, save_every, done)
            done += steps
    result = to_pil(image.detach().clamp(0, 1))
    if settings.preserve_color:
        result = preserve_color(result, content)
    return result, {"steps": done, "seconds": time.perf_counter() - started, "precision": settings.resolved_precision(), **terms}


def run_optimizer(
    settings: OptimizeSettings, criterion: PerceptualLoss, image: torch.Tensor, targets: dict[str, torch.Tensor],
    steps: int, bar: tqdm, on_image: Callable[[Image.Image, int], None] | None, save_every: int, offset: int,
) -> dict[str, float]:
    """Run `steps` loss evaluations of L-BFGS or Adam on `image` in place; returns the last loss terms."""
    mixed = autocast(image.device, settings.resolved_precision())
    last: dict[str, float] = {}
    count = 0

    def closure() -> torch.Tensor:
        nonlocal count
        optimizer.zero_grad()
        with mixed:
            terms = criterion(image, targets)
        terms["total"].backward()
        image.grad = image.grad.contiguous()  # L-BFGS flattens it with view()
        count += 1
        last.update({name: value.item() for name, value in terms.items()})
        bar.update(1)
        bar.set_postfix({name: f"{value:.3g}" for name, value in last.items()}, refresh=False)
        if on_image and save_every and (offset + count) % save_every == 0:
            on_image(to_pil(image.detach().clamp(0, 1)), offset + count)
        return terms["total"]

    if settings.optimizer == "lbfgs":
        optimizer = torch.optim.LBFGS([image], max_iter=steps, max_eval=steps, history_size=50, tolerance_grad=0, tolerance_change=0)
        optimizer.step(closure)
    else:
        optimizer = torch.optim.Adam([image], lr=settings.adam_lr)
        for _ in range(steps):
            optimizer.step(closure)
    bar.update(steps - count)  # L-BFGS may stop early on a flat loss
    if not all(torch.isfinite(torch.tensor(list(last.values())))):
        raise StylenetError(f"the loss became non-finite ({last}); lower --style-weight or use --optimizer lbfgs")
    return last
