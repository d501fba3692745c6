"""How the package is put together, checked by what a user or a new kind's author sees: layers import only
downward, inference needs neither Hydra nor Lightning, a new model kind is one registry entry away from every
file format, and an installed wheel works away from the checkout."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from stylenet.models.export import export_model, save_safetensors
from stylenet.running.inference import load_model
from stylenet.models.kinds import KINDS, ModelKind, get_kind, presets, register_kind
from stylenet.models.loss_network import PRESETS
from stylenet.models.losses import LOSS_TERMS, LossTerm, register_loss_term
from stylenet.models.modelfile import load_safetensors, model_metadata
from stylenet.training.systems import SYSTEMS
from tests.conftest import CONF_DIR, PYTHON, REPO_ROOT, compose_config, run_env

PACKAGE = REPO_ROOT / "stylenet"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The stylenet modules a file imports anywhere in it (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stylenet"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from stylenet import inference`
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("stylenet"))
    return found


def test_no_module_of_the_package_imports_in_a_cycle() -> None:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: {target for target in imports_of(path) if target in modules and target != name}
             for name, path in modules.items()}
    cycles = []

    def visit(name: str, stack: list[str]) -> None:
        for target in graph[name]:
            if target in stack:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in done:
                visit(target, [*stack, target])
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert not cycles, f"import cycles: {cycles[:3]}"


SIDES = ["core", "models", "running", "evaluation", "training", "benchmarks"]  # README "How it works", bottom up


def test_each_side_imports_only_the_sides_below_it() -> None:
    """A folder per side; a module of one imports only its own side and those below (the CLI sits on top)."""
    upward = []
    for path in PACKAGE.rglob("*.py"):
        side = path.relative_to(PACKAGE).parts[0]
        if side not in SIDES:
            continue
        for target in imports_of(path):
            parts = target.split(".")
            if len(parts) > 1 and parts[1] in SIDES and SIDES.index(parts[1]) > SIDES.index(side):
                upward.append(f"{module_name(path)} imports {target}")
    assert not upward, upward
    flat = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "cli.py"], f"modules outside the sides' folders: {flat}"


def test_formats_read_below_the_writers_and_model_files_below_both() -> None:
    assert "stylenet.models.export" not in imports_of(PACKAGE / "models" / "formats.py")
    assert not {"stylenet.models.export", "stylenet.models.formats"} & imports_of(PACKAGE / "models" / "modelfile.py")


def test_precision_and_machine_policy_live_in_device_and_only_inference_runs_tiles() -> None:
    """device.py answers "which device, which precision, what machine, how much memory"; tiling.py only tiles, so
    the modules that ask about the machine import device, and only inference's StyleModel imports tiling."""
    modules = {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}
    assert sorted(name for name, found in modules.items() if "stylenet.running.tiling" in found) == ["stylenet.running.inference"]
    askers = {name for name, found in modules.items() if "stylenet.core.device" in found}
    assert {"stylenet.training.trainer", "stylenet.benchmarks.bench", "stylenet.running.backends", "stylenet.running.tiling",
            "stylenet.cli"} <= askers


def test_inference_and_export_import_neither_hydra_nor_lightning() -> None:
    code = ("import sys, stylenet.running.inference, stylenet.models.export, stylenet.running.tiling, stylenet.core.device; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf', 'pytorch_lightning', 'lightning')))")
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=run_env(), check=True)
    assert result.stdout.strip() == "[]"


# every kind's presets, and each constructor option away from its default
NETWORKS = {
    **{name: (kind, arguments) for name, (kind, arguments) in presets().items()},
    "transformer, clamp output": ("transformer", {"channels": 8, "num_residual_blocks": 0, "output": "clamp"}),
    "multistyle, two paintings": ("multistyle", {"styles": ["a", "b"], "channels": 4, "num_residual_blocks": 1}),
    "adain, torchvision encoder": ("adain", {"channels": 8, "encoder_weights": "torchvision"}),
    "arbitrary, all options": ("arbitrary", {"channels": 4, "num_residual_blocks": 1, "style_dims": 7,
                                             "encoder_weights": "torchvision"}),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_network_saves_the_arguments_it_was_built_with_and_rebuilds_from_them(name: str, tmp_path: Path) -> None:
    kind, arguments = NETWORKS[name]
    network_class = get_kind(kind).network
    network = network_class(**arguments)
    defaults = {key: parameter.default for key, parameter in inspect.signature(network_class).parameters.items()
                if key not in network_class.config_ignore}
    assert network.config() == {**defaults, **arguments}  # every argument, the defaults filled in
    path = save_safetensors(network, model_metadata(network), tmp_path / "model.safetensors")
    rebuilt, metadata = load_safetensors(path)
    assert metadata["arguments"] == network.config() == rebuilt.config()
    assert type(rebuilt) is type(network)
    ours, theirs = network.state_dict(), rebuilt.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in ours)


