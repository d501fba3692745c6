"""Quality you can measure: a fixed judge, and each model placed on the judge's own Gatys curve.

The judge (version JUDGE_VERSION) is independent of how a model was trained: the original Caffe VGG-19,
content at relu4_2, Gram matrices at relu1_1..relu5_1, each term relative to its target (as `stylenet
optimize`), style weight 10 and total variation 1: `stylenet optimize`'s defaults, whose optimum paints the
photo. The reference for each photo is Gatys et al.'s L-BFGS on that same objective, recorded after
CURVE_ITERATIONS loss evaluations and cached on disk. A model scores "as well as N iterations" where its output's
objective meets that curve; a content term well above anything on the curve (Curve.lost_threshold) flags
"photo lost" (an output can buy a low style term by erasing the photo).

    report = stylenet.evaluate(["model.safetensors"], "photos/", output="eval")   # a dict, as report.json holds
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from stylenet.core.paths import data_root
from stylenet.core.errors import StylenetError
from stylenet.models.registry import StyleInput
from stylenet.core.files import atomic_write, cache_root
from stylenet.core.images import find_images, load_image, resize_long_side, save_image, to_tensor
from stylenet.running.inference import load_model, painting_for
from stylenet.models.losses import style_loss
from stylenet.running.optimize import OptimizeSettings, loss_builder, optimize
from stylenet.evaluation.report import write_report
from stylenet.core.device import machine_name

log = logging.getLogger(__name__)

JUDGE_VERSION = "v1"
# stylenet optimize's objective (always relative terms) with these settings
JUDGE = {"loss_network": "vgg19_caffe", "content_weight": 1.0, "style_weight": 10.0, "tv_weight": 1.0}
CURVE_ITERATIONS = (10, 25, 50, 100, 200)  # L-BFGS loss evaluations after which the reference is recorded
EVAL_PHOTOS = ("baboon.jpg", "butterfly.jpg", "fruits.jpg", "messi5.jpg")  # content_test photos: conf/train.yaml's eval.photos


def eval_photos() -> list[Path]:
    """The four content_test photos every shipped model and eval during training is judged on."""
    return [Path(data_root()) / "content_test" / name for name in EVAL_PHOTOS]


def held_out_paintings() -> list[Path]:
    """The seven paintings of styles/: never in style_dataset's paintings, so any-style models are judged on them."""
    return sorted((Path(data_root()) / "styles").glob("*.jpg"))


def judge_settings(size: int, steps: int = CURVE_ITERATIONS[-1]) -> OptimizeSettings:
    """`stylenet optimize` at one scale with the judge's objective: what the reference curve runs."""
    weights = {key: value for key, value in JUDGE.items() if key.endswith("_weight")}
    return OptimizeSettings(size=size, scales=[size], steps=steps, loss_network=JUDGE["loss_network"], weights=weights)


class Judge:
    """The judge's objective for one painting: judge(image) -> {content, style, tv, total} (weighted terms)."""

    def __init__(self, painting: Image.Image, size: int) -> None:
        style = to_tensor(resize_long_side(painting, size))  # as `stylenet optimize` sizes the painting
        self.criterion = loss_builder(judge_settings(size))([style], [1.0])  # the very loss the curve minimizes

    @torch.no_grad()
    def __call__(self, image: Image.Image, photo: Image.Image) -> dict[str, float]:
        output, content = to_tensor(image).unsqueeze(0), to_tensor(photo).unsqueeze(0)
        return {name: value.item() for name, value in self.criterion(output, content).items()}

    @torch.no_grad()
    def style_by_layer(self, image: Image.Image) -> dict[str, float]:
        """The weighted style term split by VGG layer ({relu1_1: ..., relu5_1: ...}, summing to judge(image)'s
        style): where a picture's distance from the painting lies, coarse or fine."""
        criterion = self.criterion
        features = criterion.loss_network(to_tensor(image).unsqueeze(0), criterion.style_layers)
        targets = criterion.style_grams()
        return {layer: criterion.weights["style_weight"] * style_loss(features, targets, {layer: weight}, criterion.normalize).item()
                for layer, weight in criterion.style_layer_weights.items()}


