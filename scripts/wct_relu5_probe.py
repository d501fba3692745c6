#!/usr/bin/env python
"""Issue 36's probe of a relu5_1 level for `wct`, with the best decoder it could have: WCT at relu5_1, turned into
relu4_1 features by optimization (Adam on relu4_1 features until VGG's conv4_2..relu5_1 gives the transformed
relu5_1 features), decoded by a wct model's relu4_1 decoder, then finished by the shipped `wct`'s fine levels.
Prints the judge's terms with the style term by layer, against the same chain without the relu5_1 transform.

    python scripts/wct_relu5_probe.py outputs/wct/r41/model.safetensors --strength 0.6 1.0 --photos baboon butterfly
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylenet.core.images import load_image, resize_long_side, to_pil, to_tensor  # noqa: E402
from stylenet.evaluation.judge import Judge, eval_photos, held_out_paintings  # noqa: E402
from stylenet.models import zoo  # noqa: E402
from stylenet.models.formats import load_network  # noqa: E402
from stylenet.models.kinds.adain import crop_decoded, pad_for_encoder  # noqa: E402
from stylenet.models.kinds.wct import colouring_matrix, wct  # noqa: E402
from stylenet.models.loss_network import LossNetwork  # noqa: E402
from stylenet.running.inference import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("decoder", help="a wct model file with a relu4_1 decoder")
    parser.add_argument("--strength", nargs="+", type=float, default=[0.6, 1.0], help="WCT's share at relu5_1")
    parser.add_argument("--photos", nargs="+", default=["baboon", "butterfly"], help="eval photos by name")
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    vgg = LossNetwork("vgg19", "caffe", ["relu5_1"])
    deep_names = vgg.names[vgg.names.index("relu4_1") + 1:]

    def deep(features: torch.Tensor) -> torch.Tensor:  # relu4_1 -> relu5_1
        for name in deep_names:
            if name.startswith("conv"):
                features = F.conv2d(features, getattr(vgg, f"{name}_weight"), getattr(vgg, f"{name}_bias"), padding=1)
            else:
                features = F.relu(features) if name.startswith("relu") else F.max_pool2d(features, 2, 2)
        return features

    source, _ = load_network(Path(args.decoder))
    decoder, scale = source.decoders["relu4_1"], source.feature_scale[3]
    fine = load_model(zoo.resolve("wct"))
    photos = [path for path in eval_photos() if path.stem in args.photos]
    rows: dict[str, list[dict[str, float]]] = {}
    for painting_path in held_out_paintings():
        painting = load_image(painting_path, "painting")
        judge, finish = Judge(painting, 256), fine.with_paintings([painting])
        with torch.no_grad():
            painted = vgg(to_tensor(resize_long_side(painting, 512))[None], ["relu5_1"])["relu5_1"][0].flatten(1)
        style_mean, colouring = colouring_matrix(painted)
        for photo_path in photos:
            photo = resize_long_side(load_image(photo_path, "photo"), 256)
            image = to_tensor(photo)[None]
            height, width = image.shape[-2:]
            with torch.no_grad():
                relu4 = vgg(pad_for_encoder(image), ["relu4_1"])["relu4_1"].contiguous()
                relu5 = deep(relu4)
            for strength in [0.0, *args.strength]:
                found = relu4.clone()
                if strength:
                    target = wct(relu5, style_mean, colouring, strength)
                    found.requires_grad_(True)
                    optimizer = torch.optim.Adam([found], lr=0.05 * relu4.abs().mean().item())
                    for _ in range(args.steps):
                        optimizer.zero_grad()
                        error = (deep(F.relu(found).contiguous()) - target).pow(2).mean() / target.pow(2).mean()
                        error.backward()
                        optimizer.step()
                with torch.no_grad():
                    decoded = to_pil(crop_decoded(decoder(F.relu(found) / scale), height, width)[0])
                    output = finish.stylize(decoded)
                label = f"relu5_1 at {strength:g}, then the fine levels" if strength else "no relu5_1 transform, the fine levels"
                rows.setdefault(label, []).append({**judge(output, photo), **judge.style_by_layer(output)})
    columns = list(next(iter(rows.values()))[0])
    print("| chain | " + " | ".join(columns) + " |\n| --- |" + " --- |" * len(columns))
    for label, figures in rows.items():
        print(f"| {label} | " + " | ".join(f"{statistics.median(row[c] for row in figures):.2f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
