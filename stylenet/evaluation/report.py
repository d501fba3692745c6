"""`stylenet eval`'s report: report.json (every figure), report.md (the tables) and grid.jpg (the pictures)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from PIL import Image

from stylenet.core.files import atomic_write
from stylenet.core.images import save_image

GAP = 4  # px between grid tiles


def write_report(report: dict[str, Any], outputs: dict[str, list[Image.Image]], painting: Image.Image, folder: Path) -> None:
    """outputs: {photo: [photo, each model's result, Gatys@N]}; a grid row per photo, the painting last."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / "report.json") as tmp:
        tmp.write_text(json.dumps(finite(report), indent=1, sort_keys=True, allow_nan=False))
    with atomic_write(folder / "report.md") as tmp:
        tmp.write_text(markdown(report))
    save_image(grid(outputs, painting, report["size"]), folder / "grid.jpg", quality=90)


def finite(value: Any) -> Any:
    """The report with NaN and infinities as null: report.json stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


def fit(image: Image.Image, size: int) -> Image.Image:
    """The image within a size x size white tile, centred."""
    tile = Image.new("RGB", (size, size), "white")
    copy = image.convert("RGB")
    copy.thumbnail((size, size))
    tile.paste(copy, ((size - copy.width) // 2, (size - copy.height) // 2))
    return tile


def grid(outputs: dict[str, list[Image.Image]], painting: Image.Image, size: int) -> Image.Image:
    rows = list(outputs.values())
    columns = len(rows[0]) + 1
    sheet = Image.new("RGB", (columns * (size + GAP) - GAP, len(rows) * (size + GAP) - GAP), "white")
    for row, images in enumerate(rows):
        for column, image in enumerate([*images, painting]):
            sheet.paste(fit(image, size), (column * (size + GAP), row * (size + GAP)))
    return sheet


def markdown(report: dict[str, Any]) -> str:
    """The medians per model, then every photo's figures, with the Gatys curve beside them."""
    last = report["judge_definition"]["curve_iterations"][-1]
    photos = report["photos"] if isinstance(report["photos"], str) else ", ".join(report["photos"])
    lines = [
        f"# stylenet eval (judge {report['judge']})", "",
        f"Painting `{report['painting']}`, photos `{photos}` at {report['size']} px; {report['machine']}, "
        f"torch {report['torch']}; models in {report.get('model_precision', 'fp32')} on {report['model_device']}; "
        f"{report['seconds']:.0f} s. Placement: the L-BFGS iterations of Gatys et al. on "
        "the judge's objective that score as well as the model's output (median over photos; higher is better). "
        "Photo lost: outputs whose content term is above halfway from the Gatys curve's highest to 1 (a blank image). "
        "Checkerboard: the output's "
        "energy at periods 2 and 4 px over the photo's (1 = the photo's own). Border: the edge band's contrast "
        "to the interior, minus the photo's, in levels. Grid columns: photo | each model | "
        f"Gatys@{last} | painting.", "",
        "| model | placement | content | style | total | photo lost | checkerboard | border | colour shift |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model in report["models"]:
        m = model["median"]
        lines.append(f"| `{model['path']}` | {m['placement_label']} | {m['content']:.3g} | {m['style']:.3g} | {m['total']:.3g} | "
                     f"{model['photo_lost']}/{len(model['photos'])} | {m['checkerboard']:.2f} | {m['border']:.1f} | "
                     f"{m['colour_shift']:.1f} |")
    if "reference" in report:  # Gatys@200 itself: the artifact figures of an optimized image, for scale
        m = report["reference"]["median"]
        lines.append(f"| Gatys@{last} (the reference) | {last} | {m['content']:.3g} | {m['style']:.3g} | {m['total']:.3g} | "
                     f"- | {m['checkerboard']:.2f} | {m['border']:.1f} | {m['colour_shift']:.1f} |")
    iterations = next(iter(report["curves"].values()))["iterations"]
    lines += ["", "## Gatys curve (judge terms)", "", "| photo | " + " | ".join(f"@{n}" for n in iterations) + " |"]
    lines.append("| --- |" + " --- |" * len(iterations))
    for photo, curve in report["curves"].items():
        cells = " | ".join(f"{t['total']:.3g} (c {t['content']:.2g}, s {t['style']:.2g})" for t in curve["terms"])
        lines.append(f"| {photo} | {cells} |")
    lines += ["", "## Every photo", "",
              "| model | photo | placement | content | style | photo lost | checkerboard | border | colour shift |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model in report["models"]:
        for row in model["photos"]:
            lines.append(f"| `{model['path']}` | {row['photo']} | {row['placement_label']} | {row['content']:.3g} | "
                         f"{row['style']:.3g} | {'yes' if row['photo_lost'] else 'no'} | {row['checkerboard']:.2f} | "
                         f"{row['border']:.1f} | {row['colour_shift']:.1f} |")
    return "\n".join(lines) + "\n"
