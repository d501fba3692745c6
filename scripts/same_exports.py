"""Check that a refactor left every export unchanged: write each model kind's preset network (seed 0) in every
format with one checkout, again with another, and compare.

    git worktree add /tmp/before <commit>
    .venv/bin/python scripts/same_exports.py write /tmp/exports-before --checkout /tmp/before
    .venv/bin/python scripts/same_exports.py write /tmp/exports-after
    .venv/bin/python scripts/same_exports.py compare /tmp/exports-before /tmp/exports-after

safetensors files must be the same bytes. TorchScript archives differ from run to run (their zip records), so their
code and weights are compared; ONNX files carry the source lines of the exported code in node metadata, so that is
stripped before comparing the rest (graph, weights, model metadata).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

FORMATS = {"safetensors": ".safetensors", "torchscript": ".pt", "onnx": ".onnx"}


def write(folder: Path) -> None:
    from stylenet.models.export import export_model
    from stylenet.models.kinds import KINDS, presets
    from stylenet.models.kinds.adain import ENCODER_LAYERS
    from stylenet.models.loss_network import LossNetwork
    from stylenet.models.modelfile import model_metadata

    folder.mkdir(parents=True, exist_ok=True)
    encoder = LossNetwork("vgg19", "caffe", list(ENCODER_LAYERS)).conv_state()
    for name, (kind, arguments) in sorted(presets().items()):
        torch.manual_seed(0)
        # wct keeps its zero placeholder encoder: behind the real one, four untrained decoders in a row carry
        # TorchScript's 1e-6 differences in the convolutions to whole levels (a trained wct exports within 4e-6)
        extra = {"encoder_state": encoder} if kind in ("adain", "arbitrary") else {}
        network = KINDS[kind].network(**arguments, **extra).eval()
        metadata = model_metadata(network, style={"name": "same_exports"}, steps=0)
        for file_format, extension in FORMATS.items():
            if file_format == "onnx" and KINDS[kind].no_onnx:  # wct: no eigendecomposition in ONNX
                continue
            export_model(network, metadata, folder / f"{name}{extension}", file_format)
            print(f"wrote {folder / name}{extension}")


def onnx_without_source_lines(path: Path) -> bytes:
    import onnx

    model = onnx.load(str(path))
    for node in [*model.graph.node, *(node for function in model.functions for node in function.node)]:
        node.doc_string = ""
        del node.metadata_props[:]
    del model.graph.value_info[:]
    return model.SerializeToString()


def same(path: Path, other: Path) -> bool:
    if path.suffix == ".safetensors":
        return path.read_bytes() == other.read_bytes()
    if path.suffix == ".onnx":
        return onnx_without_source_lines(path) == onnx_without_source_lines(other)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = torch.jit.load(str(path)), torch.jit.load(str(other))
    state, other_state = ours.state_dict(), theirs.state_dict()
    return (ours.code == theirs.code and state.keys() == other_state.keys()
            and all(torch.equal(state[key], other_state[key]) for key in state))


def compare(before: Path, after: Path) -> int:
    names = sorted(path.name for path in before.iterdir())
    if names != sorted(path.name for path in after.iterdir()):
        print(f"different files: {names} vs {sorted(path.name for path in after.iterdir())}")
        return 1
    different = [name for name in names if not same(before / name, after / name)]
    for name in names:
        print(f"{name}: {'DIFFERENT' if name in different else 'same'}")
    return 1 if different else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["write", "compare"])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--checkout", type=Path, help="write: import stylenet from this checkout (another commit's "
                        "worktree), not the installed one")
    args = parser.parse_args()
    if args.checkout is not None:  # the editable install's finder answers before sys.path (PYTHONPATH is not enough)
        sys.meta_path[:] = [finder for finder in sys.meta_path if "editable" not in repr(finder).lower()]
        sys.path.insert(0, str(args.checkout.resolve()))
    if args.command == "write":
        write(args.folders[0])
    else:
        sys.exit(compare(*args.folders[:2]))


if __name__ == "__main__":
    main()
