#!/usr/bin/env python
"""A wct model file made from another one's decoders, for measuring levels and strengths without training, and
issue 36's probe: the shipped AdaIN `any` with its AdaIN layer replaced by WCT at relu4_1 (its decoder, no training).

    python scripts/wct_variant.py any -o probe.safetensors                               # the probe
    python scripts/wct_variant.py RUN/model.safetensors --levels relu4_1,relu1_1 --strength 0.8 -o v.safetensors
    python scripts/eval_any.py any probe.safetensors v.safetensors -o eval_any/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylenet.models import zoo  # noqa: E402
from stylenet.core.errors import StylenetError  # noqa: E402
from stylenet.models.formats import load_network  # noqa: E402
from stylenet.models.kinds.adain import AdaINNet  # noqa: E402
from stylenet.models.kinds.wct import WCTNet  # noqa: E402
from stylenet.models.modelfile import model_metadata, write_safetensors  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a wct model file, or an AdaIN one (`any`: its decoder for relu4_1)")
    parser.add_argument("--levels", help="comma-separated, coarse to fine (default: the source's)")
    parser.add_argument("--strength", help="the model's own feature blend, one number or one per level, comma-separated "
                        "(default: the source's, or 1)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    try:
        variant(args.source, args.levels, args.strength, args.output)
    except (StylenetError, ValueError) as error:  # a model file or name that is not there, a level or strength out of range
        sys.exit(f"error: {error}")


def variant(name: str, levels_option: str | None, strength_option: str | None, output: Path) -> None:
    """Write OUTPUT: a wct model with NAME's encoder and decoders, at these levels and strengths."""
    source, metadata = load_network(zoo.resolve(name))
    if isinstance(source, AdaINNet):
        decoders, strengths = {"relu4_1": source.decoder}, {"relu4_1": 1.0}
    elif isinstance(source, WCTNet):
        decoders, strengths = dict(source.decoders.items()), dict(zip(source.levels, source.strengths))
    else:
        raise StylenetError(f"{name} is neither a wct nor an adain model")
    levels = levels_option.split(",") if levels_option else list(decoders)
    if any(level not in decoders for level in levels):
        raise StylenetError(f"{name} has decoders for {', '.join(decoders)} only")
    strength = [float(part) for part in strength_option.split(",")] if strength_option else [strengths[level] for level in levels]
    network = WCTNet(levels, source.channels, strength[0] if len(strength) == 1 else strength, encoder_weights=source.encoder_weights,
                     encoder_state=source.encoder.conv_state())
    for level in levels:
        network.decoders[level].load_state_dict(decoders[level].state_dict())
    network.feature_scale.copy_(source.feature_scale)
    fields = {key: metadata[key] for key in ("style", "loss_network", "loss", "training", "started_from") if key in metadata}
    write_safetensors(network, model_metadata(network, **fields, steps=metadata.get("steps", 0),
                                              made_by=f"scripts/wct_variant.py from {Path(name).name}"), output)
    print(f"wrote {output}: levels {', '.join(levels)}, strength {', '.join(f'{v:g}' for v in network.strengths)}")


if __name__ == "__main__":
    main()