def test_every_kind_has_a_training_system_and_a_config() -> None:
    configured = {OmegaConf.load(path).get("kind") or OmegaConf.load(path).model.kind for path in (CONF_DIR / "model").glob("*.yaml")}
    assert set(KINDS) == set(SYSTEMS) == configured and len(KINDS) >= 3


def test_the_configs_and_the_packages_own_defaults_agree() -> None:
    """optimize and bench use the package's presets (an installed wheel has no conf/); training uses conf/."""
    for name, preset in PRESETS.items():
        config = OmegaConf.load(CONF_DIR / "loss_network" / f"{name}.yaml").loss_network
        assert (config.arch, config.weights) == (preset.arch, preset.weights), name
        assert (tuple(config.content_layers), tuple(config.style_layers)) == (preset.content_layers, preset.style_layers)
    assert {path.stem for path in (CONF_DIR / "loss_network").glob("*.yaml")} == set(PRESETS)
    for name, (kind, arguments) in presets().items():  # a network size is written once, in its kind's presets
        raw = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
        model = raw.get("model", raw)
        assert model.kind == kind
        composed = compose_config(f"model={name}").model
        for key, value in arguments.items():
            if key in model:
                assert OmegaConf.is_interpolation(model, key) and composed[key] == value, (name, key)


class Invert(nn.Module):
    """A toy network of a new kind: 1 - image, times a learnt gain."""

    def __init__(self, gain: float = 1.0) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(float(gain)))

    def config(self) -> dict[str, float]:
        return {"gain": float(self.gain.detach())}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return ((1.0 - images) * self.gain).clamp(0.0, 1.0)


@pytest.fixture
def invert_kind() -> ModelKind:
    kind = register_kind(ModelKind(name="invert", network=Invert, tileable=False))
    yield kind
    del KINDS["invert"]


def test_a_new_kind_needs_only_its_registry_entry_to_export_and_stylize(invert_kind: ModelKind, tmp_path: Path) -> None:
    network = Invert(0.5)
    path = save_safetensors(network, model_metadata(network, style={"name": "negative"}), tmp_path / "invert.safetensors")
    model = load_model(path, "cpu")
    assert model.metadata["architecture"] == "invert" and model.model_kind is invert_kind
    assert model.stylize(Image.new("RGB", (20, 10), (255, 0, 0))).getpixel((0, 0)) == (0, 128, 128)
    assert export_model(model.loaded, model.metadata, tmp_path / "invert.pt", "torchscript") == 0
    assert load_model(tmp_path / "invert.pt", "cpu").stylize(Image.new("RGB", (8, 8))).getpixel((0, 0)) == (128, 128, 128)


@pytest.fixture
def toy_kind() -> ModelKind:
    """tests/toy_kind: a network, a training system and a config file that stylenet's own files never name."""
    import tests.toy_kind as toy

    kind = toy.register()
    yield kind
    toy.unregister()


