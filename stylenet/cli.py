"""The `stylenet` console script: a thin layer over the package's modules."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from stylenet.core.errors import StylenetError, __version__
from stylenet.core.hostmemory import keep_freed_memory

USAGE = """usage: stylenet [--debug] <command> [...]

commands:
  train [key=value ...]          train a style network (the same Hydra overrides as `python train.py`)
  stylize INPUT... --model M      stylize images, folders or globs (M: a model file or a ready-made name)
  export MODEL --format F        write safetensors, TorchScript, ONNX or a web page (web), verified against the module
  optimize CONTENT STYLE... -o OUT  paint one image by optimizing its pixels (Gatys et al.)
  eval MODEL... --photos DIR     judge models against Gatys et al. on the same objective (report, grid)
  info MODEL                     print a model's metadata
  models                         list the ready-made models (stylize photo.jpg --model NAME)
  serve [--models DIR ...]       a local web page: stylize photos in the browser (http://127.0.0.1:7860)
  webcam --model M               stylize a camera live (window, --virtual camera, --record FILE)
  bench train|infer|optimize|video|folder|web  time the hot paths (one JSON line per figure; see BENCHMARKS.md)

--debug shows full tracebacks instead of one-line errors (for training: HYDRA_FULL_ERROR=1).
"""


def train_command(overrides: list[str]) -> None:
    """Run the checkout's train.py (in the working directory) with these Hydra overrides, as if called directly.

    Running the file itself (not a copy of its @hydra.main) keeps one entry point, and lets Lightning's DDP
    launcher start the other ranks with `python train.py ...`. Its configs live in the checkout's conf/.
    """
    import runpy

    script = Path.cwd() / "train.py"
    if not (script.is_file() and (Path.cwd() / "conf" / "train.yaml").is_file()):
        raise StylenetError("`stylenet train` runs a checkout's train.py and conf/: run it from the root of a "
                            "stylenet checkout (git clone, then `make install`)")
    sys.argv = [str(script), *overrides]
    runpy.run_path(str(script), run_name="__main__")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model and the style choices of multi-style and any-style models: what stylize and webcam share."""
    from stylenet.running.inference import ANY_STYLE_MODEL

    parser.add_argument("--model", type=Path,
                        help="a ready-made model's name (`stylenet models`), or a .safetensors, training .ckpt, "
                             f"TorchScript, ONNX or pytorch/examples .pth file (with --style-image: {ANY_STYLE_MODEL})")
    parser.add_argument("--style", help="multi-style models: NAME, or a blend NAME=W,NAME=W (see `stylenet info`)")
    parser.add_argument("--style-image", action="append", metavar="PATH[=W]",
                        help="any painting, for any-style models (the default model then); repeat to blend, with "
                             "optional weights (a.jpg=0.7)")
    parser.add_argument("--style-size", type=int,
                        help="any-style models: long side of the style image in px (default: the model's, 256 for "
                             "arbitrary, 512 for adain)")
    parser.add_argument("--backend", choices=["auto", "eager", "onnx", "compile"], default="auto",
                        help="what runs the network: auto picks ONNX Runtime where it was measured faster on this "
                             "machine (once per network shape; needs stylenet[onnx]), else eager PyTorch; compile: "
                             "torch.compile, faster per image after compiling at the first (videos, many photos)")


PRECISION_HELP = ("auto: bf16 where the CPU (AVX512-BF16 or AMX) computes it natively, fp16 on CUDA GPUs (bf16 "
                  "for training and optimize), else fp32; fp16: CUDA only")


def add_precision_argument(parser: argparse.ArgumentParser, help: str = PRECISION_HELP) -> None:
    from stylenet.core.device import AUTO, PRECISION_CHOICES

    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=AUTO, help=help)


def note_precision(precision: str, device: str, inference: bool = False) -> None:
    """--precision auto: say once, on stderr, what it chose on this machine."""
    from stylenet.core.device import AUTO, auto_precision_note

    if precision == AUTO:
        print(auto_precision_note(device, inference), file=sys.stderr)


