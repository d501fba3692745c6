"""Benchmarks of the hot paths: one JSON line per figure, optionally a Markdown table.

    stylenet bench train   [--size 256] [--batch 4] [--precision fp32|bf16] [--model transformer] [--baseline]
    stylenet bench infer   [--sizes 512,1024,2048,3840x2160] [--backends eager,torchscript,onnx] [--baseline]
    stylenet bench optimize [--size 512] [--baseline]
    stylenet bench video   [--size 640x360,1280x720] [--model transformer,transformer_small|NAME] [--precisions fp32,bf16]

Every figure is the median of N timed repeats after warm-up, on synthetic images (timing does not depend on
pixel values), and carries the machine, torch version and thread count. --baseline runs our own code the way
pytorch/examples fast_neural_style does: fp32, channels-first, the photo through the whole loss network in a
second pass, no inference_mode, no compile, the layers as written (set_fast_ops off: no upsample_conv, no
fused Gram backward) and glibc's default allocator.
"""

from __future__ import annotations

import argparse
import contextlib
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

from stylenet.errors import StylenetError
from stylenet.export import export_model
from stylenet.formats import load_network
from stylenet.hostmemory import keep_freed_memory
from stylenet.kinds import get_kind, presets
from stylenet.kinds.transformer import set_fast_ops
from stylenet.loss_network import PRESETS, LossNetwork
from stylenet.losses import PerceptualLoss
from stylenet.modelfile import model_metadata
from stylenet.tiling import PRECISIONS, machine_name, native_bf16, resolve_device

# The single-style network sizes training builds (conf/model/transformer*.yaml); multistyle and adain are not
# benchmarked yet.
MODELS = {name: arguments for name, (kind, arguments) in presets().items() if kind == "transformer"}


