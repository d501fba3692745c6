#!/usr/bin/env python
"""Stylize photos with trained models and save a grid: the photos on top, one row per model and style below,
each row starting with its painting (a blend row shows its paintings side by side).

    python scripts/sample_grid.py outputs/.../model.safetensors -o docs/quick_starry_night.jpg
    python scripts/sample_grid.py standard.safetensors small.safetensors -o side_by_side.jpg  # a row each
    python scripts/sample_grid.py multistyle.safetensors --style great_wave --style great_wave=0.5,the_scream=0.5 -o grid.jpg
    python scripts/sample_grid.py adain.safetensors --style-image a.jpg --style-image b.jpg -o grid.jpg
    python scripts/sample_grid.py any --style-image styles/udnie.jpg --ready-made -o grid.jpg  # beside udnie's own model
    python scripts/sample_grid.py starry_night great_wave ... --transpose -o grid.jpg  # a column per model
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from stylenet import StylenetError
from stylenet.models import zoo
from stylenet.models.registry import StyleInput
from stylenet.core.paths import data_root, painting_path
from stylenet.core.images import find_images, load_image, resize_short_side, save_image
from stylenet.running.inference import StyleModel, load_model, parse_style_mix


def center_square(image: Image.Image, size: int) -> Image.Image:
    image = resize_short_side(image, size)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def side_by_side(paintings: list[Image.Image], size: int) -> Image.Image:
    """One tile holding vertical strips of each painting: how a blend row is labelled."""
    tile = Image.new("RGB", (size, size), (255, 255, 255))
    width = size // len(paintings)
    for index, painting in enumerate(paintings):
        square = center_square(painting, size)
        tile.paste(square.crop((index * width, 0, (index + 1) * width, size)), (index * width, 0))
    return tile


def style_rows(model: StyleModel, args: argparse.Namespace) -> list[tuple[list[Path], object]]:
    """[(painting files for the label, what to select)] for each row."""
    style_input = model.model_kind.style_input
    if style_input is StyleInput.IMAGE:
        if not args.style_image:
            raise StylenetError("an any-style model needs --style-image PAINTING (one row each)")
        return [([path], path) for path in args.style_image]
    if style_input is StyleInput.WEIGHTS:
        images = dict(zip(model.styles, (model.metadata.get("style") or {}).get("images") or []))
        rows = []
        for spec in args.style or model.styles:
            names = [name for name, weight in parse_style_mix(spec, model.styles).items() if weight > 0]
            rows.append(([painting_path(images[name]) for name in names if name in images], spec))
        return rows
    image = (model.metadata.get("style") or {}).get("image")
    return [([painting_path(image)] if image else [], None)]


def with_ready_made(rows: list[tuple], args: argparse.Namespace) -> list[tuple]:
    """--ready-made: after each painting row of an any-style model, the row of that painting's ready-made model."""
    if not args.ready_made:
        return rows
    expanded = []
    for model, painting_files, selection in rows:
        expanded.append((model, painting_files, selection))
        if model.model_kind.style_input is StyleInput.IMAGE and Path(selection).stem in zoo.names():
            expanded.append((load_model(Path(selection).stem), painting_files, None))
    return expanded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="model files: their rows in this order")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--photos", type=Path, default=Path(data_root()) / "content_test")
    parser.add_argument("--names", nargs="*", default=["baboon", "building", "butterfly", "chicky_512", "fruits", "messi5"])
    parser.add_argument("--size", type=int, default=256, help="side of each square tile (px)")
    parser.add_argument("--style", action="append", help="multi-style models: a row per NAME or blend (default: each style)")
    parser.add_argument("--style-image", action="append", type=Path, help="any-style models: a row per painting")
    parser.add_argument("--transpose", action="store_true", help="a column per model, its painting on top; a row per photo")
    parser.add_argument("--ready-made", action="store_true",
                        help="any-style models: each painting's row followed by the row of its ready-made model")
    args = parser.parse_args(argv)
    try:
        models = [load_model(path) for path in args.models]
        photos = [p for p in find_images(args.photos) if not args.names or p.stem in args.names]
        tiles = [center_square(load_image(p), args.size) for p in photos]
        rows = with_ready_made([(model, *row) for model in models for row in style_rows(model, args)], args)
        cells: dict[tuple[int, int], Image.Image] = {(0, column): tile for column, tile in enumerate(tiles, start=1)}
        for row, (model, painting_files, selection) in enumerate(rows, start=1):
            if model.model_kind.style_input is StyleInput.IMAGE:
                model = model.with_paintings([load_image(selection, "--style-image")])
            elif model.model_kind.style_input is StyleInput.WEIGHTS:
                model = model.with_style(selection)
            paintings = [load_image(path) for path in painting_files if path is not None and path.is_file()]
            if paintings:
                cells[row, 0] = side_by_side(paintings, args.size)
            for column, tile in enumerate(tiles, start=1):
                cells[row, column] = model.stylize(tile)
        if args.transpose:  # a column per model (its painting on top), a row per photo
            cells = {(column, row): cell for (row, column), cell in cells.items()}
        step = args.size + 4
        height, width = (max(index) + 1 for index in zip(*cells))
        grid = Image.new("RGB", (width * step - 4, height * step - 4), "white")
        for (row, column), cell in cells.items():
            grid.paste(cell, (column * step, row * step))
        save_image(grid, args.output, quality=88)
    except StylenetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