def model_spec(args: argparse.Namespace):
    """The model that --model, --device, --precision, --style or --style-image and --backend name."""
    from stylenet.running.backends import ModelSpec
    from stylenet.running.inference import ANY_STYLE_MODEL

    if args.model is None and not args.style_image:
        raise StylenetError("name the model: --model NAME (`stylenet models` lists them) or a model file; or give "
                            "--style-image PAINTING to paint with any painting")
    paintings = tuple((str(path), weight) for path, weight in map(split_weight, args.style_image or []))
    return ModelSpec(str(args.model or ANY_STYLE_MODEL), args.device, args.precision, args.style, paintings,
                     args.style_size, args.backend)


def model_from_arguments(args: argparse.Namespace):
    """The model of --model, --device and --precision, bound to --style or --style-image."""
    return model_spec(args).load()


def note_choices(model, backend: str) -> None:
    """Once the work is about to start, say on stderr what --precision auto and --backend chose here."""
    from stylenet.core.device import precision_note

    if model.runner.auto:
        print(precision_note(model.precision, model.device) if model.file_format != "onnx"
              else "precision auto: fp32 (ONNX models run in fp32)", file=sys.stderr)
    if model.has_weights and model.engine == "onnx":  # chosen by with_backend, not an .onnx file
        print("backend: ONNX Runtime (fp32) for whole images" + (", measured faster here" if backend == "auto" else ""),
              file=sys.stderr)


# eager video work at least this long would have finished sooner compiled: 30 s of 640x480 street took 58.3 s eager
# and 43.8 s with --backend compile, its compile included (2-core Xeon, BENCHMARKS.md)
COMPILE_TIP_SECONDS = 60.0


def note_compile(model, backend: str, video_seconds: float) -> None:
    """After long videos stylized eager on a CPU by --backend auto (which never compiles), name the faster way; for
    the transformer networks (single- and multi-style), where it was measured."""
    measured = model.engine == "eager" and model.device.type == "cpu" and model.plain_network is not None
    if backend == "auto" and measured and video_seconds >= COMPILE_TIP_SECONDS:
        print("tip: --backend compile stylizes long videos faster: it compiles for about 20 s at the first frame, "
              "then ran frames about 2x as fast on a 2-core CPU", file=sys.stderr)


def add_stroke_size_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stroke-size", type=float, metavar="S",
                        help="stroke size: 1 the strokes the network paints at any size (a fine grain on a large photo), "
                             "2 twice as large, 0.5 half (default: the model's look at its working size, kept at any size)")


