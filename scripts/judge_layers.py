#!/usr/bin/env python
"""Where a model's distance from the painting lies: the judge's style term split by VGG layer.

    python scripts/judge_layers.py any wct ready                 # the seven paintings of styles/, the four eval photos
    python scripts/judge_layers.py wct --paintings a.jpg --size 256

For each model, the medians over paintings x photos of the judge's content term, its style term and that term's
share at relu1_1 ... relu5_1 (they sum to the style term), and the total. The last row is Gatys's L-BFGS after
10 iterations (the reference curves `stylenet eval` caches; the placement target of issue 36): its content,
style and total only, as the cache keeps no layers. `ready` judges each painting with the ready-made model of its
name. Any-style models read each painting as `stylenet eval --style-image` does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylenet.core.errors import StylenetError  # noqa: E402
from stylenet.core.images import load_image, resize_long_side  # noqa: E402
from stylenet.evaluation.judge import Judge, bind_style, eval_photos, held_out_paintings, reference_curve  # noqa: E402
from stylenet.models import zoo  # noqa: E402
from stylenet.running.inference import load_model  # noqa: E402

READY = "ready"  # each painting's own ready-made model
GATYS_ITERATIONS = 10
GATYS = f"Gatys L-BFGS, {GATYS_ITERATIONS} iterations"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help=f"any-style model files or names, or {READY!r} (each painting's ready-made model)")
    parser.add_argument("--paintings", nargs="*", type=Path, help="default: the seven paintings of styles/")
    parser.add_argument("--photos", nargs="*", type=Path, help="default: the four eval photos of content_test/")
    parser.add_argument("--size", type=int, default=256, help="the photos' and painting's long side, as stylenet eval")
    args = parser.parse_args()
    try:
        rows = measure(args.models, args.paintings or held_out_paintings(), args.photos or eval_photos(), args.size)
    except StylenetError as error:
        sys.exit(f"error: {error}")
    print(table(rows))


def measure(models: list[str], paintings: list[Path], photos: list[Path], size: int) -> dict[str, list[dict[str, float]]]:
    """{model: one row of judge figures per painting x photo}."""
    loaded = {name: load_model(zoo.resolve(name)) for name in models if name != READY}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in [*models, GATYS]}
    for painting in paintings:
        judge = Judge(load_image(painting, "painting"), size)
        for name in models:
            if name == READY and painting.stem not in zoo.names():
                raise StylenetError(f"{painting.name} has no ready-made model: leave {READY!r} out for it")
            model = load_model(painting.stem) if name == READY else bind_style(loaded[name], None, painting)
            for photo_path in photos:
                photo = resize_long_side(load_image(photo_path, "photo"), size)
                output = model.stylize(photo)
                rows[name].append({**judge(output, photo), **judge.style_by_layer(output)})
        for photo_path in photos:  # cached by stylenet eval; computed (about a minute each at 256 px) if not
            curve, _ = reference_curve(photo_path, painting, size, judge)
            rows[GATYS].append(curve.terms[curve.iterations.index(GATYS_ITERATIONS)])
    return rows


def table(rows: dict[str, list[dict[str, float]]]) -> str:
    columns = list(next(iter(rows.values()))[0])
    order = ["content", "style", *(c for c in columns if c.startswith("relu")), "total"]
    lines = ["| model | " + " | ".join(order) + " |", "| --- |" + " --- |" * len(order)]
    for name, figures in rows.items():
        medians = [statistics.median(row[column] for row in figures) if column in figures[0] else None for column in order]
        label = name if name == GATYS else f"`{name}`"
        lines.append(f"| {label} | " + " | ".join("-" if value is None else f"{value:.2f}" for value in medians) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
