#!/usr/bin/env python
"""Judge any-style models on held-out paintings: `stylenet eval --style-image` once per painting, then one table.

    python scripts/eval_any.py MODEL [MODEL ...] -o eval_any/            # the seven paintings of styles/
    python scripts/eval_any.py any --paintings a.jpg b.jpg -o eval_any/  # other paintings

Each painting gets its own `stylenet eval` report and grid in OUT/<painting>/ (the Gatys curves are cached, so
a second run costs only the models' own pictures). OUT/summary.md and summary.json hold, per model, the
placement on each painting, the median over the paintings, photos lost, and the artifact figures beside
Gatys's own. A per-painting model can stand beside them: `--per-painting` judges each painting's ready-made
model of the same name (what the any-style model must reach).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylenet import zoo  # noqa: E402
from stylenet.config import data_root  # noqa: E402
from stylenet.files import atomic_write  # noqa: E402
from stylenet.judge import evaluate  # noqa: E402

EVAL_PHOTOS = ("baboon.jpg", "butterfly.jpg", "fruits.jpg", "messi5.jpg")  # as conf/train.yaml's eval.photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="any-style model files or ready-made names")
    parser.add_argument("--paintings", nargs="*", type=Path, help="default: the seven paintings of styles/")
    parser.add_argument("--photos", nargs="*", type=Path, help="default: the four eval photos of content_test/")
    parser.add_argument("--per-painting", action="store_true", help="also judge each painting's ready-made model")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    data = Path(data_root())
    paintings = args.paintings or sorted((data / "styles").glob("*.jpg"))
    photos = args.photos or [data / "content_test" / name for name in EVAL_PHOTOS]
    rows: dict[str, dict[str, Any]] = {}
    for painting in paintings:
        models = list(args.models)
        ready_made = args.per_painting and painting.stem in zoo.names()
        if ready_made:
            models.append(painting.stem)
        report = evaluate(models, photos, style_image=painting, size=args.size, output=args.output / painting.stem)
        for name, model in zip(models, report["models"]):
            label = "ready-made (per painting)" if ready_made and name == painting.stem else name
            rows.setdefault(label, {})[painting.stem] = {
                "placement": model["median"]["placement"], "label": model["median"]["placement_label"],
                "photo_lost": model["photo_lost"], "checkerboard": model["median"]["checkerboard"],
                "border": model["median"]["border"], "gatys_checkerboard": report["reference"]["median"]["checkerboard"],
                "gatys_border": report["reference"]["median"]["border"],
            }
        print(f"{painting.stem}: " + ", ".join(f"{name} {row[painting.stem]['label']}" for name, row in rows.items()), flush=True)
    summary = {name: {"paintings": per, "median_placement": statistics.median(r["placement"] for r in per.values()),
                      "photos_lost": sum(r["photo_lost"] for r in per.values())} for name, per in rows.items()}
    names = [painting.stem for painting in paintings]
    lines = ["| model | median placement | " + " | ".join(names) + " | photos lost | checkerboard (Gatys) | border (Gatys) |",
             "| --- " * (len(names) + 5) + "|"]
    for name, entry in summary.items():
        per = entry["paintings"]
        board = statistics.median(r["checkerboard"] for r in per.values())
        board_gatys = statistics.median(r["gatys_checkerboard"] for r in per.values())
        border = statistics.median(r["border"] for r in per.values())
        border_gatys = statistics.median(r["gatys_border"] for r in per.values())
        lines.append(f"| `{name}` | **{entry['median_placement']:.0f}** | " + " | ".join(per[n]["label"] if n in per else "-" for n in names)
                     + f" | {entry['photos_lost']}/{len(per) * len(photos)} | {board:.2f} ({board_gatys:.2f}) | {border:.1f} ({border_gatys:.1f}) |")
    args.output.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.output / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    with atomic_write(args.output / "summary.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