def webcam_command(argv: list[str]) -> None:
    from stylenet.running.options import LIVE_TEMPORAL, StylizeOptions
    from stylenet.running.webcam import Camera, run_webcam

    parser = argparse.ArgumentParser(
        prog="stylenet webcam", description="Stylize a camera live: a window, a virtual camera and/or a recording.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument("--camera", default="0", help="camera index (0, 1, ...), or a video file or URL read as a camera")
    parser.add_argument("--size", type=int, help="long side of the stylized frames in px (default: the camera's)")
    parser.add_argument("--strength", type=float, default=1.0, help="0 = the camera's picture, 1 = full style")
    parser.add_argument("--preserve-color", action="store_true", help="keep the camera's colours (luminance transfer)")
    parser.add_argument("--temporal", type=float, default=LIVE_TEMPORAL, metavar="STRENGTH",
                        help="against flicker: blend with the previous output along the optical flow (0 off; 0.5-0.8)")
    add_stroke_size_argument(parser)
    parser.add_argument("--no-window", dest="window", action="store_false", help="show no window")
    parser.add_argument("--virtual", action="store_true", help="send the frames to a virtual camera (pyvirtualcam)")
    parser.add_argument("--record", type=Path, metavar="FILE", help="also write the stylized frames to FILE (.mp4)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --record file")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames (default: until q, Esc or Ctrl-C)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_precision_argument(parser)
    args = parser.parse_args(argv)
    if args.record is not None and args.record.exists() and not args.overwrite:
        raise StylenetError(f"{args.record} exists; pass --overwrite to replace it, or choose another --record")
    camera = Camera(args.camera, args.window, args.virtual, args.record, args.max_frames)
    options = StylizeOptions.live(size=args.size, strength=args.strength, preserve_color=args.preserve_color,
                                  temporal=args.temporal, stroke_size=args.stroke_size)
    model = model_from_arguments(args)
    result = run_webcam(model, camera, options)
    note_choices(model, args.backend)
    width, height = result.size
    print(f"{result.frames} frames of {width}x{height} in {result.seconds:.1f} s ({result.frames_per_s:.1f} frames/s)"
          + (f" -> {args.record}" if args.record else ""))


def stylize_parser() -> argparse.ArgumentParser:
    from stylenet.running.options import BATCH as VIDEO_BATCH, CRF as VIDEO_CRF, IMAGES_PER_TASK, QUALITY, TEMPORAL as VIDEO_TEMPORAL

    parser = argparse.ArgumentParser(
        prog="stylenet stylize", description="Stylize images and videos with a trained model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or quoted globs")
    add_model_arguments(parser)
    parser.add_argument("-o", "--output",  # a str: with --engine ray it may be a URI, which Path would mangle
                        help="output file for one input, else a folder mirroring the inputs "
                             "(default: NAME_stylized.EXT, or ./stylized/)")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--size", type=int, help="long side of the output in px (default: the input's size)")
    scale.add_argument("--scale", type=float, help="scale factor on the input's size")
    parser.add_argument("--strength", type=float, default=1.0, help="0 = the photo, 1 = full style")
    parser.add_argument("--preserve-color", action="store_true", help="keep the photo's colours (luminance transfer)")
    parser.add_argument("--tile", type=int, help="process in N px tiles (default: only when the image would not fit; 0: never)")
    add_stroke_size_argument(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_precision_argument(parser)
    parser.add_argument("--ext", choices=["png", "jpg", "webp"], help="output format in folder mode (default: the input's)")
    parser.add_argument("--quality", type=int, default=QUALITY, help="JPEG/WebP quality")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    video = parser.add_argument_group("videos (.mp4 .mov .mkv .webm .avi; audio copied, frame timing and size kept)")
    video.add_argument("--start", type=float, help="first second of the video to stylize (default: its start)")
    video.add_argument("--end", type=float, help="second to stop at (default: its end)")
    video.add_argument("--codec", help="video encoder (default: libx264; libvpx-vp9 for .webm; mpeg4, ...)")
    video.add_argument("--crf", type=int, default=VIDEO_CRF, help="quality of libx264/libvpx-vp9: lower is better, 0 lossless")
    video.add_argument("--batch-size", type=int, default=VIDEO_BATCH, help="frames per network call")
    video.add_argument("--temporal", type=float, default=VIDEO_TEMPORAL, metavar="STRENGTH",
                       help="against flicker: blend each frame with the previous output carried along the optical "
                            "flow, where the flow is reliable (about 2x less flicker at 0.75; 0: frame by frame)")
    parser.add_argument("--max-image-pixels", type=int,
                        help="decode images up to this many pixels (default: Pillow's decompression-bomb limit, 89478485)")
    ray = parser.add_argument_group("scaling out (--engine ray: a Ray Data pipeline; pip install 'stylenet[ray]')")
    ray.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="local: this process; ray: a pool of Ray workers on this machine or a cluster (same outputs)")
    ray.add_argument("--address", help="join this Ray cluster (auto, HOST:6379 or ray://HOST:10001; None: start a Ray "
                                       "on this machine); inputs and outputs must be paths every node sees, or URIs")
    ray.add_argument("--workers", type=int, help="workers, each loading the model once (None: one per GPU with "
                                                 "--gpus-per-worker, else one per CPU)")
    ray.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs each worker takes (0: CPU workers)")
    ray.add_argument("--images-per-task", type=int, default=IMAGES_PER_TASK,
                     help="the images each Ray task takes (a video is a task of its own)")
    ray.add_argument("--cpus-per-worker", type=float, help="CPUs (and torch threads) each worker takes (None: 1, or "
                                                           "the CPUs shared among --workers)")
    return parser


def stylize_command(argv: list[str]) -> None:
    from stylenet.running import jobs
    from stylenet.core.images import set_max_image_pixels
    from stylenet.running.options import StylizeOptions

    args = stylize_parser().parse_args(argv)
    if args.max_image_pixels is not None and args.max_image_pixels < 1:
        raise StylenetError(f"--max-image-pixels {args.max_image_pixels}: must be at least 1 (leave it out for "
                            "Pillow's 89 million)")
    set_max_image_pixels(args.max_image_pixels)
    options = StylizeOptions(size=args.size, scale=args.scale, strength=args.strength, preserve_color=args.preserve_color,
                             tile=args.tile, stroke_size=args.stroke_size, quality=args.quality, start=args.start,
                             end=args.end, codec=args.codec, crf=args.crf, frames_per_call=args.batch_size,
                             temporal=args.temporal)
    model = model_from_arguments(args) if args.engine == "local" else None  # ray: each worker loads it
    output = Path(args.output) if args.output else None
    single = jobs.one_file(args.inputs) and "://" not in str(args.output)
    where = jobs.plan(args.inputs, output, args.ext)[0].target if single else (args.output or "stylized")
    if single and where.exists() and not args.overwrite:
        raise StylenetError(f"{where} exists; pass --overwrite to replace it, or choose another -o")
    if args.engine == "ray":
        from stylenet.running.cluster import RaySettings, stylize_on_ray

        settings = RaySettings(address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                               cpus_per_worker=args.cpus_per_worker, images_per_task=args.images_per_task)
        summary = stylize_on_ray(model_spec(args), args.inputs, args.output, args.ext, options, settings, args.overwrite)
    else:
        summary = jobs.stylize_jobs(model, jobs.plan(args.inputs, output, args.ext), options, args.overwrite)
    if single and summary.failed:
        raise StylenetError(summary.failed[0][1])
    if args.engine == "local":
        note_choices(model, args.backend)  # after the work: an error stays the only line
        note_compile(model, args.backend, summary.video_seconds)
    for source, reason in summary.failed:
        print(f"failed: {source}: {reason}", file=sys.stderr)
    print(f"{summary.line()} -> {where}")
    if summary.failed:
        sys.exit(1)


def split_weight(text: str) -> tuple[Path, float]:
    """'painting.jpg=0.7' -> (painting.jpg, 0.7); 'painting.jpg' -> (painting.jpg, 1.0)."""
    path, _, weight = text.rpartition("=")
    try:
        return (Path(path), float(weight)) if path else (Path(text), 1.0)
    except ValueError:
        return Path(text), 1.0  # an '=' that is part of the file name


def export_command(argv: list[str]) -> None:
    from stylenet.models.export import EXTENSIONS, TOLERANCES, VERIFY_SIZES, export_model
    from stylenet.running.inference import load_model

    parser = argparse.ArgumentParser(prog="stylenet export", description="Export a model to another format, verified.")
    parser.add_argument("source", type=Path, help="training .ckpt, .safetensors, pytorch/examples .pth, or a ready-made model's name")
    parser.add_argument("--format", required=True, choices=[*EXTENSIONS, "web"],
                        help="web: a folder with a page that stylizes photos in the browser (ONNX Runtime Web; README)")
    parser.add_argument("-o", "--output", type=Path, help="output file, or folder for --format web (default: beside the "
                        "source, new extension; NAME_web/ for web)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--style-image", type=Path, help="any-style models (arbitrary): bake this painting in; the "
                        "file is then a plain per-painting model, as small and fast as one")
    parser.add_argument("--style-size", type=int, help="with --style-image: the painting's long side in px (default: the model's)")
    parser.add_argument("--weights", choices=["fp16", "fp32"], default="fp16", help="--format web: the model's "
                        "weights in the folder (fp16 halves the download, computed in fp32; kept only if the output moves < 2/255)")
    parser.add_argument("--no-webgpu", action="store_true", help="--format web: leave out ONNX Runtime Web's WebGPU "
                        "build (29 MB): the page then runs on WebAssembly (CPU) everywhere")
    args = parser.parse_args(argv)
    model = load_model(args.source, "cpu", "fp32")
    if not model.has_weights:  # TorchScript and ONNX files hold a compiled graph, not the network's weights
        raise StylenetError(f"{args.source} is a {model.file_format} file: export from the .safetensors or .ckpt it came from")
    stem = args.source.name.split(".")[0] + (f"_{args.style_image.stem}" if args.style_image else "")
    output = args.output or args.source.with_name(stem + ("_web" if args.format == "web" else EXTENSIONS[args.format]))
    if output.resolve() == args.source.resolve():
        raise StylenetError(f"-o {output} is the source file; choose another output")
    if output.exists() and not args.overwrite:
        raise StylenetError(f"{output} exists; pass --overwrite to replace it, or choose another -o")
    if args.format != "web" and (args.weights != "fp16" or args.no_webgpu):
        raise StylenetError("--weights and --no-webgpu shape a web export: use them with --format web")
    network, metadata = model.loaded, {key: value for key, value in model.metadata.items() if key != "format"}
    if args.style_image is not None:
        network, metadata = baked_network(model, args.style_image, args.style_size)
    metadata["exported_from"] = {"file": args.source.name, "format": model.file_format}
    if args.format == "web":
        web_command(model, network, metadata, output, args)
        return
    worst = export_model(network, metadata, output, args.format)
    sizes = " and ".join(f"{w}x{h}" for h, w in VERIFY_SIZES)
    print(
        f"wrote {output} ({args.format}, {output.stat().st_size / 1e6:.1f} MB); verified against the module at "
        f"{sizes}: max difference {worst:.1e} (tolerance {TOLERANCES[args.format]:.0e})"
    )


def web_command(model, network, metadata: dict, output: Path, args: argparse.Namespace) -> None:
    from stylenet.running.webexport import export_web, folder_size

    described = export_web(model, network, metadata, output, source=args.source.name,
                           weights=args.weights, webgpu=not args.no_webgpu, overwrite=args.overwrite,
                           baked=args.style_image)
    model_mb = (output / "model.onnx").stat().st_size / 1e6
    print(f"wrote {output}/ ({folder_size(output) / 1e6:.0f} MB: the page, model.onnx {model_mb:.1f} MB in "
          f"{described['weights']} weights, ONNX Runtime Web {described['onnx_runtime_web']}); verified against the module: "
          f"max difference {described['verified_difference']:.1e}")
    print(f"serve it with any static web server, e.g. python3 -m http.server 8000 -d {output}, and open http://localhost:8000/")


def baked_network(model, painting: Path, style_size: int | None):
    """An any-style model with one painting bound, as the plain network that binding gives, and its metadata."""
    import hashlib

    from stylenet.core.paths import data_relative
    from stylenet.core.images import load_image
    from stylenet.models.kinds import find_kind
    from stylenet.models.modelfile import model_metadata
    from stylenet.models.registry import StyleInput

    if model.model_kind.style_input is not StyleInput.IMAGE:
        raise StylenetError(f"--style-image bakes a painting into an any-style model; this is a {model.model_kind.name} model")
    model = model.with_paintings([load_image(painting, "--style-image")], None, style_size)
    if find_kind(model.bound) is None:
        raise StylenetError(f"a {model.model_kind.name} model cannot bake a painting in (its bound form is not a "
                            "network of its own); export it without --style-image and give the painting at run time")
    size = style_size or model.model_kind.style_size
    style = {"name": painting.stem, "image": data_relative(painting), "sha256": hashlib.sha256(painting.read_bytes()).hexdigest(),
             "size": size}
    kept = {key: model.metadata[key] for key in ("training", "recipe", "loss_network", "loss") if key in model.metadata}
    baked = {"architecture": model.model_kind.name, "arguments": model.metadata.get("arguments")}
    return model.bound, model_metadata(model.bound, style=style, baked_from=baked, **kept)


def parse_floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def optimize_parser() -> argparse.ArgumentParser:
    from stylenet.models.loss_network import PRESETS
    from stylenet.running.optimize import OptimizeSettings, optimize_weight_keys

    defaults = OptimizeSettings()
    parser = argparse.ArgumentParser(
        prog="stylenet optimize", description="Paint CONTENT in the style of STYLE(s) by optimizing its pixels.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("content", type=Path, help="the photo")
    parser.add_argument("styles", type=Path, nargs="+", metavar="style", help="painting(s)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="result (.png, .jpg, .webp)")
    parser.add_argument("--style-blend", type=parse_floats, help="weights of the styles, e.g. 0.7,0.3 (default: equal)")
    parser.add_argument("--size", type=int, default=defaults.size, help="long side of the result (px)")
    parser.add_argument("--scales", type=lambda t: [int(x) for x in parse_floats(t)], default=[],
                        help="coarse-to-fine long sides, e.g. 256,512,1024 (default: size/2,size from 512 px up)")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="at the first scale; later ones get half")
    parser.add_argument("--optimizer", choices=["lbfgs", "adam"], default=defaults.optimizer)
    parser.add_argument("--init", choices=["content", "noise", "style"], default=defaults.init)
    parser.add_argument("--preserve-color", action="store_true", help="keep the photo's colours (luminance transfer)")
    for key in optimize_weight_keys():  # one flag per loss term (stylenet/models/losses.py), e.g. --style-weight
        parser.add_argument(f"--{key.replace('_', '-')}", type=float, default=defaults.weights.get(key, 0.0))
    parser.add_argument("--loss-network", choices=sorted(PRESETS), default=defaults.loss_network)
    parser.add_argument("--save-every", type=int, default=0, help="also write OUT_stepNNNN every N steps")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=defaults.precision,
                        help="bf16 autocast for the loss network (Gram matrices stay fp32); auto: bf16 where the CPU "
                             "(AVX512-BF16 or AMX) or GPU computes it natively, else fp32")
    return parser


def optimize_command(argv: list[str]) -> None:
    from stylenet.core.images import load_image, output_format, save_image
    from stylenet.models.losses import LOSS_TERMS
    from stylenet.running.optimize import OptimizeSettings, optimize, optimize_weight_keys

    args = optimize_parser().parse_args(argv)
    output_format(args.output)  # fail now, not after minutes of optimizing
    content = load_image(args.content, "content image")
    styles = [load_image(path, "style image") for path in args.styles]
    settings = OptimizeSettings(
        size=args.size, scales=args.scales, steps=args.steps, optimizer=args.optimizer, init=args.init,
        weights={key: getattr(args, key) for key in optimize_weight_keys()}, loss_network=args.loss_network,
        preserve_color=args.preserve_color, seed=args.seed, device=args.device, precision=args.precision,
    )
    settings.validate(len(styles), args.style_blend if args.style_blend is not None else [1.0] * len(styles))
    note_precision(args.precision, args.device)
    output = args.output
    image, summary = optimize(
        content, styles, args.style_blend, settings, save_every=args.save_every,
        on_image=lambda img, step: save_image(img, output.with_name(f"{output.stem}_step{step:04d}{output.suffix}")),
    )
    save_image(image, output)
    terms = ", ".join(f"{name} {summary[name]:.3g}" for name in LOSS_TERMS if name in summary)
    print(f"wrote {output} ({image.size[0]}x{image.size[1]}): {summary['steps']} steps in {summary['seconds']:.0f} s; {terms}")


def eval_command(argv: list[str]) -> None:
    from stylenet.evaluation.judge import CURVE_ITERATIONS, JUDGE_VERSION, evaluate, placement_phrase

    parser = argparse.ArgumentParser(
        prog="stylenet eval", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=f"Judge models (judge {JUDGE_VERSION}): each output is placed on the curve of Gatys L-BFGS on the "
                    f"judge's objective (after {', '.join(map(str, CURVE_ITERATIONS))} iterations, cached).",
    )
    parser.add_argument("models", type=Path, nargs="+", metavar="MODEL", help="model files of any format, or ready-made models' names")
    parser.add_argument("--photos", type=Path, nargs="+", required=True, metavar="PATH",
                        help="folders and/or image files: photos the models never trained on")
    parser.add_argument("--style", help="multi-style models: the style to judge (default: the first)")
    parser.add_argument("--style-image", type=Path, help="the painting (any-style models need one; default: the model's)")
    parser.add_argument("--size", type=int, default=256, help="long side of photos and painting (px)")
    parser.add_argument("-o", "--output", type=Path, default=Path("eval"), help="folder for report.md, report.json, grid.jpg")
    parser.add_argument("--cache-dir", type=Path,
                        help="where reference curves are kept (default: $STYLENET_CACHE, else $XDG_CACHE_HOME/stylenet or "
                             "~/.cache/stylenet)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (the models; the judge runs on the CPU)")
    add_precision_argument(parser, f"the models' precision ({PRECISION_HELP}); the judge always scores in fp32")
    args = parser.parse_args(argv)
    report = evaluate(args.models, args.photos, style=args.style, style_image=args.style_image, size=args.size,
                      output=args.output, cache=args.cache_dir, device=args.device, precision=args.precision)
    for model in report["models"]:
        median = model["median"]
        count = len(model["photos"])
        print(f"{model['path']}: {placement_phrase(median['placement_label'])} (median of {count} photo{'s' * (count != 1)}); "
              f"content {median['content']:.3g}, style {median['style']:.3g}; photo lost {model['photo_lost']}/{count}; "
              f"checkerboard {median['checkerboard']:.2f}, border {median['border']:.1f}")
    print(f"report: {args.output / 'report.md'} ({report['seconds']:.0f} s)")
    note_precision(args.precision, args.device, inference=True)  # the models'; the judge runs in fp32


def info_command(argv: list[str]) -> None:
    from stylenet.running.inference import load_model

    parser = argparse.ArgumentParser(prog="stylenet info", description="Print a model's metadata as JSON.")
    parser.add_argument("model", type=Path, help="a model file, or a ready-made model's name")
    print(json.dumps(load_model(parser.parse_args(argv).model, "cpu", "fp32").metadata, indent=2, sort_keys=True))


def models_command(argv: list[str]) -> None:
    from stylenet.models import zoo

    parser = argparse.ArgumentParser(prog="stylenet models", description="List the ready-made models stylenet ships.")
    parser.add_argument("--json", action="store_true", help="one JSON object per model instead of a table")
    args = parser.parse_args(argv)
    rows = zoo.table()
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=True))
        return
    if not rows:
        print("this installation ships no ready-made models")
        return
    print(f"{'name':<24} {'kind':<12} {'size':>8}  {'eval placement':<15} training")
    for row in rows:
        trained = f"{row['minutes']} min, {row['recipe']}" if row["minutes"] is not None else row["recipe"]
        print(f"{row['name']:<24} {row['kind']:<12} {row['megabytes']:>5.2f} MB  {row['placement']:<15} {trained}")
    print("stylize with one: stylenet stylize PHOTO --model NAME (eval placement: as good as N L-BFGS iterations; MODELS.md)")


