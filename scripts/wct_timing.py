#!/usr/bin/env python
"""Where a WCT model's time goes: one photo with its painting, then each further photo of a folder (the painting's
side already bound), at each size, and the share spent in the statistics (covariances and their
eigendecompositions) against the encoders and decoders. Medians of --repeats runs after one warm-up.

    python scripts/wct_timing.py wct --sizes 512 1024 --style-image ../shared/data/styles/the_scream.jpg
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import stylenet.models.kinds.wct as wct  # noqa: E402
from stylenet.core.device import machine_name  # noqa: E402
from stylenet.running.inference import load_model  # noqa: E402

SPENT = {"statistics": 0.0}


def timed(function: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT["statistics"] += time.perf_counter() - started
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--style-image", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    wct.moments, wct.covariance_power = timed(wct.moments), timed(wct.covariance_power)  # what wct() and the painting side call
    model = load_model(args.model, "cpu", args.precision)
    painting = Image.open(args.style_image)
    machine = machine_name(torch.device("cpu"))
    print(f"{args.model}, {model.precision}, {machine}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| photo | with its painting (s) | each further photo (s) | statistics' share |\n| --- | --- | --- | --- |")
    for size in args.sizes:
        photo = torch.rand(1, 3, size, size)
        firsts, furthers, shares = [], [], []
        for repeat in range(args.repeats + 1):
            model.painting_cache.clear()
            started = time.perf_counter()
            bound = model.with_paintings([painting])
            bound.stylize_tensor(photo)
            first = time.perf_counter() - started
            SPENT["statistics"] = 0.0
            started = time.perf_counter()
            bound.stylize_tensor(photo)
            further = time.perf_counter() - started
            if repeat:  # the first is a warm-up
                firsts.append(first), furthers.append(further), shares.append(SPENT["statistics"] / further)
        print(f"| {size}x{size} | {statistics.median(firsts):.2f} | {statistics.median(furthers):.2f} | "
              f"{statistics.median(shares):.0%} |", flush=True)


if __name__ == "__main__":
    main()
