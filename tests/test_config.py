import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from stylenet import StylenetError
from stylenet.training.config import paintings
from stylenet.training.trainer import check_config
from tests.conftest import CONF_DIR
from tests.conftest import PYTHON, TRAIN_PY, compose_config, run_env

GROUPS = ["style", "dataset", "loss_network", "model", "trainer", "experiment"]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))]


def test_every_painting_has_a_style_config(data_dir: Path) -> None:
    paintings = {path.stem for path in (data_dir / "styles").glob("*.jpg")}
    configs = {path.stem for path in (CONF_DIR / "style").glob("*.yaml")}
    assert paintings and paintings <= configs


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_option_composes_and_validates(group: str, option: str, data_dir: Path) -> None:
    cfg = compose_config(f"{group}={option}")
    if group == "style":
        assert cfg.style.name == option and Path(paintings(cfg)[option]).is_file()
    if group == "loss_network":
        assert cfg.loss_network.name == option and cfg.loss.style_weight > 0
    if option == "coco2014":  # COCO is not on this machine
        return
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():  # trainer=gpu, experiment=gpu
        message = r"trainer.accelerator=gpu \(trainer=gpu, experiment=gpu or gpu_any\): torch sees no CUDA GPU"
        with pytest.raises(StylenetError, match=message):
            check_config(cfg)
        return
    check_config(cfg)


def test_defaults_follow_the_papers() -> None:
    cfg = compose_config()
    assert (cfg.data.image_size, cfg.data.batch_size, cfg.optimizer.lr) == (256, 4, 1e-3)
    assert cfg.trainer.max_steps == 40000 and cfg.model.num_residual_blocks == 5
    assert list(cfg.loss_network.content_layers) == ["relu4_2"]
    assert compose_config("loss_network=vgg16").loss_network.content_layers == ["relu2_2"]


@pytest.mark.parametrize("kind", ["transformer", "arbitrary", "adain"])
def test_each_training_systems_defaults_are_the_configs(kind: str) -> None:
    """A system built in Python without from_config trains the recipe `python train.py model=KIND` trains."""
    import inspect

    from stylenet.training.systems import system_for

    cfg = compose_config(f"model={kind}")
    defaults = {name: parameter.default for name, parameter in inspect.signature(system_for(kind).__init__).parameters.items()}
    expected = {"channels": cfg.model.channels, "lr": cfg.optimizer.lr}
    if kind == "adain":  # its own two terms, weighed under model.*
        expected |= {"content_weight": cfg.model.content_weight, "style_weight": cfg.model.style_weight}
    else:
        expected |= {"num_residual_blocks": cfg.model.num_residual_blocks}
    if kind == "transformer":
        expected |= {"relative": cfg.loss.relative, "style_size": cfg.style.size}
    assert {name: defaults[name] for name in expected} == expected
    if kind != "adain":  # the perceptual loss's weights: None in the signature, DEFAULT_LOSS_WEIGHTS when built
        from stylenet.models.losses import weight_keys
        from stylenet.training.systems.transformer import DEFAULT_LOSS_WEIGHTS

        assert DEFAULT_LOSS_WEIGHTS == {key: cfg.loss[key] for key in weight_keys()}


def test_data_root_comes_from_stylenet_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STYLENET_DATA", str(tmp_path))
    cfg = compose_config()
    assert cfg.data.root == f"{tmp_path}/content" and paintings(cfg) == {"starry_night": f"{tmp_path}/styles/starry_night.jpg"}


def test_a_users_own_painting(data_dir: Path) -> None:
    """`style.image=PATH style.name=NAME` trains on that file alone, under that name (the default painting gone)."""
    painting = data_dir / "content_test" / "fruits.jpg"
    cfg = compose_config(f"style.image={painting}", "style.name=fruits")
    check_config(cfg)
    assert paintings(cfg) == {"fruits": str(painting)}
    with pytest.raises(StylenetError, match=r"style.crop.fruits: style.crop is for the paintings of conf/style/"):
        check_config(compose_config(f"style.image={painting}", "style.name=fruits", "+style.crop.fruits=[0,0,1,0.5]"))


def test_style_crop_learns_from_that_part_of_the_painting_alone(data_dir: Path, tmp_path: Path) -> None:
    """style.crop: the Gram targets are those of the region cut out by hand and given as style.image, not those
    of the whole painting, and the model's description says which part it learned from."""
    from PIL import Image

    from stylenet.training.systems.transformer import StyleTransferSystem

    with Image.open(data_dir / "styles" / "starry_night.jpg") as painting:  # the village: bottom-left quarter
        width, height = painting.size
        painting.convert("RGB").crop((0, round(height / 2), round(width / 2), height)).save(tmp_path / "village.png")

    def style_grams(*overrides: str) -> tuple[dict[str, torch.Tensor], dict]:
        system = StyleTransferSystem.from_config(compose_config("style.size=64", *overrides), [])
        return system.criterion.style_grams(), system.hparams.description["style"]

    cropped, described = style_grams("+style.crop.starry_night=[0,0.5,0.5,1]")
    by_hand, _ = style_grams(f"style.image={tmp_path / 'village.png'}", "style.name=village")
    whole, _ = style_grams()
    assert described["crop"] == {"starry_night": [0.0, 0.5, 0.5, 1.0]}
    for layer, gram in cropped.items():
        torch.testing.assert_close(gram, by_hand[layer], rtol=1e-5, atol=0)
        assert not torch.allclose(gram, whole[layer], rtol=0.05), layer  # the sky's swirls are not the village