def serve_command(argv: list[str]) -> None:
    from stylenet.running.serve import HOST, MAX_PIXELS, MAX_UPLOAD_MB, PORT, QUEUE, Settings, serve

    parser = argparse.ArgumentParser(
        prog="stylenet serve", description="A local web page to stylize photos with the ready-made models and yours.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--models", type=Path, nargs="+", default=[], metavar="DIR",
                        help="folders whose model files the page also offers (e.g. outputs/); searched recursively")
    parser.add_argument("--host", default=HOST, help="address to listen on; anything but 127.0.0.1 lets other machines in")
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_precision_argument(parser)
    parser.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB, help="largest request (photo + painting)")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="largest image decoded (decompression bombs)")
    parser.add_argument("--queue", type=int, default=QUEUE, help="requests that may wait while one runs")
    args = parser.parse_args(argv)
    serve(Settings([folder.resolve() for folder in args.models], args.device, args.precision, args.max_upload_mb,
                   args.max_pixels, args.queue), args.host, args.port)


def bench_command(argv: list[str]) -> None:
    from stylenet.benchmarks.bench import main as bench_main

    more = {}
    if argv[:1] == ["web"]:  # the exported page in a browser: Playwright and Chromium, above bench's own modules
        from stylenet.benchmarks.webbench import bench_web

        more["web"] = bench_web
    bench_main(argv, more)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[:1]  # `stylenet --debug COMMAND ...`: full tracebacks instead of one-line errors
    argv = argv[1:] if debug else argv
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # other libraries: warnings only
    logging.getLogger("stylenet").setLevel(logging.INFO)
    try:
        dispatch(argv)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
    except StylenetError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:  # `stylenet info M | head -3`: the reader left; end quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit flush has nowhere to fail
        sys.exit(EXIT_SIGPIPE)
    except KeyboardInterrupt:  # Ctrl-C: no traceback, the shell's code for SIGINT
        print("interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)


EXIT_SIGPIPE = 128 + 13  # what a shell reports for a process ended by SIGPIPE (signal 13 on Linux and macOS)


def dispatch(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return
    if argv[0] == "--version":
        print(f"stylenet {__version__}")
        return
    command, rest = argv[0], argv[1:]
    commands = {
        "train": train_command, "stylize": stylize_command, "export": export_command,
        "optimize": optimize_command, "eval": eval_command, "info": info_command, "models": models_command,
        "bench": bench_command, "webcam": webcam_command, "serve": serve_command,
    }
    if command not in commands:
        raise StylenetError(f"unknown command '{command}'; valid: {', '.join(commands)} (see stylenet --help)")
    if command in ("stylize", "optimize", "eval", "webcam"):  # many large same-size tensors; bench decides for itself
        keep_freed_memory()
    commands[command](rest)


if __name__ == "__main__":
    main()
