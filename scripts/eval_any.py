#!/usr/bin/env python
"""Judge any-style models on held-out paintings: `stylenet eval --style-image` once per painting, then one table.

    python scripts/eval_any.py MODEL [MODEL ...] -o eval_any/            # the seven paintings of styles/
    python scripts/eval_any.py any --paintings a.jpg b.jpg -o eval_any/  # other paintings
    python scripts/eval_any.py any --per-painting -o eval_any/           # beside each painting's ready-made model

Each painting gets its own `stylenet eval` report and grid in OUT/<painting>/ (the Gatys curves are cached, so a
second run costs only the models' own pictures). OUT/summary.md and summary.json hold, per model, the placement
on each painting, the median over the paintings, photos lost, and the artifact figures beside Gatys's own.
--per-painting adds a row "ready-made" judged on each painting by the ready-made model of the same name
(what the any-style model is to reach).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylenet.models import zoo  # noqa: E402
from stylenet.core.errors import StylenetError  # noqa: E402
from stylenet.evaluation.judge import (  # noqa: E402
    eval_photos, evaluate_paintings, held_out_paintings, painting_summary, paintings_table, write_paintings_summary,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="any-style model files or ready-made names")
    parser.add_argument("--paintings", nargs="*", type=Path, help="default: the seven paintings of styles/")
    parser.add_argument("--photos", nargs="*", type=Path, help="default: the four eval photos of content_test/")
    parser.add_argument("--per-painting", action="store_true", help="also judge each painting's ready-made model")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    paintings = args.paintings or held_out_paintings()
    photos = args.photos or eval_photos()
    try:
        result = evaluate_paintings(args.models, paintings, photos, args.size, args.output)
        ready = {}  # each painting judged with its own ready-made model, one row
        for painting in paintings if args.per_painting else []:
            if painting.stem in zoo.names():
                one = evaluate_paintings([painting.stem], [painting], photos, args.size, args.output / "ready-made")
                ready.update(one["models"][painting.stem]["paintings"])
        if ready:
            result["models"]["ready-made (per painting)"] = painting_summary(ready)
            write_paintings_summary(result, args.output)
    except StylenetError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(paintings_table(result))


if __name__ == "__main__":
    main()
