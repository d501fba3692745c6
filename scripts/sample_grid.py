#!/usr/bin/env python
"""Stylize photos with a trained model and save a grid: the painting, then photos (top) over results (bottom).

    python scripts/sample_grid.py outputs/.../model.safetensors -o docs/quick_starry_night.jpg
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from stylenet import StylenetError
from stylenet.config import data_root
from stylenet.images import find_images
from stylenet.images import load_image, resize_long_side, resize_short_side, save_image
from stylenet.inference import load_model


def center_square(image: Image.Image, size: int) -> Image.Image:
    image = resize_short_side(image, size)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--photos", type=Path, default=Path(data_root()) / "content_test")
    parser.add_argument("--names", nargs="*", default=["baboon", "building", "butterfly", "chicky_512", "fruits", "messi5"])
    parser.add_argument("--size", type=int, default=256, help="side of each square tile (px)")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model)
        photos = [p for p in find_images(args.photos) if not args.names or p.stem in args.names]
        tiles = [center_square(load_image(p), args.size) for p in photos]
        styled = [model.stylize(tile) for tile in tiles]
        style_path = model.metadata.get("style", {}).get("image")
        painting = resize_long_side(load_image(style_path), args.size) if style_path and Path(style_path).is_file() else None
        gap, columns = 4, len(tiles) + (painting is not None)
        grid = Image.new("RGB", (columns * (args.size + gap) - gap, 2 * args.size + gap), (255, 255, 255))
        offset = 0
        if painting is not None:
            grid.paste(painting, (0, (2 * args.size + gap - painting.size[1]) // 2))
            offset = args.size + gap
        for index, (tile, result) in enumerate(zip(tiles, styled)):
            grid.paste(tile, (offset + index * (args.size + gap), 0))
            grid.paste(result, (offset + index * (args.size + gap), args.size + gap))
        save_image(grid, args.output, quality=88)
    except StylenetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
