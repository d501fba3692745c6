"""Does a large result keep the model's look? For each photo, the working-size result and, at each size, the result
with each stroke setting, scaled back to the working size and judged as `stylenet eval` judges (placement on the
Gatys L-BFGS curve, style term), with its sharpness (edge energy over the working-size result upscaled), the share of
its style at wavelengths under 8 px and its seconds. Medians over the photos, as a Markdown table (docs/quality.md).

    .venv/bin/python scripts/stroke_look.py --model starry_night --sizes 1024,2048,3840 --strokes 1,auto
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

from stylenet.core.device import machine_name
from stylenet.core.images import load_image, resize_long_side
from stylenet.evaluation.judge import Judge, eval_photos, reference_curve
from stylenet.evaluation.look import sharpness, fine_share
from stylenet.models.registry import StyleInput
from stylenet.running.inference import load_model, painting_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="starry_night")
    parser.add_argument("--photos", type=Path, nargs="*", help="default: the four eval photos")
    parser.add_argument("--sizes", default="1024,2048,3840", help="long sides of the results, px")
    parser.add_argument("--strokes", default="1,auto", help="stroke sizes: numbers, or auto (the default)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--style", help="a multi-style model's style (default: its first)")
    parser.add_argument("--style-image", type=Path, help="an any-style model's painting (and the one it is judged against)")
    parser.add_argument("--figure", type=Path, help="also write the first photo's largest results side by side: whole "
                        "(scaled to 512 px) above, a 512-px crop at full size below; each stroke setting a column")
    args = parser.parse_args()
    model = load_model(args.model, "cpu", args.precision)
    painting = painting_for(model, args.style, args.style_image)
    takes_painting = model.model_kind.style_input is StyleInput.IMAGE
    model = model.styled(args.style, [load_image(painting, "painting")] if takes_painting else None)
    working = model.working_size
    judge = Judge(load_image(painting, "painting"), working)
    strokes = [None if text == "auto" else float(text) for text in args.strokes.split(",")]
    rows: dict[tuple[int, float | None], list[dict[str, float]]] = {}
    base: list[dict[str, float]] = []
    shown: list[Image.Image] = []
    for path in args.photos or eval_photos():
        photo = load_image(path, "photo")
        small = resize_long_side(photo, working)
        curve, _ = reference_curve(path, painting, working, judge)
        reference = model.stylize(small, stroke_size=1)
        terms = judge(reference, small)
        base.append({"placement": curve.placement(terms["total"])[0], "style": terms["style"]})
        for size in (int(text) for text in args.sizes.split(",")):
            large = photo.resize(resize_long_side(photo, size).size, Image.Resampling.LANCZOS)  # enlarged as needed
            for stroke in strokes:
                started = time.perf_counter()
                result = model.stylize(large, stroke_size=stroke)
                seconds = time.perf_counter() - started
                back = result.resize(small.size, Image.Resampling.LANCZOS)
                terms = judge(back, small)
                if args.figure is not None and not base[1:] and size == max(int(s) for s in args.sizes.split(",")):
                    shown.append(result)
                rows.setdefault((size, stroke), []).append({
                    "placement": curve.placement(terms["total"])[0], "style": terms["style"],
                    "sharpness": sharpness(result, reference), "fine": fine_share(result, large), "seconds": seconds,
                })
                print(f"{path.name} {size} px, stroke {stroke or 'auto'}: placement {rows[size, stroke][-1]['placement']:.1f}, "
                      f"{seconds:.1f} s", flush=True)
    if shown:
        write_figure(shown, args.figure)
    median = lambda values, key: statistics.median(v[key] for v in values)  # noqa: E731
    print(f"\n{args.model} ({painting.stem}), working size {working} px, {len(base)} photos, {model.precision}, "
          f"{machine_name(torch.device('cpu'))}, torch {torch.__version__}\n")
    print("| result | stroke size | placement at working size (iterations) | style term | sharpness vs upscaled | "
          "fine share of the style (under 8 px) | seconds |\n| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {working} px (the working size) | 1 | {median(base, 'placement'):.1f} | {median(base, 'style'):.2f} | 1 | - | - |")
    for (size, stroke), values in rows.items():
        print(f"| {size} px | {stroke or 'auto (default)'} | {median(values, 'placement'):.1f} | {median(values, 'style'):.2f} | "
              f"{median(values, 'sharpness'):.1f} | {median(values, 'fine'):.2f} | {median(values, 'seconds'):.1f} |")


def write_figure(results: list[Image.Image], path: Path, side: int = 512) -> None:
    """Each result a column: whole (long side `side`) on top, a side x side crop at full size (from the centre) below."""
    wholes = [result.resize(resize_long_side(result, side).size, Image.Resampling.LANCZOS) for result in results]
    height = max(whole.height for whole in wholes)
    figure = Image.new("RGB", (side * len(results) + 8 * (len(results) - 1), height + 8 + side), "white")
    for column, (result, whole) in enumerate(zip(results, wholes)):
        left = column * (side + 8)
        figure.paste(whole, (left, 0))
        x, y = (result.width - side) // 2, (result.height - side) // 2
        figure.paste(result.crop((x, y, x + side, y + side)), (left, height + 8))
    figure.save(path, quality=88)


if __name__ == "__main__":
    main()