@dataclass
class Curve:
    """The judge's terms of Gatys L-BFGS on one photo after 0 (the photo itself) and CURVE_ITERATIONS evaluations."""

    iterations: list[int]
    terms: list[dict[str, float]]
    image: Image.Image  # the result after the last iteration

    def placement(self, total: float) -> tuple[float, str]:
        """The iterations at which the curve's objective equals `total` (log-interpolated), and a label."""
        totals = list(itertools.accumulate((t["total"] for t in self.terms), min))  # L-BFGS may rise again
        if not math.isfinite(total):
            return float("nan"), "n/a"
        if total >= totals[0]:
            return 0.0, "no better than the photo"
        if total <= totals[-1]:
            return float(self.iterations[-1]), f"beyond {self.iterations[-1]}"
        for index in range(1, len(totals)):
            high, low = totals[index - 1], totals[index]
            if low <= total <= high:
                share = (math.log(high) - math.log(total)) / max(math.log(high) - math.log(low), 1e-12)
                at = self.iterations[index - 1] + share * (self.iterations[index] - self.iterations[index - 1])
                return at, f"{at:.0f}"
        return float(self.iterations[-1]), f"beyond {self.iterations[-1]}"

    def lost_threshold(self) -> float:
        """Content terms above this mean the photo is lost: halfway from the highest on the curve to 1, what a
        blank grey image scores (the terms are relative errors). Measured at 256 px against Starry Night: the
        curves' highest 0.40-0.55; a Gaussian blur of radius 3 0.54-0.63, radius 8 0.76-0.87; the painting
        itself 1.3-1.8; a strong tint of the photo 0.10-0.18."""
        highest = max(t["content"] for t in self.terms)
        return max(highest, (highest + 1.0) / 2)


def placement_phrase(label: str) -> str:
    """'as good as 12 L-BFGS iterations' (or 'beyond 200'), else the label itself ('no better than the photo')."""
    return f"as good as {label} L-BFGS iterations" if label[:1].isdigit() or label.startswith("beyond") else label


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reference_curve(
    photo_path: Path, painting_path: Path, size: int, judge: Judge, cache: Path | None = None,
    iterations: tuple[int, ...] = CURVE_ITERATIONS,
) -> tuple[Curve, bool]:
    """Gatys L-BFGS on the judge's objective, cached by photo, painting, size, judge version; (curve, from cache)."""
    key = hashlib.sha256(
        f"{file_hash(photo_path)}:{file_hash(painting_path)}:{size}:{JUDGE_VERSION}:{json.dumps(JUDGE, sort_keys=True)}:"
        f"{iterations}".encode()
    ).hexdigest()[:24]
    folder = (cache or cache_root()) / "eval" / JUDGE_VERSION
    record, picture = folder / f"{key}.json", folder / f"{key}.png"
    if record.is_file() and picture.is_file():
        try:
            saved = json.loads(record.read_text())
            return Curve(saved["iterations"], saved["terms"], load_image(picture, "cached Gatys result")), True
        except (OSError, ValueError, KeyError, StylenetError) as error:
            log.warning("cached reference %s is unreadable (%s); computing it again", record, error)
    photo = resize_long_side(load_image(photo_path, "photo"), size)
    painting = load_image(painting_path, "painting")
    snapshots: dict[int, Image.Image] = {}
    save_every = math.gcd(*iterations)
    optimize(photo, [painting], settings=judge_settings(size, iterations[-1]), save_every=save_every,
             on_image=lambda image, step: snapshots.__setitem__(step, image) if step in iterations else None)
    found = [step for step in iterations if step in snapshots]  # L-BFGS may stop early on a flat objective
    curve = Curve([0, *found], [judge(photo, photo), *(judge(snapshots[step], photo) for step in found)],
                  snapshots[found[-1]] if found else photo)
    save_image(curve.image, picture)  # atomic, as the record: a killed eval leaves no half-written cache entry
    with atomic_write(record) as tmp:
        tmp.write_text(json.dumps({"iterations": curve.iterations, "terms": curve.terms, "judge": JUDGE_VERSION,
                                   "photo": str(photo_path), "painting": str(painting_path), "size": size}, indent=1))
    return curve, False


