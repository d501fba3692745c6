#!/usr/bin/env python
"""Build the ready-made models stylenet ships (stylenet/pretrained/NAME.safetensors) and their table in MODELS.md.

    python scripts/zoo.py build starry_night   # train (experiment=cpu, ~45 min on 2 CPU cores), eval, pack: `make zoo STYLE=...`
    python scripts/zoo.py pack RUN_DIR         # eval a finished run's model.safetensors (if not yet) and pack it
    python scripts/zoo.py pack RUN_DIR --name any   # an any-style run: judged on the seven paintings of styles/
    python scripts/zoo.py table                # rewrite MODELS.md's table from the shipped models' metadata

Packing stores the weights in fp16 (half the bytes; outputs checked against fp32 before writing) with the
model's own metadata plus the recipe that trained it and its `stylenet eval` figures on four content_test
photos at 256 px, so `stylenet models`, `stylenet info NAME` and MODELS.md read them from the file itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylenet.models import zoo  # noqa: E402
from stylenet.core.errors import StylenetError  # noqa: E402
from stylenet.core.files import atomic_write  # noqa: E402
from stylenet.evaluation.judge import EVAL_PHOTOS, eval_photos, evaluate, evaluate_paintings, held_out_paintings  # noqa: E402
from stylenet.models.kinds import get_kind, kind_of  # noqa: E402
from stylenet.models.modelfile import METADATA_KEY, load_safetensors  # noqa: E402

EVAL_SIZE = 256
FP16_TOLERANCE = 2 / 255  # largest output difference (fp16 weights vs fp32) allowed, in [0, 1] pixel units
MODELS_MD = ROOT / "MODELS.md"
BEGIN, END = "<!-- zoo table: scripts/zoo.py table -->", "<!-- end of zoo table -->"


def build(style: str, runs: Path) -> None:
    """Train STYLE with the CPU recipe into runs/STYLE, then pack it."""
    run = runs / style
    command = [sys.executable, str(ROOT / "train.py"), f"style={style}", "experiment=cpu", f"hydra.run.dir={run}"]
    print("$ " + " ".join(command), flush=True)
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        raise StylenetError(f"training {style} failed (its log: {run}/train.log); nothing was packed")
    pack(run, style)


def evaluate_run(run: Path) -> dict[str, Any]:
    """RUN/eval/final/report.json, made by `stylenet eval` on the four content_test photos when missing."""
    report = run / "eval" / "final" / "report.json"
    if not report.is_file():
        evaluate([run / "model.safetensors"], eval_photos(), size=EVAL_SIZE, output=report.parent)
    return json.loads(report.read_text())


def evaluate_any_style(run: Path) -> dict[str, Any]:
    """An any-style run's figures on the seven held-out paintings of styles/ (RUN/eval/paintings/summary.json,
    made when missing): what a shipped any-style model keeps of them."""
    summary = run / "eval" / "paintings" / "summary.json"
    if not summary.is_file():
        evaluate_paintings([run / "model.safetensors"], held_out_paintings(), eval_photos(), EVAL_SIZE, summary.parent,
                           names=["model"])
    result = json.loads(summary.read_text())
    model = next(iter(result["models"].values()))
    per = model["paintings"]
    return {
        "judge": result["judge"], "size": result["size"], "machine": result["machine"], "photos": list(EVAL_PHOTOS),
        "paintings": list(per), "per_painting": [row["placement_label"] for row in per.values()],
        "placement_label": model["placement_label"], "photo_lost": model["photo_lost"],
        "median": {key: round(model[key], 4) for key in ("content", "style", "checkerboard", "border", "colour_shift")},
        "gatys_checkerboard": round(model["gatys_checkerboard"], 4),
    }


def eval_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What a shipped model keeps of its eval report."""
    model = report["models"][0]
    median = {key: round(value, 4) if isinstance(value, float) else value for key, value in model["median"].items()}
    return {
        "judge": report["judge"], "size": report["size"], "machine": report["machine"],
        "photos": [Path(row["photo"]).name for row in model["photos"]],
        "per_photo": [row["placement_label"] for row in model["photos"]],
        "median": median, "placement_label": median["placement_label"],
        "photo_lost": model["photo_lost"],
        "gatys_checkerboard": round(report["reference"]["median"]["checkerboard"], 4),
    }


def recipe(run: Path) -> str:
    """The training command's overrides, as Hydra recorded them (hydra.run.dir left out)."""
    overrides = run / ".hydra" / "overrides.yaml"
    if not overrides.is_file():
        return "unknown"
    lines = [line[2:].strip() for line in overrides.read_text().splitlines() if line.startswith("- ")]
    return "python train.py " + " ".join(line for line in lines if not line.startswith("hydra."))


