#!/usr/bin/env python
"""Issue 36's learning probe: does the shipped `any` (AdaIN) place higher when its decoder goes on training with
the per-painting models' objective, the judge's kind of Gram terms up to relu5_1, instead of AdaIN's own?

The per-painting recipe (content at relu4_2 against the photo, relative; Gram matrices at relu1_1..relu5_1,
relative, weight 3; TV 10; conf/train.yaml: stylenet's PerceptualLoss with each batch's paintings as targets) on
the (photo, painting) pairs model=adain trains on (128-px crops of content/ and of paintings/, where the seven
held-out paintings are not), batch 4, Adam, bf16 autocast, from `any`'s decoder.
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
from torch.utils.data import DataLoader
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylenet.core.images import find_images  # noqa: E402
from stylenet.core.paths import data_root  # noqa: E402
from stylenet.models import zoo  # noqa: E402
from stylenet.models.formats import load_network  # noqa: E402
from stylenet.models.kinds.adain import adain, channel_stats  # noqa: E402
from stylenet.models.loss_network import PRESETS, LossNetwork  # noqa: E402
from stylenet.models.losses import PerceptualLoss  # noqa: E402
from stylenet.models.modelfile import model_metadata, write_safetensors  # noqa: E402
from stylenet.training.data import ImageFolderDataset, PairedDataset  # noqa: E402


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
    # the pairs `any` trained on (model=adain's data): photo crops, each with a random painting's scaled, mirrored crop
    pairs = PairedDataset(ImageFolderDataset(find_images(root / "content"), args.size),
                          ImageFolderDataset(find_images(root / "paintings"), args.size, augment=True))
    random.seed(0)
    batches = DataLoader(pairs, batch_size=args.batch, shuffle=True, drop_last=True)
    network, metadata = load_network(zoo.resolve("any"))
    network.train()
    preset = PRESETS["vgg19_caffe"]  # the judge's loss network and layers; each batch's paintings are its targets
    criterion = PerceptualLoss(
        LossNetwork(preset.arch, preset.weights, [*preset.content_layers, *preset.style_layers]), [],
        list(preset.content_layers), dict.fromkeys(preset.style_layers, 1.0),
        {"content_weight": 1.0, "style_weight": args.style_weight, "tv_weight": args.tv_weight}, normalize=True,
    )
    optimizer = torch.optim.Adam(network.decoder.parameters(), lr=args.lr)
    ends = time.monotonic() + args.minutes * 60
    bar = tqdm(desc="any, judge's objective", unit="step")
    step = 0
    while time.monotonic() < ends:
        for content, style in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                with torch.no_grad():
                    target = adain(network.encode(content), *channel_stats(network.encode(style)))
                terms = criterion(network.decoder(target), content, grams=criterion.painting_grams(style))
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            step += 1
            bar.update()
            bar.set_postfix({name: f"{value.item():.3f}" for name, value in terms.items() if name != "total"}, refresh=False)
            if time.monotonic() >= ends:
                break
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
