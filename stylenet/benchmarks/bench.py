"""Benchmarks of the hot paths: one JSON line per figure, optionally a Markdown table.

    stylenet bench train   [--size 256] [--batch 4] [--precision auto|fp32|bf16] [--model transformer|multistyle|adain|arbitrary]
                           [--cuda-graph] [--baseline]
    stylenet bench infer   [--sizes 512,1024,2048,3840x2160] [--model PRESETS|NAMES] [--backends eager,torchscript,onnx] [--baseline]
    stylenet bench optimize [--size 512] [--precision auto|fp32|bf16] [--baseline]
    stylenet bench video   [--size 640x360,1280x720] [--model transformer,transformer_small|NAME] [--precisions fp32,bf16]
    stylenet bench folder  [--photos 200] [--size 512x384] [--model starry_night] [--engines local,ray] [--workers 1,2]
    stylenet bench web     [--sizes 512,1024] [--model starry_night]   (the exported page in Chromium: webbench.py)

Every figure is the median of N timed repeats after warm-up, on synthetic images (timing does not depend on
pixel values), and carries the machine, torch version and thread count. Every row has its own peak memory
(the process's resident set, reset before the row; on CUDA torch's peak allocation). Rows in bf16 or fp16
also give their output's difference from fp32 on the same input, in levels of 255. --baseline runs our own code the way
pytorch/examples fast_neural_style does: fp32, channels-first, the photo through the whole loss network in a
second pass, no inference_mode, no compile, the layers as written (set_fast_ops off: no upsample_conv, no
fused Gram backward) and glibc's default allocator.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from stylenet.core.errors import StylenetError
from stylenet.models.registry import StyleInput
from stylenet.models.export import export_model
from stylenet.models.formats import load_network
from stylenet.core.hostmemory import keep_freed_memory
from stylenet.models.kinds import get_kind, presets
from stylenet.models.kinds.transformer import set_fast_ops
from stylenet.models.loss_network import PRESETS
from stylenet.running.optimize import OptimizeSettings, loss_builder
from stylenet.models.modelfile import model_metadata
from stylenet.core.device import AUTO, PRECISION_CHOICES, PRECISIONS, auto_precision, autocast, machine_name, resolve_device



def machine(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    cuda = {"cudnn_benchmark": torch.backends.cudnn.benchmark} if device.type == "cuda" else {}
    return {
        "machine": machine_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "keep_freed_memory": getattr(args, "keep_freed_memory", False), **cuda,
    }


def reset_peak_memory(device: torch.device) -> None:
    """Start a row's peak memory from what the process holds now: freed heap memory goes back to the kernel
    (malloc_trim), then Linux restarts the peak resident set (clear_refs 5); on CUDA torch's peak statistics."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch, or the process's peak resident memory since reset_peak_memory (MB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    with contextlib.suppress(OSError, StopIteration, ValueError):
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB; the whole run's peak


def median_seconds(run: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        run()
    synchronize()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def preset_network(name: str) -> torch.nn.Module:
    """A preset's network with random weights (speed does not depend on them), as its kind builds it."""
    kind, arguments = presets()[name]
    return get_kind(kind).preset_network(arguments)


def bench_system(args: argparse.Namespace, folder: Path) -> Any:  # StyleSystem
    """The model kind's training system as `python train.py` builds it (its defaults are the config's), on
    --loss-network (torchvision's weights replaced by random ones: same speed, no download) and, for kinds that
    learn their paintings, a synthetic painting (written to folder)."""
    from stylenet.training.systems import system_for

    kind, arguments = presets()[args.model]
    preset = PRESETS[args.loss_network]
    spec = {"arch": preset.arch, "weights": "random" if preset.weights == "torchvision" else preset.weights,
            "content_layers": list(preset.content_layers), "style_layer_weights": dict.fromkeys(preset.style_layers, 1.0)}
    return system_for(kind).for_bench(arguments, bench_painting(), folder, spec)


def train_step(args: argparse.Namespace, device: torch.device) -> tuple[Callable[[], None], dict[str, Any]]:
    """One optimizer step of the model kind's training recipe: its system's own objective (what training_step
    minimizes, with the config's loss weights), backward and Adam, without Lightning. --baseline runs the
    per-painting kinds the way pytorch/examples does (the photo through the whole loss network too, fp32, the layers
    as written). Returns (the step, the objective's weights for the row), with the peak memory reset, so that the
    row's peak is the steps' (and a CUDA graph's capture)."""
    fast = not args.baseline
    graphed = fast and args.cuda_graph
    with tempfile.TemporaryDirectory() as folder:
        system = set_fast_ops(bench_system(args, Path(folder)), fast).to(device)
    photos = torch.rand(args.batch, 3, args.size, args.size, device=device)
    if system.uses_style_dataset:  # adain, arbitrary: (photo, painting) pairs
        batch: Any = (photos, torch.rand(args.batch, 3, args.size, args.size, device=device))
    else:
        if fast and args.channels_last:
            system.network = system.network.to(memory_format=torch.channels_last)
            photos = photos.contiguous(memory_format=torch.channels_last)
        if fast and args.compile and device.type == "cpu":
            # torch 2.14's CPU inductor picks channels-last layouts whose replication_pad2d_backward fails its own
            # stride check; contiguous layouts compile (2.81 s/step vs 2.40 eager at 256 px bf16 on a 2-core Xeon)
            import torch._inductor.config as inductor

            inductor.layout_optimization = False
        batch = photos
    # what the system trains (the transformer; AdaIN's decoder; the predictor and transformer): the VGGs are buffers
    optimizer = torch.optim.Adam(system.network.parameters(), lr=system.hparams.lr,
                                 fused=device.type == "cuda" and fast, capturable=graphed)
    if fast and args.compile and not system.uses_style_dataset:
        system.network = torch.compile(system.network)

    def loss() -> torch.Tensor:
        if args.baseline and not system.uses_style_dataset:
            return baseline_loss(system, photos)
        return system.objective(batch)["total"]

    def step() -> None:
        with autocast(device, "fp32" if args.baseline else args.precision, cache=not graphed):
            total = loss()
        total.backward()
        optimizer.step()
        if not graphed:
            optimizer.zero_grad(set_to_none=True)  # a captured backward overwrites its gradients at each replay

    weights = system.objective_weights()
    if not graphed:
        reset_peak_memory(device)  # the row's peak: the steps' own memory
        return step, weights
    batches = torch.rand(2, *photos.shape, device=device)  # as from a loader: each replay copies a new batch in
    reset_peak_memory(device)  # the row's peak: replays allocate nothing, the capture allocated the step's memory
    replay = cuda_graph(step, optimizer, device)
    count = itertools.count()

    def graphed_step() -> None:
        photos.copy_(batches[next(count) % 2])
        replay()

    return graphed_step, weights


def baseline_loss(system: Any, photos: torch.Tensor) -> torch.Tensor:
    """A per-painting system's objective the way pytorch/examples computes it: the photo through the whole loss
    network in a second pass (ours reads its content features from the stylized image's pass)."""
    content = system.criterion.loss_network(photos, system.criterion.layers)
    styles = getattr(system.network, "styles", None)
    if styles is None:
        return system.criterion(system.network(photos), content)["total"]
    ids = torch.arange(photos.shape[0], device=photos.device) % len(styles)  # multistyle: a painting per photo
    stylized = system.network(photos, torch.nn.functional.one_hot(ids, len(styles)).float())
    return system.criterion(stylized, content, ids)["total"]


def cuda_graph(step: Callable[[], None], optimizer: torch.optim.Optimizer, device: torch.device,
               warmup: int = 3) -> Callable[[], None]:
    """A whole optimizer step (forward, loss, backward, Adam) captured once as a CUDA graph: its replay is one
    launch where eager PyTorch makes several hundred, which is what a 256-px batch of 4 waits on (BENCHMARKS.md,
    GPU). PyTorch's whole-network capture: warm up on a side stream (cuDNN picks its algorithms, Adam makes its
    state), gradients set to None so the captured backward allocates them from the graph's pool, then capture.
    The step reads its inputs from fixed tensors; copy each new batch into them before replaying."""
    if warmup < 1:  # captured, Adam's first step would create its state anew at every replay
        raise ValueError("cuda_graph needs at least one warm-up step")
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            optimizer.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    optimizer.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def bench_train(args: argparse.Namespace) -> list[dict[str, Any]]:
    device = resolve_device(args.device)
    step, objective = train_step(args, device)  # with the peak memory reset where the row's memory starts
    seconds = median_seconds(step, device, args.warmup, args.repeats)
    from stylenet.training.systems import system_for

    encoder = system_for(presets()[args.model][0]).bench_encoder
    return [{
        "bench": "train", "mode": "baseline" if args.baseline else "stylenet", "model": args.model,
        "loss_network": encoder or args.loss_network, "size": args.size,
        "batch": args.batch, "device": device.type,
        "precision": "fp32" if args.baseline else args.precision, "channels_last": args.channels_last and not args.baseline,
        "compile": args.compile and not args.baseline, "cuda_graph": args.cuda_graph and not args.baseline,
        "data": "synthetic", "objective": objective, "s_per_step": round(seconds, 4),
        "images_per_s": round(args.batch / seconds, 3), "peak_memory_mb": round(peak_memory_mb(device)),
        **machine(device, args),
    }]


def parse_size(text: str) -> tuple[int, int]:
    """'1024' -> (1024, 1024); '3840x2160' -> (2160, 3840) as (height, width)."""
    width, _, height = text.partition("x")
    try:
        return int(height or width), int(width)
    except ValueError:
        raise StylenetError(f"size {text!r}: give N or WIDTHxHEIGHT, e.g. 512 or 1280x720") from None


def pattern_image(height: int, width: int, device: torch.device, shift: int = 0) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]: smooth stripes and blobs, so precision differences are those of a picture, not of
    noise (speed does not depend on the pixels); shift pans it that many pixels left (synthetic_clip's frames)."""
    rows = torch.arange(height, device=device, dtype=torch.float32)[:, None]
    columns = torch.arange(width, device=device, dtype=torch.float32)[None, :] + shift
    channels = [torch.sin(columns / 9) * torch.cos(rows / 13), torch.sin((columns + rows) / 17), torch.cos(columns / 23 - rows / 7)]
    return ((torch.stack(channels) + 1) / 2).unsqueeze(0)


def bench_network(name: str) -> tuple[torch.nn.Module | Any, dict[str, Any]]:
    """A network preset (random weights: the same speed) or a model file / ready-made model's name."""
    if name in presets():
        network = preset_network(name).eval()
        return network, model_metadata(network)
    from stylenet.models.zoo import resolve

    return load_network(resolve(name))


def bench_model(loaded: tuple[Any, dict[str, Any]], device: torch.device, precision: str) -> Any:  # StyleModel
    """A StyleModel ready to stylize: multi-style models run their first style, any-style ones a synthetic painting."""
    from stylenet.running.inference import StyleModel

    model = StyleModel(*loaded, device, precision)
    if model.model_kind.style_input is StyleInput.IMAGE:
        return model.with_paintings([bench_painting()])
    return model


def bench_painting() -> Any:  # PIL.Image
    """The synthetic 512-px painting that any-style rows stylize with."""
    from PIL import Image

    painting = pattern_image(512, 512, torch.device("cpu"))[0].flip(0).mul(255).byte().permute(1, 2, 0).numpy()
    return Image.fromarray(painting)


def painting_seconds(loaded: tuple[Any, dict[str, Any]], device: torch.device, precision: str) -> dict[str, float]:
    """Any-style models: the seconds to read a 512-px painting (its statistics, once per painting for a folder or
    a video), beside the per-image seconds; {} for other models. On a model of its own: binding resets a backend."""
    from stylenet.running.inference import StyleModel

    model = StyleModel(*loaded, device, precision)
    if model.model_kind.style_input is not StyleInput.IMAGE:
        return {}
    painting = bench_painting()

    def read() -> None:
        model.painting_cache.clear()  # a painting it has not read: the model keeps the last few bound
        model.with_paintings([painting])

    with model.runner.autocast():
        return {"painting_s": round(median_seconds(read, device, 1, 3), 4)}


def levels_apart(result: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """How far an output lies from the fp32 output, in 8-bit levels: the largest and the mean difference."""
    difference = (result.float() - reference.float()).abs().mul_(255)
    return {"max_levels_vs_fp32": round(difference.max().item(), 1), "mean_levels_vs_fp32": round(difference.mean().item(), 3)}


def eager_variant(network: Any, channels_last: bool) -> Any:
    """The network in NHWC memory order where --channels-last asks (not for --baseline)."""
    if not channels_last or not isinstance(network, torch.nn.Module):
        return network
    return network.to(memory_format=torch.channels_last)


def torch_backend(model: Any, backend: str) -> Any:  # StyleModel
    """backend "compile": the model's whole images through torch.compile, as `stylenet stylize --backend compile`."""
    if backend == "compile":
        from stylenet.running.backends import with_backend

        return with_backend(model, "compile")
    return model


def bench_infer(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Seconds per image through `StyleModel.stylize_tensor` (the default tiling policy unless --tile), per model,
    backend, precision and size; rows not in fp32 give their difference from fp32 on the same picture."""
    device = resolve_device(args.device)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        for name, backend, loaded in infer_networks(args, Path(folder)):
            for precision in infer_precisions(args, backend):
                model = torch_backend(bench_model(loaded, device, precision), backend)
                fp32 = bench_model(loaded, device, "fp32") if precision != "fp32" else None
                for size in args.sizes.split(","):
                    yield infer_row(args, name, loaded, model, fp32, parse_size(size), device)  # as each is measured


def infer_networks(args: argparse.Namespace, folder: Path) -> Iterator[tuple[str, str, tuple[Any, dict[str, Any]]]]:
    """(model name, backend, (network, metadata)) for each --model on each --backends: the network itself for
    eager and compile (NHWC with --channels-last), else its TorchScript or ONNX export loaded back."""
    for name in args.model.split(","):
        network, metadata = bench_network(name)
        if isinstance(network, torch.nn.Module):
            set_fast_ops(network, not args.baseline)
        for backend in args.backends.split(","):
            if backend in ("eager", "compile"):
                yield name, backend, (eager_variant(network, args.channels_last and not args.baseline), metadata)
            else:
                yield name, backend, exported(name, network, metadata, backend, folder)


def exported(name: str, network: Any, metadata: dict[str, Any], file_format: str, folder: Path) -> tuple[Any, dict[str, Any]]:
    """The network written to folder as TorchScript or ONNX and loaded back, as a user's file would be."""
    path = folder / f"{name.replace('/', '_')}.{file_format}"
    export_model(network, metadata, path, file_format)
    return load_network(path)


def infer_precisions(args: argparse.Namespace, backend: str) -> list[str]:
    """--precisions this backend runs: ONNX Runtime fp32 only; --baseline eager fp32 only."""
    if args.baseline:
        return ["fp32"] if backend == "eager" else []
    return ["fp32"] if backend == "onnx" else args.precisions.split(",")


def infer_row(args: argparse.Namespace, name: str, loaded: tuple[Any, dict[str, Any]], model: Any, fp32: Any,
              size: tuple[int, int], device: torch.device) -> dict[str, Any]:
    """One row: this model's seconds per image at this size (fp32: the same model in fp32, for the difference)."""
    height, width = size
    channels_last = args.channels_last and not args.baseline and model.engine in ("eager", "compile")
    images = pattern_image(height, width, device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    quality = {}
    if fp32 is not None:  # the same picture in fp32 first, outside this row's memory
        reference = fp32.stylize_tensor(images, tile=args.tile, stroke_size=args.stroke_size)
        quality = levels_apart(model.stylize_tensor(images, tile=args.tile, stroke_size=args.stroke_size), reference)
        del reference

    def run() -> object:
        if args.baseline:  # pytorch/examples: no_grad (not inference_mode), no clamp fusion, fp32
            with torch.no_grad():
                return model.bound(images)
        return model.stylize_tensor(images, tile=args.tile, stroke_size=args.stroke_size)

    tile = model.runner.auto_tile(model.tile_network, height, width) if args.tile is None else args.tile
    reading = painting_seconds(loaded, device, model.precision)
    reset_peak_memory(device)
    seconds = median_seconds(run, device, args.warmup, args.repeats)
    return {
        "bench": "infer", "mode": "baseline" if args.baseline else "stylenet", "model": name,
        "backend": model.engine, "size": f"{width}x{height}", "device": device.type, "precision": model.precision,
        "stroke_size": "auto" if args.stroke_size is None else args.stroke_size,
        "tile": 0 if args.baseline else tile, "channels_last": args.channels_last and not args.baseline,
        "s_per_image": round(seconds, 4), **reading, "megapixels_per_s": round(height * width / 1e6 / seconds, 3),
        "peak_memory_mb": round(peak_memory_mb(device)), **quality, **machine(device, args),
    }


def bench_optimize(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seconds per loss evaluation (forward + backward through VGG-19, what each L-BFGS step costs)."""
    device = resolve_device(args.device)
    # the objective `stylenet optimize` minimizes by default (and eval's curve, with its own weights)
    criterion = loss_builder(OptimizeSettings(device="cpu"))([torch.rand(3, args.size, args.size)], [1.0])
    criterion = set_fast_ops(criterion, not args.baseline).to(device)
    photo = torch.rand(1, 3, args.size, args.size, device=device)
    targets = criterion.content_features(photo)
    image = photo.clone().requires_grad_(True)
    precision = "fp32" if args.baseline else args.precision  # the reference has no mixed precision
    reset_peak_memory(device)

    def evaluation() -> None:
        image.grad = None
        with autocast(device, precision):
            terms = criterion(image, targets)
        terms["total"].backward()

    seconds = median_seconds(evaluation, device, args.warmup, args.repeats)
    return [{
        "bench": "optimize", "mode": "baseline" if args.baseline else "stylenet", "model": "vgg19", "size": args.size,
        "device": device.type,
        "precision": precision, "s_per_step": round(seconds, 4), "peak_memory_mb": round(peak_memory_mb(device)),
        **machine(device, args),
    }]


def synthetic_clip(path: Path, width: int, height: int, frames: int) -> Path:
    """An H.264 clip of a textured pattern panning a few pixels a frame: what a camera on a slow pan gives."""
    import av

    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            pattern = pattern_image(height, width, torch.device("cpu"), shift=3 * index)[0]
            array = pattern.mul(255).byte().permute(1, 2, 0).numpy()
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return path


def bench_video(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Frames per second of `stylenet stylize clip.mp4`: decode, network, encode (frames_per_s), and the network
    alone on batches of decoded frames (network_frames_per_s), per model, backend, precision and frame size."""
    from stylenet.running.options import StylizeOptions
    from stylenet.running.video import frames_of, stylize_frames, stylize_video

    device = resolve_device(args.device)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        clips = {size: synthetic_clip(Path(folder) / f"{size}.mp4", *parse_size(size)[::-1], args.frames)
                 for size in args.size.split(",")}
        samples = {size: list(itertools.islice(frames_of(clip), args.batch)) for size, clip in clips.items()}
        for name in args.model.split(","):
            network, metadata = bench_network(name)
            for backend in args.backends.split(","):
                eager = backend in ("eager", "compile")
                loaded = (network, metadata) if eager else exported(name, network, metadata, backend, Path(folder))
                for precision in args.precisions.split(","):
                    if backend == "onnx" and precision != "fp32":
                        continue
                    model = torch_backend(bench_model(loaded, device, precision), backend)
                    options = StylizeOptions(tile=0, frames_per_call=args.batch, temporal=args.temporal)
                    for size, clip in clips.items():
                        frames = samples[size]
                        reset_peak_memory(device)
                        seconds = median_seconds(lambda: stylize_frames(model, frames, options), device, args.warmup, args.repeats)
                        stylize_video(model, clip, Path(folder) / "warm.mp4", replace(options, end=0.2), progress=False)
                        result = stylize_video(model, clip, Path(folder) / "out.mp4", options, progress=False)
                        yield {  # as each is measured: a long run shows its figures as it goes
                            "bench": "video", "mode": "stylenet", "model": name, "backend": backend, "size": size,
                            "device": device.type, "precision": precision, "batch": args.batch, "temporal": args.temporal,
                            "frames": result.frames, "frames_per_s": round(result.frames / result.seconds, 2),
                            "network_frames_per_s": round(len(frames) / seconds, 2),
                            "peak_memory_mb": round(peak_memory_mb(device)), **machine(device, args),
                        }


def bench_folder(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Images per second of `stylenet stylize FOLDER -o OUT`: the local engine, then --engine ray with each number of
    --workers (a Ray started on this machine), on a folder of --photos synthetic JPEG photos. seconds runs from the
    start (model, Ray and its workers included) to the last file; steady_images_per_s counts after the first file."""
    from stylenet.running.backends import ModelSpec
    from stylenet.running.jobs import plan, stylize_jobs
    from stylenet.running.cluster import RaySettings, stylize_on_ray
    from stylenet.core.images import to_pil
    from stylenet.running.options import StylizeOptions

    height, width = parse_size(args.size)
    spec = ModelSpec(args.model, args.device)  # what `stylenet stylize` runs by default: precision and backend auto
    with tempfile.TemporaryDirectory() as folder:
        photos = Path(folder) / "photos"
        photos.mkdir()
        for index in range(args.photos):
            to_pil(pattern_image(height, width, torch.device("cpu"), shift=index)[0]).save(photos / f"{index:04d}.jpg", quality=90)
        model = spec.load()
        runs = [("local", None)] + [("ray", int(workers)) for workers in args.workers.split(",")]
        for engine, workers in runs:
            if engine not in args.engines.split(","):
                continue
            out = Path(folder) / f"{engine}-{workers}"
            started = time.perf_counter()
            if engine == "local":
                summary = stylize_jobs(spec.load(), plan([str(photos)], out), StylizeOptions())
            else:
                settings = RaySettings(workers=workers, images_per_task=args.images_per_task)
                summary = stylize_on_ray(spec, [str(photos)], str(out), None, StylizeOptions(), settings)
            seconds = time.perf_counter() - started
            steady = (args.photos - 1) / (summary.seconds - summary.first_seconds)
            yield {
                "bench": "folder", "engine": engine, "workers": workers or "-", "photos": len(summary.written),
                "size": f"{width}x{height}", "model": args.model, "precision": model.precision, "backend": model.engine,
                "seconds": round(seconds, 2), "images_per_s": round(len(summary.written) / seconds, 2),
                "first_file_s": round(summary.first_seconds, 2), "steady_images_per_s": round(steady, 2),
                **machine(torch.device("cpu"), args),
            }


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, one column per key that any row has."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(str(row.get(key, "")) for key in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylenet bench", description="Time training, inference or optimization.")
    parser.add_argument("what", choices=["train", "infer", "optimize", "video", "folder", "web"])
    parser.add_argument("--size", help="image side (train: 256; optimize: 512); video: frame sizes WIDTHxHEIGHT, "
                        "comma-separated (640x360,1280x720)")
    parser.add_argument("--sizes", help="infer, web: sizes, WIDTHxHEIGHT or N (default infer: 512,1024,2048,3840x2160; web: 512,1024)")
    parser.add_argument("--batch", type=int, default=4, help="images per network call: train: photos per step; video: "
                        "frames per call")
    parser.add_argument("--images-per-task", type=int, default=4, help="folder: photos per Ray task")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default=AUTO, choices=PRECISION_CHOICES,
                        help="train, optimize (auto: bf16 where the hardware computes it natively, else fp32)")
    parser.add_argument("--precisions", help="infer, video: comma-separated (default fp32, plus what --precision "
                        "auto stylizes in here: bf16 on CPUs that compute it natively, fp16 on CUDA GPUs)")
    parser.add_argument("--tile", type=int, help="infer: tile side in px (default: tile only what would not fit in the "
                        "memory budget, as `stylenet stylize` does; 0: never)")
    parser.add_argument("--backends", help="infer, video: comma-separated of eager, compile (torch.compile, timed after "
                        "its compile), torchscript, onnx (default infer: eager,torchscript,onnx; video: eager)")
    parser.add_argument("--model", help=f"train: a network preset: {', '.join(presets())} (default transformer); infer, "
                        "video: comma-separated presets, model files or ready-made names (default infer: transformer; "
                        "video: transformer,transformer_small)")
    parser.add_argument("--stroke-size", type=lambda text: None if text == "auto" else float(text), default=1.0,
                        help="infer: 1 (default) the network at each size; auto: the model's look kept at any size, as "
                             "`stylenet stylize` paints by default (its working size: 256 px for a preset); S: strokes S times larger")
    parser.add_argument("--frames", type=int, default=48, help="video: frames in the synthetic clip")
    parser.add_argument("--photos", type=int, default=200, help="folder: synthetic photos in the folder")
    parser.add_argument("--engines", default="local,ray", help="folder: local, ray (stylenet[ray]) or both")
    parser.add_argument("--workers", default="1,2", help="folder: Ray workers, comma-separated (one row each)")
    parser.add_argument("--temporal", type=float, default=0.0, help="video: --temporal strength (flow blending)")
    parser.add_argument("--loss-network", default="vgg19_caffe", choices=sorted(PRESETS),
                        help="train (torchvision weights replaced by random ones: same speed, no download)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False,
                        help="train, infer: the network and pictures in NHWC memory order")
    parser.add_argument("--compile", action="store_true", help="train: torch.compile the transformer (infer, video: "
                        "--backends compile)")
    parser.add_argument("--cuda-graph", action="store_true", help="train, CUDA: capture the whole step (forward, "
                        "backward, Adam) once as a CUDA graph and replay it (not with --baseline)")
    parser.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=True,
                        help="CUDA: let cuDNN pick the fastest convolution algorithms per shape (not with --baseline)")
    parser.add_argument("--baseline", action="store_true", help="the reference implementation's way")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", type=Path, help="also append the rows to this Markdown file")
    return parser


def main(argv: list[str], more: dict[str, Callable[[argparse.Namespace], Iterator[dict[str, Any]]]] | None = None) -> None:
    """more: benches that live above this module, by name (the CLI passes webbench's `web`)."""
    args = parser().parse_args(argv)
    # the reference runs on glibc's defaults; ours keeps freed memory as `stylenet` and train.py do
    args.keep_freed_memory = not args.baseline and keep_freed_memory()
    video = args.what == "video"
    defaults = {"video": "transformer,transformer_small", "folder": "starry_night", "web": "starry_night"}
    args.model = args.model or defaults.get(args.what, "transformer")
    args.sizes = args.sizes or ("512,1024" if args.what == "web" else "512,1024,2048,3840x2160")
    if args.what in ("train", "optimize") and args.model not in presets():
        raise StylenetError(f"--model {args.model}: {args.what} benchmarks a network preset: {', '.join(sorted(presets()))}")
    device = resolve_device(args.device)
    if args.cuda_graph and (args.what != "train" or device.type != "cuda"):
        raise StylenetError(f"--cuda-graph captures a training step on a CUDA GPU; this is bench {args.what} on "
                            f"{device.type}: use it with train --device cuda, or leave it out")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark and not args.baseline
    args.backends = args.backends or ("eager" if video else "eager,torchscript,onnx")
    args.precision = auto_precision(device) if args.precision == AUTO else args.precision
    native = ",".join(dict.fromkeys(["fp32", auto_precision(device, inference=True)]))  # fp32 and what stylize picks
    args.precisions = ",".join(dict.fromkeys(native if p == AUTO else p for p in (args.precisions or native).split(",")))
    unknown = [p for p in args.precisions.split(",") if p not in PRECISIONS]
    if unknown:
        raise StylenetError(f"--precisions {unknown[0]}: valid are {', '.join(PRECISION_CHOICES)}")
    if video:
        args.size = args.size or "640x360,1280x720"
    elif args.what == "folder":
        args.size = args.size or "512x384"
    else:
        args.size = int(args.size or (512 if args.what == "optimize" else 256))
    rows = []
    benches = {"train": bench_train, "infer": bench_infer, "optimize": bench_optimize, "video": bench_video, "folder": bench_folder,
               **(more or {})}
    if args.what not in benches:
        raise StylenetError(f"bench {args.what} runs through the stylenet command: stylenet bench {args.what}")
    for row in benches[args.what](args):
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.markdown:
        with args.markdown.open("a") as file:
            file.write(markdown(rows) + "\n")
