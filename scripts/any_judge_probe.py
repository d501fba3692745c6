#!/usr/bin/env python
"""Issue 36's learning probe: does the shipped `any` (AdaIN) place higher when its decoder goes on training with
the per-painting models' objective, the judge's kind of Gram terms up to relu5_1, instead of AdaIN's own?

The per-painting recipe (content at relu4_2 against the photo, relative; Gram matrices at relu1_1..relu5_1,
relative, weight 3; TV 10; conf/train.yaml) on (photo, painting) pairs: 128-px crops of content/ and of
paintings/ (the seven held-out paintings are not among them), batch 4, Adam, bf16 autocast, from `any`'s decoder.
Writes a model file for `scripts/eval_any.py` and `scripts/judge_layers.py`.

    python scripts/any_judge_probe.py --minutes 45 -o outputs/any_judge/model.safetensors
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylenet.core.images import find_images, to_tensor  # noqa: E402
from stylenet.core.paths import data_root  # noqa: E402
from stylenet.models import zoo  # noqa: E402
from stylenet.models.formats import load_network  # noqa: E402
from stylenet.models.kinds.adain import adain, channel_stats  # noqa: E402
from stylenet.models.loss_network import PRESETS, LossNetwork  # noqa: E402
from stylenet.models.losses import content_loss, gram_matrix, style_loss, tv_loss  # noqa: E402
from stylenet.models.modelfile import model_metadata, write_safetensors  # noqa: E402


def crops(paths: list[Path], count: int, size: int, rng: random.Random) -> torch.Tensor:
    """count random size-px crops, each image first scaled so its short side is size to 2x size."""
    batch = []
    for path in rng.sample(paths, count):
        with Image.open(path) as image:
            image = image.convert("RGB")
            short = rng.randint(size, 2 * size)
            scale = short / min(image.size)
            image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))), Image.BILINEAR)
            left, top = rng.randint(0, image.width - size), rng.randint(0, image.height - size)
            batch.append(to_tensor(image.crop((left, top, left + size, top + size))))
    return torch.stack(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=45)
    parser.add_argument("--style-weight", type=float, default=3.0)
    parser.add_argument("--tv-weight", type=float, default=10.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    root = Path(data_root())
    photos, paintings = find_images(root / "content"), find_images(root / "paintings")
    network, metadata = load_network(zoo.resolve("any"))
    network.train()
    preset = PRESETS["vgg19_caffe"]  # the judge's loss network and layers
    judge_net = LossNetwork(preset.arch, preset.weights, [*preset.content_layers, *preset.style_layers])
    layer_weights = {layer: 1.0 / len(preset.style_layers) for layer in preset.style_layers}
    optimizer = torch.optim.Adam(network.decoder.parameters(), lr=args.lr)
    rng = random.Random(0)
    ends = time.monotonic() + args.minutes * 60
    bar = tqdm(desc="any, judge's objective", unit="step")
    step = 0
    while time.monotonic() < ends:
        content, style = crops(photos, args.batch, args.size, rng), crops(paintings, args.batch, args.size, rng)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with torch.no_grad():
                target = adain(network.encode(content), *channel_stats(network.encode(style)))
                grams = {layer: gram_matrix(f) for layer, f in judge_net(style, preset.style_layers).items()}
                content_target = judge_net(content, preset.content_layers)
            output = network.decoder(target)
            features = judge_net(output, [*preset.content_layers, *preset.style_layers])
            terms = {
                "content": sum(content_loss(features[layer], content_target[layer], normalize=True)
                               for layer in preset.content_layers),
                "style": args.style_weight * style_loss(features, grams, layer_weights, normalize=True),
                "tv": args.tv_weight * tv_loss(output),
            }
            total = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        step += 1
        bar.update()
        bar.set_postfix({name: f"{value.item():.3f}" for name, value in terms.items()}, refresh=False)
    bar.close()
    network.eval()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fields = {key: metadata[key] for key in ("style", "training") if key in metadata}
    write_safetensors(network, model_metadata(
        network, **fields, steps=int(metadata.get("steps", 0)) + step, loss_network=dict(metadata.get("loss_network", {})),
        loss={"content_weight": 1.0, "style_weight": args.style_weight, "tv_weight": args.tv_weight, "relative": True},
        made_by=f"scripts/any_judge_probe.py: any's decoder, {step} more steps ({args.minutes:g} min) on the "
                "per-painting objective, Gram terms at relu1_1..relu5_1"), args.output)
    print(f"wrote {args.output} after {step} steps")


if __name__ == "__main__":
    main()