def pack(run: Path, name: str | None = None) -> Path:
    """RUN/model.safetensors -> stylenet/pretrained/NAME.safetensors (fp16, with recipe and eval), and MODELS.md."""
    network, metadata = load_safetensors(run / "model.safetensors")
    any_style = get_kind(metadata["architecture"]).style_input == "style_image"
    name = name or ("any" if any_style else metadata["style"]["name"])
    judged = evaluate_any_style(run) if any_style else eval_summary(evaluate_run(run))
    half = {key: tensor.detach().half().contiguous() for key, tensor in network.state_dict().items()}
    check_fp16(network, half)
    metadata = {**metadata, "recipe": recipe(run), "weights": "float16", "eval": judged}
    target = zoo.PRETRAINED / f"{name}{zoo.SUFFIX}"
    with atomic_write(target) as tmp:
        save_file(half, tmp, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    print(f"{target.relative_to(ROOT)}: {target.stat().st_size / 1e6:.2f} MB, eval placement {judged['placement_label']}")
    write_table()
    return target


def check_fp16(network: torch.nn.Module, half: dict[str, torch.Tensor]) -> None:
    """Refuse to ship fp16 weights whose outputs drift from the fp32 network's."""
    generator = torch.Generator().manual_seed(0)
    inputs = kind_of(network).example_inputs(network, torch.rand(2, 3, 96, 128, generator=generator), generator)
    with torch.no_grad():
        reference = network(*inputs)
        network.load_state_dict({key: tensor.float() for key, tensor in half.items()})
        drift = (network(*inputs) - reference).abs().max().item()
    if drift > FP16_TOLERANCE:
        raise StylenetError(f"fp16 weights change outputs by {drift:.4f} (> {FP16_TOLERANCE:.4f}); not packed")


def row(name: str) -> str:
    metadata = zoo.metadata_of(name)
    judged, training = metadata["eval"], metadata.get("training") or {}
    median = judged["median"]
    minutes = f"{training['seconds'] / 60:.0f} min" if "seconds" in training else "?"
    # an any-style model: placed on each of the seven held-out paintings (median of the four photos on each)
    per, count = (judged["per_painting"], len(judged["photos"]) * len(judged["paintings"])) if "paintings" in judged \
        else (judged["per_photo"], len(judged["photos"]))
    return (f"| `{name}` | **{judged['placement_label']}** ({', '.join(per)}) | {median['content']:.3g} | "
            f"{median['style']:.3g} | {judged['photo_lost']}/{count} | {median['checkerboard']:.2f} "
            f"({judged['gatys_checkerboard']:.2f}) | {median['border']:.1f} | {median['colour_shift']:.0f} | "
            f"{metadata.get('steps', '?')} steps, {minutes}, {training.get('precision', '?')}, {training.get('machine', '?')} | "
            f"{zoo.path_of(name).stat().st_size / 1e6:.2f} MB |")


def write_table() -> None:
    """Rewrite the block between MODELS.md's markers with one row per shipped model."""
    header = ("| model | placement (per photo) | content | style | photo lost | checkerboard (Gatys) | border | "
              "colour shift | training | file |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    block = "\n".join([BEGIN, header, *(row(name) for name in zoo.names()), END])
    text = MODELS_MD.read_text() if MODELS_MD.is_file() else f"# Ready-made models\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        raise StylenetError(f"{MODELS_MD} lost its table markers ({BEGIN} ... {END}); put them back")
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    with atomic_write(MODELS_MD) as tmp:
        tmp.write_text(before + block + after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="train, eval and pack one painting")
    build_parser.add_argument("style", help="a painting in conf/style/ (starry_night, ...)")
    build_parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "zoo", help="where the training run goes")
    pack_parser = commands.add_parser("pack", help="eval and pack a finished training run")
    pack_parser.add_argument("run", type=Path, help="a run directory holding model.safetensors")
    pack_parser.add_argument("--name", help="the model's name (default: its painting's)")
    commands.add_parser("table", help="rewrite MODELS.md's table")
    args = parser.parse_args()
    try:
        if args.command == "build":
            if not (ROOT / "conf" / "style" / f"{args.style}.yaml").is_file():
                raise StylenetError(f"no painting {args.style!r} in conf/style/; use one of "
                                    f"{', '.join(sorted(p.stem for p in (ROOT / 'conf' / 'style').glob('*.yaml')))}")
            build(args.style, args.runs)
        elif args.command == "pack":
            if not (args.run / "model.safetensors").is_file():
                raise StylenetError(f"{args.run}/model.safetensors not found: pack a finished training run")
            pack(args.run, args.name)
        else:
            write_table()
    except StylenetError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
