"""Load any trained model and stylize images with it: imports neither Hydra nor Lightning.

    model = stylenet.load_model("model.safetensors")
    result = model.stylize(Image.open("photo.jpg"), strength=0.8)

StyleModel is the PIL pipeline around a network: the file's model kind binds the style (stylenet/models/kinds/),
the Runner (tiling.py) runs it on the device and in the precision of device.py, whole or in tiles.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps

from stylenet.core.errors import StylenetError
from stylenet.models.registry import StyleInput, find_kind
from stylenet.core.paths import data_root, painting_path
from stylenet.models.formats import load_network
from stylenet.core.images import preserve_color, resize_long_side, split_alpha, to_pil, to_tensor
from stylenet.models.kinds import DEFAULT_KIND, get_kind
from stylenet.running.options import check_strength
from stylenet.running.strokes import paint_at_stroke_size, stroke_scale, working_size
from stylenet.running.tiling import Runner
from stylenet.models.zoo import resolve as resolve_model

BOUND_PAINTINGS = 8  # paintings an any-style model keeps bound (a WCT side at 4 levels: 1.4 MB each)
ANY_STYLE_MODEL = "any"  # the ready-made model that --style-image uses when no --model is given
MAX_STYLE_SIZE = 4096  # a painting's long side for any-style models: a 4K painting; larger only fills memory


class StyleModel:
    """A trained style network, its metadata and where it runs; stylize() maps a PIL image to a PIL image.

    The style is an argument, not state: a multi-style model runs its first style, and with_style("great_wave")
    returns the same model bound to another style or a blend; an any-style model (adain, arbitrary, wct) needs
    with_paintings([painting]) first. Each returns a new StyleModel that shares the network, the device and the
    painting cache with this one and leaves this one as it was, so two threads may stylize with different styles
    from one loaded model at once.
    """

    def __init__(
        self, network: Callable[..., torch.Tensor], metadata: dict[str, Any],
        device: str | torch.device = "cpu", precision: str = "auto",
    ) -> None:
        self.metadata = metadata
        # what file it came from (formats.load_network: safetensors, checkpoint, torchscript, onnx, ...); "module":
        # a network handed over in memory
        self.file_format: str = metadata.get("format", "module")
        self.model_kind = get_kind(metadata.get("architecture", DEFAULT_KIND))
        if precision not in ("fp32", "auto") and self.file_format == "onnx":
            raise StylenetError("ONNX models run in fp32 only (use --precision fp32, or the .safetensors model)")
        self.runner = Runner(device, precision, autocast=self.file_format != "onnx")
        if isinstance(network, torch.nn.Module):
            network = network.eval().to(self.runner.device)
        self.loaded = network  # as the file holds it: what export writes
        # the kind's torch module with its weights (a .safetensors, .ckpt or state dict), which stylenet can tile, cast,
        # compile or re-export; False for a TorchScript or ONNX file, a compiled graph that runs as it is
        self.has_weights = isinstance(network, self.model_kind.network)
        # AdaIN's strength blends features, which needs the eager network; other models blend pixels
        self.feature_strength = self.model_kind.feature_strength and self.has_weights
        self.styles: list[str] = list(metadata.get("styles") or [])  # a multi-style model's paintings
        self.bound: Callable[..., torch.Tensor] | None = network  # images -> images: loaded with its style bound
        # any-style models: the last few paintings' bound forms (their statistics, computed once per painting and
        # size), shared by every model with_paintings returns, so a page or a loop that returns to a painting does
        # not read it again
        self.painting_cache = PaintingCache(BOUND_PAINTINGS)
        # whole images on another engine (ONNX Runtime or torch.compile: stylenet.running.backends.with_backend);
        # tiles stay eager
        self.whole: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.whole_engine = "eager"  # what self.whole is: "onnx" or "compile"
        if self.model_kind.style_input is StyleInput.WEIGHTS:
            if not self.styles:
                raise StylenetError("this multi-style model's metadata lists no styles; re-export it from its .ckpt")
            self.bound = self.style_network(self.styles[0])
        elif self.model_kind.style_input is StyleInput.IMAGE:
            self.bound = None  # until with_paintings()

    def with_style(self, spec: str | dict[str, float]) -> StyleModel:
        """Multi-style models: this model in one style ("great_wave") or a blend ("starry_night=0.5,great_wave=0.5"
        or a dict); this model is left as it was."""
        return self.bound_to(self.style_network(spec))

    def style_network(self, spec: str | dict[str, float]) -> Callable[..., torch.Tensor]:
        if self.model_kind.style_input is not StyleInput.WEIGHTS:
            name = self.model_kind.name
            raise StylenetError(
                f"--style picks a painting of a multi-style model; this {name} model "
                + ("takes --style-image PAINTING" if self.model_kind.style_input is StyleInput.IMAGE else "holds one style")
            )
        weights = parse_style_mix(spec, self.styles) if isinstance(spec, str) else dict(spec)
        unknown = [name for name in weights if name not in self.styles]
        if unknown:
            raise StylenetError(f"style '{unknown[0]}' is not in this model; it holds {', '.join(self.styles)}")
        check_weights(list(weights.values()), f"style weights must be numbers >= 0 with a positive sum, got {spec}")
        one_hot = torch.eye(len(self.styles))
        rows = [one_hot[self.styles.index(name)].unsqueeze(0) for name in weights]  # (1, S) each
        return self.model_kind.bind(self.loaded, rows, list(weights.values()))

    def with_paintings(
        self, images: list[Image.Image], weights: list[float] | None = None, style_size: int | None = None,
    ) -> StyleModel:
        """Any-style models: this model painting with these paintings (any, seen in training or not), blended by
        weights; this model is left as it was.
        style_size: the paintings' long side in px (default: the kind's, 512 for AdaIN, 256 for arbitrary)."""
        if self.model_kind.style_input is not StyleInput.IMAGE:
            raise StylenetError(
                f"--style-image needs an any-style model (--model {ANY_STYLE_MODEL}, or one trained with model=arbitrary "
                f"or model=adain); this is a {self.model_kind.name} model"
                + (f": pick one of its styles with --style ({', '.join(self.styles)})" if self.styles else "")
            )
        weights = list(weights) if weights is not None else [1.0] * len(images)
        message = "give one or more style images, each with a weight >= 0 (positive sum)"
        if not images or len(weights) != len(images):
            raise StylenetError(message)
        check_weights(weights, message)
        style_size = self.model_kind.style_size if style_size is None else style_size
        if not 16 <= style_size <= MAX_STYLE_SIZE:
            raise StylenetError(f"--style-size {style_size}: must be between 16 and {MAX_STYLE_SIZE} px")
        paintings = [to_tensor(resize_long_side(ImageOps.exif_transpose(image).convert("RGB"), style_size)).unsqueeze(0)
                     for image in images]
        key = hashlib.sha256(repr(weights).encode() + b"".join(p.numpy().tobytes() for p in paintings)).hexdigest()
        bound = self.painting_cache.get(key, lambda: self.model_kind.bind(
            self.loaded, [p.to(self.runner.device) for p in paintings], weights))
        return self.bound_to(bound)

    def styled(
        self, style: str | dict[str, float] | None = None, paintings: list[Image.Image] | None = None,
        weights: list[float] | None = None, style_size: int | None = None,
    ) -> StyleModel:
        """This model bound to a style the way its kind takes one: `style` (a multi-style model's name or blend)
        and/or `paintings` (an any-style model's, blended by weights); neither: as loaded. Each refuses a model
        of another kind in one line."""
        model = self if style is None else self.with_style(style)
        return model if not paintings else model.with_paintings(paintings, weights, style_size)

    def bound_to(self, network: Callable[..., torch.Tensor]) -> StyleModel:
        """A copy of this model (sharing its network, runner and painting cache) that runs `network` eager."""
        view = copy.copy(self)
        view.bound, view.whole, view.whole_engine = network, None, "eager"
        return view

    @property
    def device(self) -> torch.device:
        return self.runner.device

    @property
    def precision(self) -> str:
        return self.runner.precision

    @property
    def working_size(self) -> int:
        """The long side (px) at which this model's look is defined: its file's working_size, else the size it was
        judged at (metadata eval.size, 256 for the ready-made models), else WORKING_SIZE. The default stroke size
        paints every photo as this size is painted."""
        return working_size(self.metadata)

    @property
    def engine(self) -> str:
        """What runs whole images: "eager" (PyTorch), "onnx" (ONNX Runtime: an .onnx file or --backend onnx),
        "compile" (torch.compile) or "torchscript" (a TorchScript file's interpreter)."""
        if self.whole is not None:
            return self.whole_engine
        return "eager" if self.has_weights else self.file_format

    @property
    def tile_network(self) -> torch.nn.Module | None:
        """The bound eager network when the Runner may run it in tiles (a kind that tiles, its weights loaded), else
        None: whole images only."""
        eager = self.has_weights and self.model_kind.tileable and isinstance(self.bound, torch.nn.Module)
        return self.bound if eager else None

    @property
    def plain_network(self) -> torch.nn.Module | None:
        """The bound network when it is a single-style network of a registered kind with an ONNX export (a
        per-painting network, a multi-style or arbitrary model's blend specialized to plain weights), which
        ONNX Runtime can run; else None (AdaIN and WCT bind a painting into a stylizer of their own)."""
        kind = find_kind(self.bound) if self.has_weights else None
        return self.bound if kind is not None and kind.no_onnx is None and kind.style_input is StyleInput.NONE else None

    def __repr__(self) -> str:
        style = (self.metadata.get("style") or {}).get("name")
        return (f"StyleModel(kind={self.model_kind.name!r}, format={self.file_format!r}, style={style!r}, "
                f"device='{self.device}', precision={self.precision!r}, engine={self.engine!r})")

    @torch.inference_mode()
    def stylize_tensor(
        self, images: torch.Tensor, tile: int | None = None, strength: float = 1.0, stroke_size: float | None = 1.0,
    ) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, H, W) in [0, 1] on the same device as the input.

        tile: None picks tiling only when the image would not fit in memory, 0 never tiles, N tiles N px.
        strength: 0 the photo, 1 the full style; AdaIN blends features (the paper's alpha), others blend pixels.
        stroke_size: 1 (the default here) runs the network at the images' size; S paints strokes S times larger,
        None keeps the look of the model's working size (stylenet/running/strokes.py; stylize()'s default).
        """
        check_strength(strength)
        scale = stroke_scale(*images.shape[-2:], self.working_size, stroke_size)
        if self.bound is None:
            raise StylenetError("an any-style model stylizes with a painting you give it: pass --style-image PAINTING.jpg "
                                "(Python: model.with_paintings([Image.open(...)]))")
        network = self.whole or self.bound
        if self.feature_strength and strength != 1.0:
            network = functools.partial(self.bound, alpha=strength)
        stylized = paint_at_stroke_size(lambda copy: self.runner(network, copy, tile, self.tile_network), images, scale)
        if strength != 1.0 and not self.feature_strength:
            stylized = torch.lerp(images.to(stylized), stylized, strength)
        return stylized

    def network_strength(self, strength: float) -> float:
        """The strength to run the network with before finish(): the strength itself where it blends features
        inside the network (AdaIN, WCT with their weights), else 1 (finish() blends pixels)."""
        return strength if self.feature_strength else 1.0

    def finishes(self, strength: float, preserve_colors: bool) -> bool:
        """Whether finish() changes anything for these settings (else its picture is the network's)."""
        return preserve_colors or (strength < 1.0 and not self.feature_strength)

    def finish(self, stylized: Image.Image, photo: Image.Image, strength: float, preserve_colors: bool) -> Image.Image:
        """What follows the network for a photo or a video frame: the photo's colours kept (preserve_colors), then
        the pixel blend with the photo by strength (AdaIN and WCT blended features inside the network instead).
        The page and the web export do the same, in this order."""
        if preserve_colors:
            stylized = preserve_color(stylized, photo)
        if strength < 1.0 and not self.feature_strength:
            stylized = Image.blend(photo, stylized, strength)
        return stylized

    def stylize(
        self, image: Image.Image, size: int | None = None, scale: float | None = None, strength: float = 1.0,
        preserve_colors: bool = False, tile: int | None = None, stroke_size: float | None = None,
    ) -> Image.Image:
        """Stylize a PIL image (any mode; EXIF orientation applied; alpha carried through unchanged).

        size: long side of the result in px; scale: factor on the input size (default: the input's size).
        strength: 0 returns the photo, 1 the full style, in between blends them (pixels; for AdaIN with its
        weights, the paper's blend of content and style features instead).
        preserve_colors: keep the photo's colours, take only the luminance from the style.
        stroke_size: None (default) keeps the look of the model's working size at any size, only sharper; 1 the
        strokes the network paints (a fine grain on a large photo), 2 twice as large, 0.5 half.
        """
        check_strength(strength)
        image = ImageOps.exif_transpose(image)
        rgb, alpha = split_alpha(image)
        rgb = resize(rgb, target_size(rgb.size, size, scale))
        network_strength = self.network_strength(strength)
        stylized = to_pil(self.stylize_tensor(to_tensor(rgb).unsqueeze(0), tile, network_strength, stroke_size))
        stylized = self.finish(stylized, rgb, strength, preserve_colors)
        if alpha is not None:
            stylized.putalpha(resize(alpha, stylized.size))
        return stylized


class PaintingCache:
    """The bound forms of the last few paintings an any-style model was given, newest last; safe to share between
    threads (a page's requests). A painting bound twice at once is computed twice, kept once."""

    def __init__(self, size: int) -> None:
        self.size, self.bound, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key: str, bind: Callable[[], Callable[..., torch.Tensor]]) -> Callable[..., torch.Tensor]:
        with self.lock:
            if key in self.bound:
                self.bound.move_to_end(key)
                return self.bound[key]
        network = bind()  # outside the lock: reading a painting takes a while, other requests go on
        with self.lock:
            self.bound[key] = network
            while len(self.bound) > self.size:
                self.bound.popitem(last=False)
        return network

    def clear(self) -> None:
        with self.lock:
            self.bound.clear()


def check_weights(weights: list[float], message: str) -> None:
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise StylenetError(message)


def parse_style_mix(spec: str, styles: list[str]) -> dict[str, float]:
    """"great_wave" -> {great_wave: 1}; "starry_night=0.5,great_wave=0.5" -> those weights."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, weight = part.partition("=")
        try:
            weights[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise StylenetError(f"--style {spec}: '{weight}' is not a number (write NAME or NAME=W,NAME=W)") from None
    if not weights:
        raise StylenetError(f"--style is empty; this model holds {', '.join(styles)}")
    return weights


def target_size(size: tuple[int, int], long_side: int | None, scale: float | None) -> tuple[int, int]:
    if long_side is not None and scale is not None:
        raise StylenetError("give either a size or a scale, not both")
    if long_side is not None:
        if long_side < 1:
            raise StylenetError(f"size must be a positive number of pixels, got {long_side}")
        scale = long_side / max(size)
    if scale is None:
        return size
    if scale <= 0:
        raise StylenetError(f"scale must be positive, got {scale}")
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def load_model(path: str | Path, device: str | torch.device = "auto", precision: str = "auto") -> StyleModel:
    """Load any stylenet model file (.ckpt, .safetensors, TorchScript, ONNX, or a pytorch/examples state dict), or a
    ready-made model by name ("starry_night"; `stylenet models` lists them). A file path wins over a name.

    precision: "auto" (bf16 where the hardware computes it natively, else fp32), "fp32", "bf16" or "fp16" (CUDA).
    """
    network, metadata = load_network(resolve_model(path))
    return StyleModel(network, metadata, device, precision)


def painting_for(model: Any, style: str | None, style_image: Path | None) -> Path:
    """The painting a model is judged against: --style-image if given, else the one its metadata names."""
    if style_image is not None:
        return style_image.resolve()
    if model.model_kind.style_input is StyleInput.IMAGE:
        raise StylenetError("this any-style model takes any painting: pass --style-image PAINTING to evaluate it with")
    described = model.metadata.get("style") or {}
    names = described.get("names") or described.get("name")
    images = described.get("images") or described.get("image")
    if isinstance(names, list) and isinstance(images, list):  # a multi-style model: the chosen style's painting
        if style is not None and style not in names:
            raise StylenetError(f"--style {style}: judge one of this model's styles ({', '.join(names)}), not a blend")
        images = images[names.index(style)] if style is not None else images[0]
    if not isinstance(images, str):
        raise StylenetError("this model's metadata names no painting: pass --style-image PATH")
    found = painting_path(images)
    if found is not None:
        return found.resolve()
    raise StylenetError(f"the painting this model names ({Path(images).name}) is neither at {images} nor in "
                        f"{Path(data_root()) / 'styles'}: fetch the paintings with `make data`, or pass --style-image PATH")