@pytest.mark.parametrize(
    "override,message",
    [
        ("loss_network.content_layers=[relu9_9]", r"loss_network.content_layers: unknown vgg19 layer relu9_9; valid: conv1_1"),
        ("loss_network.style_layers=[relu3_3,relu5_5]", r"unknown vgg19 layer relu5_5"),
        ("loss_network.style_layers=relu1_1", r"loss_network.style_layers must be a non-empty list"),
        ("loss.style_weight=-1", r"loss.style_weight=-1.*must be a number >= 0"),
        ("loss.tv_weight=nan", r"loss.tv_weight=nan: must be a number >= 0"),
        ("optimizer.lr=inf", r"optimizer.lr=inf: must be a number > 0"),
        ("on_nonfinite_loss=ignore", r"on_nonfinite_loss=ignore: valid are stop, skip"),
        ("model.channels=0", r"model.channels=0: must be >= 1"),
        ("data.image_size=30", r"data.image_size=30: must be a multiple of 4"),
        ("data.batch_size=0", r"data.batch_size=0: must be >= 1"),
        ("style.image=/nonexistent/painting.jpg", r"style.image=/nonexistent/painting.jpg: file not found; run `make data`"),
        ("loss_network.style_layer_weights.relu1_1=-2", r"style_layer_weights.relu1_1=-2.0: must be a number >= 0"),
        ("ckpt_path=/nonexistent.ckpt", r"ckpt_path=/nonexistent.ckpt: no such checkpoint file"),
        ("+style.crop.starry_night=[0.5,0,0.4,1]", r"style.crop.starry_night=\[0.5, 0.0, 0.4, 1.0\]: give \[left, top, right, bottom\]"),
        ("+style.crop.starry_nite=[0,0,0.5,0.5]", r"style.crop.starry_nite: no painting of that name is trained here "
                                                   r"\(the paintings: starry_night\); check its spelling"),
        ("+style.crop.starry_night=[0.1,0,0.1001,1]", r"style.crop.starry_night=.*: leaves a 0x\d+-px part, 0 px on its "
                                                     r"short side at style.size=512; the loss network needs 16"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(StylenetError, match=message) as error:
        check_config(compose_config(override))
    assert "\n" not in str(error.value)


def test_a_style_image_that_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "fake.jpg").write_text("hello")
    with pytest.raises(StylenetError, match="not a readable image"):
        check_config(compose_config(f"style.image={tmp_path / 'fake.jpg'}"))


@pytest.mark.slow  # each composes and checks a whole run config (5 s): make test runs them
@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model=adain", "loss.tv_weight=5"], "loss.tv_weight: model=adain does not use it (its loss weights are model.content_weight"),
        (["model=adain", "style=udnie"], "style: model=adain does not use it (its paintings come from style_dataset)"),
        (["style_dataset.exclude=[udnie]"], "style_dataset.exclude: model=transformer does not use it"),
        (["model=adain", "model.calibration_styles=0"], "model.calibration_styles=0: must be an integer >= 1"),
        (["loss.relative=maybe"], "loss.relative=maybe: true or false"),
    ],
)
def test_a_key_the_model_kind_does_not_read_is_refused_not_ignored(overrides: list[str], message: str, tmp_path: Path) -> None:
    command = [PYTHON, TRAIN_PY, *overrides, f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(command, capture_output=True, text=True, env=run_env(), timeout=120)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {message}") and len(result.stderr.strip().splitlines()) == 1


def test_adain_configs_hold_only_keys_it_reads() -> None:
    model = compose_config("model=adain").model
    assert set(model) == {"kind", "channels", "content_weight", "style_weight", "calibration_styles", "lr", "batch_size"}


# the top-level keys each config group may set (experiments are recipes: they may set anything)
GROUP_KEYS = {"model": {"model"}, "loss_network": {"loss_network"}, "dataset": {"data"}, "style": {"style"},
              "style_dataset": {"style_dataset"}, "trainer": {"trainer"}}


@pytest.mark.parametrize("group", sorted(GROUP_KEYS))
def test_each_config_group_sets_only_its_own_keys(group: str) -> None:
    """A group that reaches into another's keys (model=adain setting optimizer.lr, a loss network setting loss.*,
    a model setting hydra.run.dir) makes two owners for one key; they read each other through interpolations."""
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        text = path.read_text()
        package = next((line.split()[-1] for line in text.splitlines() if line.startswith("# @package")), group)
        keys = {key for key in OmegaConf.load(path) if key != "defaults"}
        top = keys if package == "_global_" else {package.split(".")[0]}
        assert top <= GROUP_KEYS[group], f"{path.name} sets {sorted(top - GROUP_KEYS[group])}"
