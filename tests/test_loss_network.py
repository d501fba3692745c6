import urllib.error
from pathlib import Path

import pytest
import torch

from stylenet import StylenetError
from stylenet.core.images import open_image, resize_long_side, to_tensor
from stylenet.models.loss_network import LossNetwork, layer_names, load_caffe_vgg19

GATYS_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]


def test_layer_names_follow_vgg_blocks() -> None:
    vgg16, vgg19 = layer_names("vgg16"), layer_names("vgg19")
    assert len(vgg16) == 13 * 2 + 5 and len(vgg19) == 16 * 2 + 5
    assert vgg16[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert "relu3_3" in vgg16 and "relu3_4" not in vgg16 and "relu3_4" in vgg19
    assert vgg19[-1] == "pool5"


def test_network_is_trimmed_after_the_deepest_layer_asked_for() -> None:
    network = LossNetwork("vgg19", "random", ["relu1_1", "relu2_1"])
    assert network.names[-1] == "relu2_1"
    convs = sorted(name.removesuffix("_weight") for name, _ in network.named_buffers() if name.endswith("_weight"))
    assert convs == ["conv1_1", "conv1_2", "conv2_1"]
    features = network(torch.rand(1, 3, 32, 32), ["relu1_1", "relu2_1"])
    assert features["relu1_1"].shape == (1, 64, 32, 32) and features["relu2_1"].shape == (1, 128, 16, 16)


def test_unknown_layer_fails_with_the_valid_names() -> None:
    with pytest.raises(StylenetError, match=r"unknown vgg16 layer relu3_4; valid: .*relu3_3"):
        LossNetwork("vgg16", "random", ["relu3_4"])


def test_network_is_frozen_and_stays_in_eval_mode() -> None:
    network = LossNetwork("vgg19", "random", ["relu1_1"]).train()
    assert not network.training
    assert list(network.parameters()) == [] and network.state_dict() == {}


def test_caffe_normalization_is_bgr_0_255_mean_subtracted() -> None:
    network = LossNetwork("vgg19", "caffe", ["relu1_1"])
    image = torch.zeros(1, 3, 2, 2)
    image[:, 0] = 1.0  # pure red
    normalized = network.normalize(image)
    assert torch.allclose(normalized[0, :, 0, 0], torch.tensor([-103.939, -116.779, 255.0 - 123.68]))


def test_caffe_weights_are_the_real_pretrained_network(data_dir: Path) -> None:
    """On a real photo the Caffe VGG-19 gives its known activation scale and sparsity; random init does not."""
    state = load_caffe_vgg19()
    assert state["conv1_1.weight"].shape == (64, 3, 3, 3) and state["conv5_4.weight"].shape == (512, 512, 3, 3)
    photo = to_tensor(resize_long_side(open_image(data_dir / "content_test" / "fruits.jpg"), 128)).unsqueeze(0)
    with torch.no_grad():
        real = LossNetwork("vgg19", "caffe", GATYS_LAYERS)(photo, GATYS_LAYERS)
        torch.manual_seed(0)
        random = LossNetwork("vgg19", "random", GATYS_LAYERS)(photo, GATYS_LAYERS)
    # Measured once on this photo with these weights (mean activation, fraction of zeros):
    expected_means = {"relu1_1": 20.6, "relu2_1": 113.3, "relu3_1": 126.5, "relu4_1": 586.3, "relu5_1": 68.5}
    for layer, mean in expected_means.items():
        assert real[layer].mean().item() == pytest.approx(mean, rel=0.05), layer
        assert random[layer].mean().item() < 5
    assert (real["relu5_1"] == 0).float().mean() > 0.7 > (random["relu5_1"] == 0).float().mean()


def test_torchvision_weights_load_from_torch_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file already in torch's hub cache is used as torchvision would use it, with no download."""
    import torchvision.models as models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = models.VGG16_Weights.IMAGENET1K_V1.url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(1)
    # torchvision's features.N numbering: conv1_1 is features.0, conv1_2 features.2, conv2_1 features.5
    fake = {f"features.{i}.weight": torch.randn(o, c, 3, 3) for i, o, c in [(0, 64, 3), (2, 64, 64), (5, 128, 64)]}
    fake |= {f"features.{i}.bias": torch.randn(o) for i, o in [(0, 64), (2, 64), (5, 128)]}
    fake |= {f"features.{i}.{kind}": torch.zeros(1) for i in range(7, 29, 2) for kind in ("weight", "bias")}
    torch.save(fake, cache / Path(url).name)
    network = LossNetwork("vgg16", "torchvision", ["relu2_1"])
    assert torch.equal(network.conv1_2_weight, fake["features.2.weight"])
    assert torch.equal(network.conv2_1_bias, fake["features.5.bias"])
    assert torch.allclose(network.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


def test_torchvision_download_failure_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(StylenetError, match="loss_network=vgg19_caffe"):
        LossNetwork("vgg19", "torchvision", ["relu1_1"])


def test_memory_layout_and_in_place_relu_leave_features_and_gradients_unchanged() -> None:
    """fast_ops (channels-last activations) against channels-first, with a conv output asked for too."""
    torch.manual_seed(0)
    network = LossNetwork("vgg19", "random", ["conv1_2", "relu1_2", "relu2_1"]).double()
    images = torch.rand(2, 3, 24, 20, dtype=torch.float64)
    results = []
    for fast in (True, False):
        network.fast_ops = fast
        inputs = images.clone().requires_grad_(True)
        features = network(inputs, ["conv1_2", "relu1_2", "relu2_1"])
        sum(feature.sum() * index for index, feature in enumerate(features.values(), start=1)).backward()
        results.append((features, inputs.grad))
    (fast, fast_grad), (reference, reference_grad) = results
    assert fast["relu2_1"].is_contiguous(memory_format=torch.channels_last)
    assert fast["conv1_2"].min() < 0  # the conv output was not rectified in place by relu1_2
    for layer in reference:
        assert (fast[layer] - reference[layer]).abs().max() < 1e-10
    assert (fast_grad - reference_grad).abs().max() < 1e-10
