#!/usr/bin/env python
"""The baseline of issue 36's probe: the shipped AdaIN `any` with its AdaIN layer replaced by a whitening-colouring
transform at relu4_1, no training (the decoder is `any`'s, trained for AdaIN's outputs), as a wct model file.

    python scripts/wct_probe.py -o wct_probe.safetensors
    python scripts/eval_any.py any wct_probe.safetensors -o eval_any/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylenet import zoo  # noqa: E402
from stylenet.formats import load_network  # noqa: E402
from stylenet.kinds.wct import WCTNet  # noqa: E402
from stylenet.modelfile import model_metadata, write_safetensors  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    adain, metadata = load_network(zoo.path_of("any"))
    network = WCTNet(["relu4_1"], adain.channels, adain.encoder_weights, adain.encoder.conv_state())
    network.decoders["relu4_1"].load_state_dict(adain.decoder.state_dict())
    network.feature_scale.copy_(adain.feature_scale)
    fields = {key: metadata[key] for key in ("style", "loss_network") if key in metadata}
    write_safetensors(network, model_metadata(network, **fields, steps=0, note="any's decoder, WCT at relu4_1, no training"), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
