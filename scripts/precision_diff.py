#!/usr/bin/env python
"""How far bf16 inference lies from fp32, on real photos: what `--precision auto` costs in picture.

    python scripts/precision_diff.py [MODEL ...] [--photos DIR] [--size 512] [--precision bf16]

For each model (default: every ready-made one) and each photo (default: content_test), stylizes the photo in fp32
and in the other precision and prints a Markdown row per model: mean, 99th percentile and largest difference in
8-bit levels over all photos' pixels, and the share of pixel values that differ by more than 2 levels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylenet.models import zoo  # noqa: E402
from stylenet.core.paths import data_root  # noqa: E402
from stylenet.core.images import load_image  # noqa: E402
from stylenet.running.inference import load_model  # noqa: E402
from stylenet.core.device import machine_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="model files or ready-made names (default: all ready-made)")
    parser.add_argument("--photos", type=Path, default=Path(data_root()) / "content_test")
    parser.add_argument("--size", type=int, default=512, help="long side (px)")
    parser.add_argument("--precision", default="bf16", help="compared against fp32")
    args = parser.parse_args()
    names = args.models or zoo.names()
    photos = [load_image(path, "photo") for path in sorted(args.photos.iterdir()) if path.suffix.lower() in (".jpg", ".png")]
    print(f"{len(photos)} photos of {args.photos} at {args.size} px; {machine_name(torch.device('cpu'))}, torch {torch.__version__}\n")
    print("| model | mean | p99 | max | values > 2 levels apart |\n| --- | --- | --- | --- | --- |")
    for name in names:
        reference, other = load_model(name, "cpu", "fp32"), load_model(name, "cpu", args.precision)
        differences = []
        for photo in photos:
            a = np.asarray(reference.stylize(photo, size=args.size), dtype=np.int16)
            b = np.asarray(other.stylize(photo, size=args.size), dtype=np.int16)
            differences.append(np.abs(a - b).ravel())
        every = np.concatenate(differences)
        print(f"| {name} | {every.mean():.2f} | {np.percentile(every, 99):.0f} | {every.max()} | "
              f"{(every > 2).mean() * 100:.2f}% |", flush=True)


if __name__ == "__main__":
    main()