def luminance(image: Image.Image) -> torch.Tensor:
    return to_tensor(image.convert("L"))[0] * 255.0  # (H, W) in 0-255 levels


def checkerboard_energy(image: Image.Image) -> float:
    """Share of the spectrum's energy at periods 2 and 4 px (the frequencies of upsampling checkerboards)."""
    levels = luminance(image)
    power = torch.fft.fft2(levels - levels.mean()).abs().pow(2)
    height, width = levels.shape
    rows = {round(height * f) % height for f in (0.25, 0.5, 0.75)}
    columns = {round(width * f) % width for f in (0.25, 0.5, 0.75)}
    mask = torch.zeros_like(power, dtype=torch.bool)
    for offset in (-1, 0, 1):
        mask[[(r + offset) % height for r in rows], :] = True
        mask[:, [(c + offset) % width for c in columns]] = True
    return float(power[mask].sum() / power.sum().clamp_min(1e-12))


def border_contrast(image: Image.Image, band: int) -> float:
    """How far a band along the edges differs from the interior: |mean difference| + |std difference|, in levels."""
    levels = luminance(image)
    edge = torch.ones_like(levels, dtype=torch.bool)
    edge[band:-band, band:-band] = False
    outer, inner = levels[edge], levels[~edge]
    return float((outer.mean() - inner.mean()).abs() + (outer.std() - inner.std()).abs())


