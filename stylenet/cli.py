"""The `stylenet` console script: a thin layer over the package's modules."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from stylenet import StylenetError, __version__

USAGE = """usage: stylenet <command> [...]

commands:
  train [key=value ...]          train a style network (the same Hydra overrides as `python train.py`)
  stylize INPUT --model M -o OUT stylize one image with a trained model
  info MODEL                     print a model's metadata
"""


def train_command(overrides: list[str]) -> None:
    """Run the repository's train.py with these Hydra overrides, as if it had been called directly.

    Running the file itself (not a copy of its @hydra.main) keeps one entry point, and lets Lightning's DDP
    launcher start the other ranks with `python train.py ...`.
    """
    import runpy

    from stylenet.config import REPO_ROOT

    script = REPO_ROOT / "train.py"
    if not script.is_file():
        raise StylenetError(f"{script} not found: `stylenet train` needs the source checkout (pip install -e .)")
    sys.argv = [str(script), *overrides]
    runpy.run_path(str(script), run_name="__main__")


def stylize_command(argv: list[str]) -> None:
    from stylenet.images import load_image, save_image
    from stylenet.inference import load_model

    parser = argparse.ArgumentParser(prog="stylenet stylize", description="Stylize an image with a trained model.")
    parser.add_argument("input", type=Path, help="image file")
    parser.add_argument("--model", required=True, type=Path, help="model.safetensors or a training .ckpt")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output image (.png, .jpg, .webp)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    model = load_model(args.model, args.device)
    image = load_image(args.input, "input")
    save_image(model.stylize(image), args.output)
    print(f"wrote {args.output} ({image.size[0]}x{image.size[1]}, {time.perf_counter() - started:.1f} s)")


def info_command(argv: list[str]) -> None:
    from stylenet.inference import load_model

    parser = argparse.ArgumentParser(prog="stylenet info", description="Print a model's metadata as JSON.")
    parser.add_argument("model", type=Path)
    print(json.dumps(load_model(parser.parse_args(argv).model).metadata, indent=2, sort_keys=True))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return
    if argv[0] == "--version":
        print(f"stylenet {__version__}")
        return
    command, rest = argv[0], argv[1:]
    commands = {"train": train_command, "stylize": stylize_command, "info": info_command}
    if command not in commands:
        print(f"error: unknown command '{command}'; valid: {', '.join(commands)} (see stylenet --help)", file=sys.stderr)
        sys.exit(2)
    try:
        commands[command](rest)
    except StylenetError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