@pytest.mark.slow
def test_a_kind_from_the_test_folder_trains_stylizes_exports_benches_and_evals(
    toy_kind: ModelKind, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
) -> None:
    import json

    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import tests.toy_kind as toy
    from stylenet.benchmarks import bench
    from stylenet.cli import main
    from stylenet.training.trainer import train
    from tests.conftest import compose_config

    monkeypatch.setenv("STYLENET_CACHE", str(tmp_path / "cache"))
    run_dir, photo = tmp_path / "run", data_dir / "content_test" / "fruits.jpg"
    model_file = train(compose_config(
        f"hydra.searchpath=[file://{toy.CONF}]", "model=toy", "style=mondrian", "experiment=quick", "data.image_size=64",
        "style.size=128", "data.num_workers=0", "samples.size=64", "samples.count=2", "trainer.max_steps=8",
        "trainer.log_every_n_steps=1", "optimizer.lr=0.02", run_dir=run_dir))
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    losses = [event.value for event in events.Scalars("train/total_loss")]
    assert len(losses) == 8 and losses[-1] < losses[0]  # it trained
    model = load_model(model_file, "cpu", "fp32")
    assert model.model_kind is toy_kind and model.metadata["steps"] == 8

    stylized = tmp_path / "fruits_toy.png"
    main(["stylize", str(photo), "--model", str(model_file), "--size", "64", "-o", str(stylized), "--precision", "fp32"])
    picture = np.asarray(Image.open(stylized), int)
    assert max(picture.shape[:2]) == 64
    assert np.abs(picture - np.asarray(Image.open(photo).convert("RGB").resize(picture.shape[1::-1]), int)).mean() > 5

    main(["export", str(model_file), "--format", "onnx", "-o", str(tmp_path / "toy.onnx")])
    exported = load_model(tmp_path / "toy.onnx", "cpu").stylize(Image.open(photo), size=64)
    assert np.abs(np.asarray(exported, int) - picture).max() <= 2

    capsys.readouterr()
    bench.main(["train", "--model", "toy", "--size", "32", "--batch", "1", "--warmup", "1", "--repeats", "1"])
    bench.main(["infer", "--model", "toy", "--sizes", "64", "--backends", "eager", "--precisions", "fp32",
                "--warmup", "0", "--repeats", "1"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(row["bench"], row["model"]) for row in rows] == [("train", "toy"), ("infer", "toy")]
    assert all(row.get("s_per_step", row.get("s_per_image", 0)) > 0 for row in rows)

    main(["eval", str(model_file), "--photos", str(photo), "--size", "32", "-o", str(tmp_path / "eval")])
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["models"][0]["metadata"]["architecture"] == "toy" and report["models"][0]["median"]["placement"] >= 0


@pytest.fixture
def colour_term() -> LossTerm:
    """A loss term declared in one place: how far each pixel's channels are from their mean (colourfulness)."""
    term = register_loss_term(LossTerm(
        "colour", "colour_weight", compute=lambda inputs: (inputs.stylized - inputs.stylized.mean(1, keepdim=True)).square().mean()))
    yield term
    del LOSS_TERMS["colour"]


@pytest.mark.slow
def test_a_loss_term_declared_in_one_place_is_trained_logged_benched_and_optimized(
    colour_term: LossTerm, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture,
) -> None:
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from stylenet.benchmarks import bench
    from stylenet.cli import main
    from stylenet.training.trainer import train

    run_dir = tmp_path / "run"
    model_file = train(compose_config(
        "experiment=quick", "data.image_size=64", "style.size=128", "model.channels=8", "data.num_workers=0",
        "samples.size=64", "samples.count=2", "trainer.max_steps=3", "trainer.log_every_n_steps=1",
        "+loss.colour_weight=5", run_dir=run_dir))
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    logged = {tag: {event.step: event.value for event in events.Scalars(tag)}
              for tag in ("train/colour_loss", "train/content_loss", "train/style_loss", "train/tv_loss", "train/total_loss")}
    assert len(logged["train/colour_loss"]) == 3 and all(value > 0 for value in logged["train/colour_loss"].values())
    parts = sum(values[2] for tag, values in logged.items() if tag != "train/total_loss")
    assert logged["train/total_loss"][2] == pytest.approx(parts, rel=1e-3)  # in what training minimizes
    assert load_model(model_file, "cpu").metadata["loss"]["colour_weight"] == 5

    capsys.readouterr()
    bench.main(["train", "--model", "transformer_small", "--size", "32", "--batch", "1", "--warmup", "0", "--repeats", "1"])
    row = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert "colour_weight" in row["objective"]

    photo, painting = data_dir / "content_test" / "fruits.jpg", data_dir / "styles" / "mondrian.jpg"
    main(["optimize", str(photo), str(painting), "-o", str(tmp_path / "painted.png"), "--size", "32", "--steps", "2",
          "--colour-weight", "1"])
    assert "colour " in capsys.readouterr().out  # its own flag, and its figure in the summary


@pytest.mark.slow
def test_an_installed_wheel_works_away_from_the_checkout(tmp_path: Path, tiny_model: Path, data_dir: Path) -> None:
    """pip install of the wheel (not -e) into a fresh venv that borrows the dependencies; run from elsewhere."""
    wheels = tmp_path / "wheels"
    subprocess.run([PYTHON, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO_ROOT)],
                   check=True, capture_output=True, env=run_env())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    dependencies = next(Path(p) for p in sys.path if p.endswith("site-packages") and (Path(p) / "torch").is_dir())
    (site / "dependencies.pth").write_text(f"{dependencies}\n")  # a path line only: the checkout's editable hook stays out
    subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), *map(str, wheels.glob("*.whl"))],
                   check=True, capture_output=True, env=run_env())
    python, elsewhere = venv / "bin" / "python", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**run_env(), "PYTHONPATH": ""}

    def stylenet(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), "-m", "stylenet", *args], cwd=elsewhere, capture_output=True, text=True, env=env, timeout=300)

    where = subprocess.run([str(python), "-c", "import stylenet; print(stylenet.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, env=env, check=True).stdout
    assert str(site) in where and str(REPO_ROOT / "stylenet") not in where
    photo = data_dir / "content_test" / "fruits.jpg"
    done = stylenet("stylize", str(photo), "--model", str(tiny_model), "--size", "48", "-o", "out.png")
    assert done.returncode == 0 and (elsewhere / "out.png").is_file(), done.stderr
    done = stylenet("optimize", str(photo), str(data_dir / "styles" / "udnie.jpg"), "-o", "painted.png", "--size", "48", "--steps", "2")
    assert done.returncode == 0 and (elsewhere / "painted.png").is_file(), done.stderr
    done = stylenet("bench", "infer", "--model", "transformer_small", "--sizes", "64", "--backends", "eager", "--warmup", "0",
                    "--repeats", "1")
    assert done.returncode == 0 and '"model": "transformer_small"' in done.stdout, done.stderr
    done = stylenet("train", "style=starry_night")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "run it from the root of a stylenet checkout" in done.stderr