def artifacts(output: Image.Image, photo: Image.Image) -> dict[str, float]:
    """checkerboard: the output's energy at periods 2 and 4 over the photo's (1 = as much as the photo);
    border: the output's edge band contrast minus the photo's, in levels; colour_shift: mean RGB moved, in levels."""
    band = max(4, min(output.size) // 32)
    mean_rgb = lambda image: to_tensor(image).mean((1, 2)) * 255.0  # noqa: E731
    return {
        "checkerboard": checkerboard_energy(output) / max(checkerboard_energy(photo), 1e-4),  # floor: flat photos
        "border": border_contrast(output, band) - border_contrast(photo, band),
        "colour_shift": float((mean_rgb(output) - mean_rgb(photo)).norm()),
    }


def bind_style(model: Any, style: str | None, painting: Path) -> Any:  # StyleModel
    """The model in the style it is evaluated in: a multi-style model's --style, an any-style model's painting."""
    takes_painting = model.model_kind.style_input is StyleInput.IMAGE
    return model.styled(style, [load_image(painting, "--style-image")] if takes_painting else None)


def score(model: Any, photo: Image.Image, judge: Judge, curve: Curve) -> tuple[dict[str, Any], Image.Image]:
    """One model on one photo: its judge terms, placement on the curve, photo-lost flag and artifact figures."""
    output = model.stylize(photo)
    terms = judge(output, photo)
    iterations, label = curve.placement(terms["total"])
    lost = terms["content"] > curve.lost_threshold()
    return {**terms, "placement": iterations, "placement_label": label, "photo_lost": lost, **artifacts(output, photo)}, output


def collect_photos(photos: str | Path | Sequence[str | Path], leave_out: Path | None) -> list[tuple[str, Path]]:
    """(name, path) of every photo: the images under each folder given (named by their path in it, so the same
    file name in two folders stays apart) and each image file given; `leave_out` (the report folder) is skipped."""
    found: dict[str, Path] = {}

    def add(name: str, path: Path) -> None:  # a name already taken (same file name in another entry): its path
        found[name if name not in found else path.as_posix()] = path

    for entry in [photos] if isinstance(photos, (str, Path)) else list(photos):
        entry = Path(entry)
        if entry.is_dir():
            for path in find_images(entry):
                if leave_out is None or not path.resolve().is_relative_to(leave_out.resolve()):  # -o as given, relative or not
                    add(path.relative_to(entry).as_posix(), path)
        elif entry.is_file():
            add(entry.name, entry)
        else:
            raise StylenetError(f"--photos {entry}: no such folder or image file")
    if not found:
        raise StylenetError(f"--photos {photos}: no images there (give photos the models never trained on)")
    return list(found.items())


def evaluate(
    models: list[str | Path], photos: str | Path | Sequence[str | Path], style: str | None = None,
    style_image: str | Path | None = None, size: int = 256, output: str | Path | None = None,
    cache: str | Path | None = None, device: str = "auto", precision: str = "auto",
) -> dict[str, Any]:
    """Judge each model on photos (folders and/or image files); returns the report (and writes report.md/.json
    and grid.jpg into `output` when given). style: a multi-style model's style; style_image: the painting (any-style models
    need one). precision: the models' (auto: bf16 where native, as `stylenet stylize` runs them); the judge
    itself always scores in fp32, so judge figures stay comparable between machines."""
    started = time.perf_counter()
    if size < 32:
        raise StylenetError(f"--size {size}: must be at least 32 px (the judge's VGG pools 4 times)")
    if not models:
        raise StylenetError("give one or more model files to evaluate")
    folder = Path(output) if output is not None else None
    if folder is not None and folder.exists() and not folder.is_dir():
        raise StylenetError(f"-o {folder} is a file; give a folder for report.md, report.json and grid.jpg")
    photo_paths = collect_photos(photos, folder)
    loaded, painting = load_for_judging(models, style, Path(style_image) if style_image else None, device, precision)
    painting_image = load_image(painting, "painting")
    judge = Judge(painting_image, size)  # the judge and the curves run on the CPU
    curves, rows, reference = {}, [[] for _ in loaded], []  # reference: the last Gatys image's figures
    outputs: dict[str, list[Image.Image]] = {}
    for name, photo_path in tqdm(photo_paths, desc="eval", unit="photo"):
        photo = resize_long_side(load_image(photo_path, "photo"), size)
        if min(photo.size) < 16:  # relu5_1 sits behind 4 poolings
            raise StylenetError(f"{photo_path}: {photo.size[0]}x{photo.size[1]} at --size {size}; the judge needs a "
                                "short side of 16 px or more (raise --size, or leave out such panoramas)")
        curve, cached = reference_curve(photo_path, painting, size, judge, Path(cache) if cache else None)
        curves[name] = {"iterations": curve.iterations, "terms": curve.terms, "cached": cached}
        outputs[name] = [photo]
        for model, model_rows in zip(loaded, rows):
            figures, stylized = score(model, photo, judge, curve)
            model_rows.append({"photo": name, **figures})
            outputs[name].append(stylized)
        outputs[name].append(curve.image)
        reference.append({"photo": name, **curve.terms[-1], **artifacts(curve.image, photo)})
    report = {
        "judge": JUDGE_VERSION, "judge_definition": {**JUDGE, "relative_terms": True, "curve_iterations": list(CURVE_ITERATIONS)},
        "size": size, "painting": str(painting),
        "photos": str(photos) if isinstance(photos, (str, Path)) else [str(p) for p in photos], "style": style,
        "machine": machine_name(torch.device("cpu")), "model_device": str(loaded[0].device),
        "model_precision": loaded[0].precision, "torch": torch.__version__,
        "curves": curves, "models": [summarize(str(path), model, model_rows) for path, model, model_rows in zip(models, loaded, rows)],
        "reference": {"median": medians(reference), "photos": reference},  # Gatys@200 itself: its artifact figures
        "seconds": round(time.perf_counter() - started, 1),
    }
    if folder is not None:
        write_report(report, outputs, painting_image, folder)
    return report


def load_for_judging(
    models: list[str | Path], style: str | None, style_image: Path | None, device: str, precision: str = "auto",
) -> tuple[list[Any], Path]:
    """The models with their style bound, and the one painting they are all judged against."""
    loaded = [load_model(path, device, precision) for path in models]
    paintings = {painting_for(model, style, style_image) for model in loaded}
    if len(paintings) > 1:
        raise StylenetError(f"the models name different paintings ({', '.join(sorted(map(str, paintings)))}): "
                            "evaluate them separately, or pass --style-image PAINTING for all")
    painting = paintings.pop()
    return [bind_style(model, style, painting) for model in loaded], painting


def medians(rows: list[dict[str, Any]]) -> dict[str, float]:
    numbers = ("content", "style", "tv", "total", "checkerboard", "border", "colour_shift")
    return {name: float(statistics.median(row[name] for row in rows)) for name in numbers}


def lower_median(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The row of the lower median placement: an actual figure and label ("beyond 200" stays that, never averaged)."""
    return sorted(rows, key=lambda row: row["placement"])[(len(rows) - 1) // 2]


def summarize(path: str, model: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A model's figures on every photo, and their medians."""
    median = medians(rows)
    middle = lower_median(rows)
    median["placement"], median["placement_label"] = middle["placement"], middle["placement_label"]
    kept = ("architecture", "arguments", "style", "steps", "loss", "image_size", "training")
    metadata = {key: value for key, value in model.metadata.items() if key in kept}
    return {"path": path, "metadata": metadata, "precision": model.precision, "median": median,
            "photo_lost": sum(row["photo_lost"] for row in rows), "photos": rows}


def evaluate_paintings(
    models: list[str | Path], paintings: Sequence[str | Path], photos: str | Path | Sequence[str | Path],
    size: int = 256, output: str | Path | None = None, names: list[str] | None = None, **options: Any,
) -> dict[str, Any]:
    """Judge any-style models on several paintings: evaluate() once per painting (its report and grid in
    output/<painting>/), then per model the placement on each painting, the median over the paintings (of the
    per-painting medians), photos lost and the artifact medians beside Gatys's own. names: the models' labels."""
    labels = names or [str(model) for model in models]
    if len(labels) != len(models) or len({Path(p).stem for p in paintings}) != len(paintings):
        raise StylenetError("give one name per model, and paintings whose file names (without extension) differ")
    rows: dict[str, dict[str, Any]] = {label: {} for label in labels}
    for painting in map(Path, paintings):
        folder = Path(output) / painting.stem if output is not None else None
        report = evaluate(models, photos, style_image=painting, size=size, output=folder, **options)
        reference = report["reference"]["median"]
        for label, model in zip(labels, report["models"]):
            rows[label][painting.stem] = {
                "placement": model["median"]["placement"], "placement_label": model["median"]["placement_label"],
                "per_photo": [row["placement_label"] for row in model["photos"]], "photo_lost": model["photo_lost"],
                "photos": len(model["photos"]),
                **{key: model["median"][key] for key in ("content", "style", "checkerboard", "border", "colour_shift")},
                "gatys_checkerboard": reference["checkerboard"], "gatys_border": reference["border"],
            }
    result = {"judge": JUDGE_VERSION, "size": size, "machine": machine_name(torch.device("cpu")),
              "models": {label: painting_summary(per) for label, per in rows.items()}}
    if output is not None:
        write_paintings_summary(result, Path(output))
    return result


def painting_summary(per: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One model's figures over paintings ({painting: figures}): the lower median placement, photos lost, medians."""
    middle = lower_median(list(per.values()))
    return {
        "placement": middle["placement"], "placement_label": middle["placement_label"],
        "photo_lost": sum(row["photo_lost"] for row in per.values()), "photos": sum(row["photos"] for row in per.values()),
        **{key: float(statistics.median(row[key] for row in per.values()))
           for key in ("content", "style", "checkerboard", "gatys_checkerboard", "border", "gatys_border", "colour_shift")},
        "paintings": per,
    }


def write_paintings_summary(result: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / "summary.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    with atomic_write(folder / "summary.md") as tmp:
        tmp.write_text(paintings_table(result) + "\n")


def paintings_table(result: dict[str, Any]) -> str:
    """evaluate_paintings()' result as a markdown table: a row per model, a column per painting."""
    models = result["models"]
    names = list(next(iter(models.values()))["paintings"])
    lines = ["| model | median placement | " + " | ".join(names) + " | photos lost | checkerboard (Gatys) | border (Gatys) |",
             "| --- " * (len(names) + 5) + "|"]
    for label, entry in models.items():
        per = entry["paintings"]
        labels = " | ".join(per[n]["placement_label"] if n in per else "-" for n in names)
        lines.append(f"| `{label}` | **{entry['placement_label']}** | " + labels
                     + f" | {entry['photo_lost']}/{entry['photos']} | {entry['checkerboard']:.2f} ({entry['gatys_checkerboard']:.2f}) | "
                     f"{entry['border']:.1f} ({entry['gatys_border']:.1f}) |")
    return "\n".join(lines)
