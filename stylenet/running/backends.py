"""--backend auto: eager PyTorch or ONNX Runtime, whichever runs this network shape faster on this machine;
--backend compile: torch.compile (TorchInductor), chosen by hand because its first image compiles.

ONNX Runtime was faster than eager PyTorch on one CPU and slower on another (BENCHMARKS.md), so stylenet
measures instead of guessing. The first time a network shape (kind, channels, residual blocks) runs with
--backend auto on a machine, both backends stylize one 512x512 picture with random weights of that shape
(speed does not depend on the weights), after a warm-up; the verdict is kept in the cache (backends.json under
`stylenet.core.files.cache_root()`), keyed by the machine (CPU model and vector flags), torch and onnxruntime
versions, the shape and the precision, so later runs pay nothing. ONNX Runtime is chosen only when it is at
least MARGIN faster. Eager is the fallback wherever ONNX cannot serve: onnxruntime not installed (it is the
optional extra `stylenet[onnx]`), a GPU, AdaIN models (their strength blends features inside the network),
TorchScript or ONNX files, and images so large that they run in tiles (tiles need the eager network).

--backend compile compiles the eager network for whole images (any model kind, CPU or GPU, any precision). The
first image of each size compiles (tens of seconds on a 2-core CPU, less when TorchInductor's cache has it),
then each runs faster: 3-4x eager bf16 at 1024x1024 on a 2-core Xeon, 3-4x at 3840x2160 on an H200
(BENCHMARKS.md). It pays for videos longer than about half a minute, the webcam and folders of same-sized
photos, not for one photo, so auto never picks it (`stylenet stylize` names it after long videos).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stylenet.core.errors import StylenetError, brief
from stylenet.models.registry import StyleInput
from stylenet.core.files import atomic_write, cache_root
from stylenet.core.images import load_image
from stylenet.running.inference import StyleModel, load_model
from stylenet.core.device import machine_name

log = logging.getLogger(__name__)

BACKENDS = ("auto", "eager", "onnx", "compile")
MEASURE_SIZE = 512  # px, square: the picture both backends stylize when a verdict is measured
MARGIN = 1.1  # ONNX Runtime must be this many times faster to be chosen: within noise, eager (tiles, bf16) wins
REPEATS = 3


@dataclass(frozen=True)
class ModelSpec:
    """A model as a command names it (--model, --device, --precision, --style or --style-image, --backend):
    load() opens it ready to stylize. The Ray engine ships one to each worker (stylenet/running/cluster.py)."""

    model: str  # a model file's path, or a ready-made model's name
    device: str = "auto"
    precision: str = "auto"
    style: str | None = None  # multi-style models: a name or a blend
    style_images: tuple[tuple[str, float], ...] = ()  # any-style models: (painting's path, weight)
    style_size: int | None = None
    backend: str = "auto"

    def load(self) -> StyleModel:
        model = load_model(self.model, self.device, self.precision)
        if model.model_kind.style_input is StyleInput.IMAGE and not self.style_images:
            raise StylenetError(f"{self.model} is an any-style model: give the painting with --style-image PATH (any image)")
        paintings = [load_image(path, "--style-image") for path, _ in self.style_images]
        model = model.styled(self.style, paintings, [weight for _, weight in self.style_images], self.style_size)
        return with_backend(model, self.backend)


def onnx_unavailable(model: StyleModel) -> str | None:
    """Why this model cannot run on ONNX Runtime here, or None when it can."""
    if model.plain_network is None:
        return (f"--backend onnx runs single- and multi-style models; this is a {model.model_kind.name} model "
                "(use --backend eager)")
    if model.device.type != "cpu":
        return f"--backend onnx runs on the CPU; this model runs on {model.device} (use --backend eager there)"
    missing = [name for name in ("onnxruntime", "onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        return f"--backend onnx needs {', '.join(missing)}: pip install 'stylenet[onnx]' (or use --backend eager)"
    return None


def with_backend(model: StyleModel, backend: str, cache: Path | None = None) -> StyleModel:
    """`model` (bound to its style) running whole images on `backend` ("auto", "eager", "onnx" or "compile"): a
    new StyleModel whose `engine` says what auto chose; `model` is left as it was."""
    if backend not in BACKENDS:
        raise StylenetError(f"--backend {backend}: valid are {', '.join(BACKENDS)}")
    if not model.has_weights:  # a TorchScript or ONNX file runs as it is
        if backend == "onnx" and model.file_format != "onnx":
            raise StylenetError(f"--backend onnx runs a model's weights; {model.file_format} files run as they are "
                                "(use the .safetensors model, or --backend auto)")
        if backend == "compile":
            raise StylenetError(f"--backend compile compiles a model's weights; {model.file_format} files run as they "
                                "are (use the .safetensors model, or --backend auto)")
        return model
    if backend == "eager":
        return model
    if backend == "compile":
        if model.bound is None:
            raise StylenetError("--backend compile: choose the any-style model's painting first (with_paintings)")
        return running_whole(model, compiled_network(model.bound), "compile")
    reason = onnx_unavailable(model)
    if reason is not None:
        if backend == "onnx":
            raise StylenetError(reason)
        return model
    if backend == "onnx" and model.precision != "fp32" and not model.runner.auto:
        raise StylenetError(f"--backend onnx runs in fp32; drop --precision {model.precision} (or use --backend eager)")
    cache = cache or cache_root()
    network = model.plain_network
    assert network is not None  # onnx_unavailable checked it
    if backend == "auto" and verdict(network, model.precision, cache)["backend"] != "onnx":
        return model
    return running_whole(model, onnx_network(network, cache), "onnx")


def running_whole(model: StyleModel, whole: Callable[[torch.Tensor], torch.Tensor], engine: str) -> StyleModel:
    """A copy of `model` that runs whole images through `whole` (tiles stay eager)."""
    view = model.bound_to(model.bound)
    view.whole, view.whole_engine = whole, engine
    return view


def compiled_network(network: Callable[..., torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """torch.compile of the network, compiled at its first image of each size; a failure to compile (no C++
    compiler for TorchInductor on a CPU, say) is one line that names the way out."""
    # quiet: torch.utils.cpp_extension warns on every CPU-only machine that it found no CUDA, and a failed build
    # logs its generated code (dozens of lines) before raising; the error below names the cause in one line
    for name in ("torch.utils.cpp_extension", "torch._inductor", "torch._dynamo"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    # static shapes: kernels compiled for sizes that may change ran 4x slower than eager on a 2-core Xeon
    compiled = torch.compile(network, dynamic=False)
    batches: dict[tuple[int, int], int] = {}  # the batch size compiled for each image size

    def run(images: torch.Tensor) -> torch.Tensor:
        # one memory layout for every call: video frames arrive channels-last (a permuted array), a padded batch
        # contiguous, and a compiled graph guards on strides: it compiled the short last batch a second time
        images = images.contiguous()
        size, count = (images.shape[-2], images.shape[-1]), images.shape[0]
        if size not in batches or count > batches[size]:  # the wait is said, not left to look like a hang
            batches[size] = count
            log.info("backend compile: compiling the network for %dx%d images (tens of seconds on a CPU, once per size)",
                     size[1], size[0])
        elif count < batches[size]:  # a video's last, short batch: padded with copies, not compiled again
            padding = images[-1:].expand(batches[size] - count, *images.shape[1:])
            return run(torch.cat([images, padding]))[:count]
        try:
            return compiled(images)
        except torch._dynamo.exc.BackendCompilerFailed as error:  # raised by torch.compile's backend: public enough
            raise StylenetError(f"--backend compile could not compile the network here ({brief(error.inner_exception)}); "
                                "use --backend eager") from None

    return run


def verdict(network: torch.nn.Module, precision: str, cache: Path) -> dict[str, Any]:
    """The faster backend for this network's shape and precision on this machine: from backends.json, or measured
    now (a few seconds, once) and added to it."""
    import onnxruntime

    from stylenet.models.modelfile import model_metadata

    shape = model_metadata(network)
    # the thread count is part of the question: one thread can favour eager where two favour ONNX Runtime (a Ray
    # worker runs on the CPUs it was given, not the machine's)
    key = " | ".join([machine_name(torch.device("cpu")), f"torch {torch.__version__}", f"onnxruntime {onnxruntime.__version__}",
                      f"{shape['architecture']} {json.dumps(shape['arguments'], sort_keys=True)}", precision,
                      f"{torch.get_num_threads()} threads"])
    path = cache / "backends.json"
    known = read_verdicts(path)
    if key in known:
        return known[key]
    print(f"backend auto: timing eager PyTorch ({precision}) against ONNX Runtime (fp32) on this machine, once "
          f"for this network shape ({MEASURE_SIZE}x{MEASURE_SIZE} px)...", file=sys.stderr, flush=True)
    found = measure(network, precision, cache)
    print(f"backend auto: eager {found['eager_s']:.3f} s, ONNX Runtime {found['onnx_s']:.3f} s per image: "
          f"{found['backend']} (kept in {path}; --backend eager|onnx to choose)", file=sys.stderr)
    known = read_verdicts(path)  # another process may have added some meanwhile
    known[key] = found
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
    return found


def read_verdicts(path: Path) -> dict[str, dict[str, Any]]:
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: measure again (and rewrite it)
    return known if isinstance(known, dict) else {}


def measure(network: torch.nn.Module, precision: str, cache: Path) -> dict[str, Any]:
    """Seconds per 512x512 image for eager PyTorch (in `precision`) and ONNX Runtime, with random weights of the
    network's shape; the backend that wins by MARGIN (else eager)."""
    from stylenet.models.kinds import kind_of

    generator = torch.Generator().manual_seed(0)
    shaped = kind_of(network).network(**network.config()).eval()
    with torch.no_grad():
        for parameter in shaped.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    images = torch.rand(1, 3, MEASURE_SIZE, MEASURE_SIZE, generator=generator)
    eager = StyleModel(shaped, {}, "cpu", precision)
    onnx = onnx_network(shaped, cache)
    runs = {"eager_s": lambda: eager.stylize_tensor(images, tile=0), "onnx_s": lambda: onnx(images)}
    # after a warm-up each (first-call allocations, oneDNN primitives, ONNX Runtime's graph setup), in turns, so
    # that other work on the machine slows both alike instead of deciding the verdict
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(REPEATS):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    seconds = {name: statistics.median(values) for name, values in times.items()}
    faster = "onnx" if seconds["onnx_s"] * MARGIN < seconds["eager_s"] else "eager"
    return {"backend": faster, **{name: round(value, 4) for name, value in seconds.items()},
            "measured": time.strftime("%Y-%m-%d %H:%M:%S")}


def onnx_network(network: torch.nn.Module, cache: Path) -> Any:  # stylenet.models.formats.OnnxNetwork
    """The network exported to ONNX (verified against it, kept in the cache by a hash of its weights), loaded in
    ONNX Runtime: images -> images, like the network."""
    from stylenet.models.export import export_model
    from stylenet.models.formats import load_network
    from stylenet.models.modelfile import model_metadata, weights_digest

    path = cache / "onnx" / f"{weights_digest(network.state_dict())[:24]}.onnx"
    if not path.is_file():
        log.info("exporting the network to %s for ONNX Runtime", path)
        export_model(network, model_metadata(network), path, "onnx")
    loaded, _ = load_network(path)
    return loaded
