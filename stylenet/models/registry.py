"""The table of model kinds: every "which kind is this?" question in stylenet is answered here.

Each file in stylenet/models/kinds/ defines one kind's network and registers a ModelKind for it (timm's
register_model pattern); stylenet/training/systems/ holds the training system of each kind under the same name.
Formats, export, inference, training, bench and the sample grid ask this table instead of branching.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import torch
from torch import nn

from stylenet.core.errors import StylenetError

class StyleInput(str, Enum):
    """What a kind's forward() takes after the images (its value names that ONNX input and the page's model.json)."""

    NONE = "none"                  # nothing: one painting, learnt into the weights
    WEIGHTS = "style_weights"      # (1, S) weights of the network's named styles (multistyle)
    IMAGE = "style_image"          # any painting, (1, 3, H, W) (AdaIN, arbitrary, WCT)


StyleBinder = Callable[[Any, Sequence[torch.Tensor], Sequence[float]], Callable[..., torch.Tensor]]


class ConfigMixin:
    """A network that remembers the arguments its __init__ took (defaults filled in), once, as diffusers'
    ConfigMixin does: config() returns them, and kind.network(**network.config()) rebuilds it, so a model file's
    "arguments" cannot drift from the constructor. Arguments named in config_ignore (weights passed in, such as an
    encoder's state) are not kept. For a subclass, the outermost __init__'s arguments are the config."""

    config_ignore: ClassVar[tuple[str, ...]] = ()
    __jit_ignored_attributes__: ClassVar[list[str]] = ["_config_arguments"]  # TorchScript compiles around it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        init, signature = cls.__init__, inspect.signature(cls.__init__)

        @functools.wraps(init)
        def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:
            if "_config_arguments" not in self.__dict__:  # the outermost __init__ of a subclass chain
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                arguments = {name: value for name, value in list(bound.arguments.items())[1:] if name not in cls.config_ignore}
                self.__dict__["_config_arguments"] = copy.deepcopy(arguments)
            init(self, *args, **kwargs)

        cls.__init__ = recording_init  # type: ignore[method-assign]

    def config(self) -> dict[str, Any]:
        """The constructor arguments: all a checkpoint or export needs to rebuild this network."""
        return copy.deepcopy(self.__dict__["_config_arguments"])


@dataclass(frozen=True)
class ModelKind:
    """What stylenet needs to know of one kind of style network, from training to a model file to a picture.

    style_input: what forward() takes after the images (StyleInput): nothing, WEIGHTS (a (1, S) blend of the
    network's named styles) or IMAGE (any painting, (1, 3, H, W)).
    bind(network, inputs, weights): the network with its second input fixed to a blend of these style inputs
    (one-hot rows for style_weights, images for style_image): images -> images. None when style_input is StyleInput.NONE.
    feature_strength: the bound eager network takes `alpha=strength` and blends in feature space (AdaIN).
    tileable: a bound eager network can run in tiles with shared instance-norm statistics (tiling.py).
    """

    name: str
    network: type[nn.Module]                      # rebuilt from a model file as network(**arguments)
    style_input: StyleInput = StyleInput.NONE
    bind: StyleBinder | None = None
    feature_strength: bool = False                # strength blends features (AdaIN's alpha), not pixels
    tileable: bool = True                         # eager networks run in tiles with shared norm statistics
    style_size: int = 512                         # style_image kinds: the painting's default long side (px)
    scriptable: Callable[[nn.Module], nn.Module] = lambda network: network  # what torch.jit.script compiles
    example_style: Callable[[nn.Module, torch.Generator], torch.Tensor] | None = None  # the second input, for checks
    onnx_style_dims: dict[int, str] | None = None  # dynamic axes of the second ONNX input (None: fixed shape)
    no_onnx: str | None = None                    # why this kind has no ONNX export (None: it has one)
    metadata: Callable[[nn.Module], dict[str, Any]] = lambda network: {}  # fields a model file adds for users
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)  # named sizes: {name: network arguments}
    # a preset's network (random weights) from its arguments; AdaIN's adds its real encoder (default: network(**arguments))
    from_preset: Callable[[dict[str, Any]], nn.Module] | None = None
    # a bare state dict (no metadata) in a layout this kind knows -> (arguments, its tensors in our names, what it
    # was); None when the layout is not this kind's
    read_state_dict: Callable[[dict[str, torch.Tensor], str], tuple[dict[str, Any], dict[str, torch.Tensor], str] | None] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "style_input", StyleInput(self.style_input))  # a kind registered with "style_image"

    def example_inputs(self, network: nn.Module, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """What forward() takes: the images, plus an example second input for kinds that have one."""
        return (images,) if self.example_style is None else (images, self.example_style(network, generator))

    def preset_network(self, arguments: dict[str, Any]) -> nn.Module:
        """A network of these arguments (a preset's) with random weights, as training starts it."""
        return self.from_preset(arguments) if self.from_preset is not None else self.network(**arguments)

    def input_names(self) -> list[str]:
        return ["image"] if self.style_input is StyleInput.NONE else ["image", self.style_input.value]


KINDS: dict[str, ModelKind] = {}
DEFAULT_KIND = "transformer"  # the kind of model files written before files named their kind


def register_kind(kind: ModelKind) -> ModelKind:
    """Add a kind to the table; called once by the kind's own file in stylenet/models/kinds/."""
    if kind.name in KINDS:
        raise ValueError(f"model kind {kind.name!r} is registered twice")
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> ModelKind:
    """The kind of this name; an unknown name is a StylenetError that lists the known ones."""
    if name not in KINDS:
        raise StylenetError(f"unknown model kind {name!r}; this stylenet knows {', '.join(sorted(KINDS))}")
    return KINDS[name]


def find_kind(network: object) -> ModelKind | None:
    """The kind whose network class this is, or None (a bound form of its own, a TorchScript or ONNX file)."""
    return next((kind for kind in KINDS.values() if type(network) is kind.network), None)


def kind_of(network: nn.Module) -> ModelKind:
    """The kind whose network class this is."""
    kind = find_kind(network)
    if kind is None:
        raise TypeError(f"not a stylenet network: {type(network).__name__}")
    return kind


def presets() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every named network size of every kind: {preset: (kind name, network arguments)}."""
    return {name: (kind.name, arguments) for kind in KINDS.values() for name, arguments in kind.presets.items()}


class BoundStyle:
    """A two-input network (a TorchScript or ONNX file of a multistyle or AdaIN model) with its second input
    fixed: images -> images, like a single-style network."""

    def __init__(self, network: Callable[..., torch.Tensor], style: torch.Tensor) -> None:
        self.network, self.style = network, style

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images, self.style.to(images.device))

