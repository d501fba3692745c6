#!/usr/bin/env python
"""Flicker against style for video settings: the warping error (mean |out_t - warp(out_{t-1})| in 0-255 levels
where the input's optical flow is reliable) and the eval judge's style and content terms on a few frames, for
frame-by-frame and for each --temporal strength, plus a side-by-side strip of frames.

    python scripts/video_eval.py ../shared/data/video/vtest.avi --model starry_night --frames 60 --size 384 \
        --temporal 0 0.5 0.7 --strip docs/video_temporal.jpg

Prints one Markdown table row per model and setting (the first model's painting is the judge's). Frames are taken
from the start of the clip (after --start seconds).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylenet.running.inference import load_model, painting_for  # noqa: E402
from stylenet.evaluation.judge import Judge  # noqa: E402
from stylenet.running.temporal import FlowBlend, warping_error  # noqa: E402
from stylenet.running.options import StylizeOptions  # noqa: E402
from stylenet.running.video import frames_of, stylize_frames  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", type=Path)
    parser.add_argument("--model", required=True, nargs="+", help="one or more models (files or ready-made names)")
    parser.add_argument("--style-image", type=Path, help="any-style models: the painting (also the judge's)")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, default=384, help="long side of the frames (px)")
    parser.add_argument("--temporal", type=float, nargs="+", default=[0.0, 0.5, 0.7])
    parser.add_argument("--stroke-size", type=lambda text: None if text == "auto" else float(text), default=None,
                        help="as stylenet stylize's (auto, the default: the model's look at its working size; 1: native)")
    parser.add_argument("--judged", type=int, default=6, help="frames scored by the judge (evenly spaced)")
    parser.add_argument("--strip", type=Path, help="write input | each setting for three frames, one above the other")
    parser.add_argument("--animation", type=Path,
                        help="write an animated WebP of the first model: its first setting | its last, every frame")
    args = parser.parse_args()

    raw = list(itertools.islice(frames_of(args.clip), args.frames))
    options = StylizeOptions(size=args.size, stroke_size=args.stroke_size)
    judge = picks = None
    rows: dict[tuple[str, float], list[np.ndarray]] = {}
    for name in args.model:
        model = load_model(name, "cpu")
        if args.style_image:
            model = model.with_paintings([Image.open(args.style_image)])
        started = time.perf_counter()
        stylized, inputs = [], []
        for index in range(0, len(raw), 4):
            out, source = stylize_frames(model, raw[index:index + 4], options)
            stylized.extend(out)
            inputs.extend(source)
        network_seconds = (time.perf_counter() - started) / len(raw)
        if judge is None:
            painting = painting_for(model, None, args.style_image)  # the model's painting, found under the data root
            judge = Judge(Image.open(painting).convert("RGB"), args.size)
            picks = np.linspace(0, len(raw) - 1, args.judged).round().astype(int)
            print(f"{args.clip.name}, {len(raw)} frames at {inputs[0].shape[1]}x{inputs[0].shape[0]}, judged against "
                  f"{painting.name}\n\n| model | setting | warping error | judged style | judged content | blend ms/frame |"
                  "\n| --- | --- | --- | --- | --- | --- |")
        for strength in args.temporal:
            started = time.perf_counter()
            if strength > 0:
                blend = FlowBlend(strength)
                outputs = [blend(frame, out) for frame, out in zip(inputs, stylized)]
            else:
                outputs = list(stylized)
            blend_ms = (time.perf_counter() - started) / len(raw) * 1000
            scores = [judge(Image.fromarray(outputs[i]), Image.fromarray(inputs[i])) for i in picks]
            style = float(np.mean([s["style"] for s in scores]))
            content = float(np.mean([s["content"] for s in scores]))
            setting = "frame by frame" if strength == 0 else f"--temporal {strength}"
            print(f"| {name} | {setting} | {warping_error(inputs, outputs):.2f} | {style:.3f} | {content:.3f} | "
                  f"{blend_ms:.0f} |", flush=True)
            rows[name, strength] = outputs
        print(f"({name}: network {network_seconds * 1000:.0f} ms/frame)", flush=True)
    if args.strip:
        picks = [len(raw) // 3, len(raw) // 3 + 1, len(raw) // 3 + 2]
        lines = [np.concatenate([inputs[i]] + [rows[key][i] for key in rows], axis=1) for i in picks]
        Image.fromarray(np.concatenate(lines, axis=0)).save(args.strip, quality=90)
        print(f"strip: {args.strip} (frames {picks}; columns: input, {', '.join(f'{m} {t}' for m, t in rows)})")


    if args.animation:
        first, last = (args.model[0], args.temporal[0]), (args.model[0], args.temporal[-1])  # the first model's
        pictures = [Image.fromarray(np.concatenate([a, b], axis=1)) for a, b in zip(rows[first], rows[last])]
        pictures[0].save(args.animation, save_all=True, append_images=pictures[1:], duration=100, loop=0, quality=70)
        print(f"animation: {args.animation} (left: {first[0]} {first[1]}, right: {last[0]} {last[1]})")


if __name__ == "__main__":
    main()
