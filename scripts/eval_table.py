#!/usr/bin/env python
"""One Markdown table from several `stylenet eval` reports: a row per model, with its painting, placement,
terms, artifacts (beside Gatys@200's own) and how it was trained (minutes, precision, machine).

    python scripts/eval_table.py runs/*/eval            # folders holding report.json (or the files themselves)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HEADER = ("| painting | model | placement (per photo) | content | style | photo lost | checkerboard (Gatys) | border | "
          "colour shift | training |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def training(metadata: dict[str, Any]) -> str:
    """'2.6 min, 300 steps, bf16-mixed, AMD EPYC, 2 cores' from a model's metadata (what training recorded)."""
    facts = metadata.get("training") or {}
    parts = [f"{facts['seconds'] / 60:.1f} min" if "seconds" in facts else None, f"{metadata.get('steps', '?')} steps",
             facts.get("precision"), facts.get("machine")]
    return ", ".join(part for part in parts if part)


def rows(report: dict[str, Any]) -> list[str]:
    painting = Path(report["painting"]).stem
    reference = report.get("reference", {}).get("median", {})
    lines = []
    for model in report["models"]:
        m = model["median"]
        per_photo = ", ".join(row["placement_label"] for row in model["photos"])
        gatys = f" ({reference['checkerboard']:.2f})" if "checkerboard" in reference else ""
        lines.append(
            f"| {painting} | `{'/'.join(Path(model['path']).parts[-3:-1])}` | **{m['placement_label']}** ({per_photo}) | "
            f"{m['content']:.3g} | {m['style']:.3g} | "
            f"{model['photo_lost']}/{len(model['photos'])} | {m['checkerboard']:.2f}{gatys} | {m['border']:.1f} | "
            f"{m['colour_shift']:.0f} | {training(model['metadata'])} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", type=Path, nargs="+", help="eval output folders or their report.json")
    args = parser.parse_args()
    lines = [HEADER]
    for path in args.reports:
        path = path / "report.json" if path.is_dir() else path
        if not path.is_file():
            sys.exit(f"error: {path}: no report.json there (run `stylenet eval ... -o FOLDER` first)")
        lines += rows(json.loads(path.read_text()))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