def machine(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "machine": machine_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "keep_freed_memory": getattr(args, "keep_freed_memory", False),
    }


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch, or the process's peak resident memory on CPU (MB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


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


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def train_step(args: argparse.Namespace, device: torch.device) -> Callable[[], None]:
    """One optimizer step of the training recipe (the LightningModule's training_step, without Lightning)."""
    preset = PRESETS[args.loss_network]
    content_layers, style_layers = list(preset.content_layers), list(preset.style_layers)
    weights = "random" if preset.weights == "torchvision" else preset.weights  # same speed; no download
    loss_network = LossNetwork(preset.arch, weights, [*content_layers, *style_layers])
    style = torch.rand(3, 256, 256)
    criterion = PerceptualLoss(loss_network, style, content_layers, dict.fromkeys(style_layers, 1.0), 1.0, 1.0, 1.0)
    fast = not args.baseline
    network = set_fast_ops(get_kind("transformer").network(**MODELS[args.model]), fast).to(device)
    criterion = set_fast_ops(criterion, fast).to(device)
    photos = torch.rand(args.batch, 3, args.size, args.size, device=device)
    if fast and args.channels_last:
        network = network.to(memory_format=torch.channels_last)
        photos = photos.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, fused=device.type == "cuda" and fast)
    model = torch.compile(network) if fast and args.compile else network

    def step() -> None:
        with autocast(device, "fp32" if args.baseline else args.precision):
            stylized = model(photos)
            # baseline: the photo through the whole loss network too, as pytorch/examples does
            content = criterion.loss_network(photos, criterion.layers) if args.baseline else photos
            terms = criterion(stylized, content)
        terms["total"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def bench_train(args: argparse.Namespace) -> list[dict[str, Any]]:
    device = resolve_device(args.device)
    step = train_step(args, device)
    seconds = median_seconds(step, device, args.warmup, args.repeats)
    return [{
        "bench": "train", "mode": "baseline" if args.baseline else "stylenet", "model": args.model,
        "loss_network": args.loss_network, "size": args.size, "batch": args.batch, "device": device.type,
        "precision": "fp32" if args.baseline else args.precision, "channels_last": args.channels_last and not args.baseline,
        "compile": args.compile and not args.baseline, "data": "synthetic", "s_per_step": round(seconds, 4),
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


def bench_infer(args: argparse.Namespace) -> list[dict[str, Any]]:
    from stylenet.inference import StyleModel

    device = resolve_device(args.device)
    torch.manual_seed(0)
    network = set_fast_ops(get_kind("transformer").network(**MODELS[args.model]), not args.baseline).eval()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            for precision in args.precisions.split(","):
                if backend == "onnx" and precision != "fp32" or args.baseline and (backend, precision) != ("eager", "fp32"):
                    continue
                if backend == "eager":
                    model = StyleModel(network, {"kind": "safetensors"}, device, precision)
                else:
                    path = Path(folder) / f"model.{backend}"
                    if not path.exists():
                        export_model(network, model_metadata(network), path, backend)
                    model = StyleModel(*load_network(path), device, precision)
                for size in args.sizes.split(","):
                    height, width = parse_size(size)
                    images = torch.rand(1, 3, height, width, device=device)
                    if args.baseline:  # pytorch/examples: no_grad (not inference_mode), no clamp fusion, fp32
                        def run() -> object:
                            with torch.no_grad():
                                return model.bound(images)
                    else:
                        def run() -> object:
                            return model.stylize_tensor(images, tile=0)
                    seconds = median_seconds(run, device, args.warmup, args.repeats)
                    rows.append({
                        "bench": "infer", "mode": "baseline" if args.baseline else "stylenet", "model": args.model,
                        "backend": backend, "size": f"{width}x{height}", "device": device.type, "precision": precision,
                        "s_per_image": round(seconds, 4), "megapixels_per_s": round(height * width / 1e6 / seconds, 3),
                        "peak_memory_mb": round(peak_memory_mb(device)), **machine(device, args),
                    })
    return rows


def bench_optimize(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seconds per loss evaluation (forward + backward through VGG-19, what each L-BFGS step costs)."""
    device = resolve_device(args.device)
    content_layers, style_layers = list(PRESETS["vgg19_caffe"].content_layers), list(PRESETS["vgg19_caffe"].style_layers)
    loss_network = LossNetwork("vgg19", "caffe", [*content_layers, *style_layers])
    criterion = PerceptualLoss(
        loss_network, torch.rand(3, args.size, args.size), content_layers, dict.fromkeys(style_layers, 1.0),
        1.0, 10.0, 1.0, normalize=True,
    )
    criterion = set_fast_ops(criterion, not args.baseline).to(device)
    photo = torch.rand(1, 3, args.size, args.size, device=device)
    targets = criterion.content_features(photo)
    image = photo.clone().requires_grad_(True)

    def evaluation() -> None:
        image.grad = None
        with autocast(device, args.precision):
            terms = criterion(image, targets)
        terms["total"].backward()

    seconds = median_seconds(evaluation, device, args.warmup, args.repeats)
    return [{
        "bench": "optimize", "mode": "baseline" if args.baseline else "stylenet", "model": "vgg19", "size": args.size, "device": device.type,
        "precision": args.precision, "s_per_step": round(seconds, 4), "peak_memory_mb": round(peak_memory_mb(device)),
        **machine(device, args),
    }]


def synthetic_clip(path: Path, width: int, height: int, frames: int) -> Path:
    """An H.264 clip of a textured pattern panning a few pixels a frame: what a camera on a slow pan gives."""
    import av
    import numpy as np

    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            x = columns + 3 * index
            pattern = np.stack([np.sin(x / 9) * np.cos(rows / 13), np.sin((x + rows) / 17), np.cos(x / 23 - rows / 7)], -1)
            array = ((pattern + 1) * 127.5).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return path


def video_network(name: str) -> tuple[torch.nn.Module | Any, dict[str, Any]]:
    """A network preset (random weights: the same speed) or a model file / ready-made model's name."""
    if name in MODELS:
        network = get_kind("transformer").network(**MODELS[name]).eval()
        return network, model_metadata(network)
    from stylenet.zoo import resolve

    return load_network(resolve(name))


def bench_video(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Frames per second of `stylenet stylize clip.mp4`: decode, network, encode (frames_per_s), and the network
    alone on batches of decoded frames (network_frames_per_s), per model, backend, precision and frame size."""
    from stylenet.inference import StyleModel
    from stylenet.video import VideoOptions, frames_of, stylize_frames, stylize_video

    device = resolve_device(args.device)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        clips = {size: synthetic_clip(Path(folder) / f"{size}.mp4", *parse_size(size)[::-1], args.frames)
                 for size in args.size.split(",")}
        samples = {size: list(itertools.islice(frames_of(clip), args.batch)) for size, clip in clips.items()}
        for name in args.model.split(","):
            network, metadata = video_network(name)
            for backend in args.backends.split(","):
                if backend == "eager":
                    loaded = (network, {**metadata, "kind": "safetensors"})
                else:
                    path = Path(folder) / f"{name.replace('/', '_')}.{backend}"
                    export_model(network, metadata, path, backend)
                    loaded = load_network(path)
                for precision in args.precisions.split(","):
                    if backend == "onnx" and precision != "fp32":
                        continue
                    model = StyleModel(*loaded, device, precision)
                    options = VideoOptions(tile=0, batch=args.batch, temporal=args.temporal)
                    for size, clip in clips.items():
                        frames = samples[size]
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


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, one column per key that any row has."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(str(row.get(key, "")) for key in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stylenet bench", description="Time training, inference or optimization.")
    parser.add_argument("what", choices=["train", "infer", "optimize", "video"])
    parser.add_argument("--size", help="image side (train: 256; optimize: 512); video: frame sizes WIDTHxHEIGHT, "
                        "comma-separated (640x360,1280x720)")
    parser.add_argument("--sizes", default="512,1024,2048,3840x2160", help="infer: sizes, WIDTHxHEIGHT or N")
    parser.add_argument("--batch", type=int, default=4, help="train: photos per step; video: frames per network call")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=list(PRECISIONS), help="train, optimize")
    parser.add_argument("--precisions", help="infer, video: comma-separated (infer: fp32; video: fp32, plus bf16 "
                        "where the CPU has native bf16)")
    parser.add_argument("--backends", help="infer, video: comma-separated (infer: eager,torchscript,onnx; video: eager)")
    parser.add_argument("--model", help=f"a network: {', '.join(MODELS)} (default transformer); video: comma-separated, "
                        "presets or model files / ready-made names (default transformer,transformer_small)")
    parser.add_argument("--frames", type=int, default=48, help="video: frames in the synthetic clip")
    parser.add_argument("--temporal", type=float, default=0.0, help="video: --temporal strength (flow blending)")
    parser.add_argument("--loss-network", default="vgg19_caffe", choices=sorted(PRESETS), help="train (torchvision weights replaced by random ones: same speed, no download)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False, help="train")
    parser.add_argument("--compile", action="store_true", help="train: torch.compile the transformer")
    parser.add_argument("--baseline", action="store_true", help="the reference implementation's way")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", type=Path, help="also append the rows to this Markdown file")
    return parser


def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    # the reference runs on glibc's defaults; ours keeps freed memory as `stylenet` and train.py do
    args.keep_freed_memory = not args.baseline and keep_freed_memory()
    video = args.what == "video"
    args.model = args.model or ("transformer,transformer_small" if video else "transformer")
    if not video and args.model not in MODELS:
        raise StylenetError(f"--model {args.model}: {args.what} benchmarks a network preset: {', '.join(MODELS)}")
    args.backends = args.backends or ("eager" if video else "eager,torchscript,onnx")
    args.precisions = args.precisions or ("fp32,bf16" if video and native_bf16(resolve_device(args.device)) else "fp32")
    if video:
        args.size = args.size or "640x360,1280x720"
    else:
        args.size = int(args.size or (512 if args.what == "optimize" else 256))
    rows = []
    for row in {"train": bench_train, "infer": bench_infer, "optimize": bench_optimize, "video": bench_video}[args.what](args):
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.markdown:
        with args.markdown.open("a") as file:
            file.write(markdown(rows) + "\n")
