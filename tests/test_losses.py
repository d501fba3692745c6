import pytest
import torch

from stylenet.models.loss_network import LossNetwork
from stylenet.models.losses import FeatureProducts, PerceptualLoss, content_loss, gram_matrix, style_loss, tv_loss


def weights(content: float, style: float, tv: float) -> dict[str, float]:
    return {"content_weight": content, "style_weight": style, "tv_weight": tv}


def test_gram_matrix_matches_hand_computation() -> None:
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)  # C=2, H=1, W=2
    expected = torch.tensor([[1 + 4, 3 + 8], [3 + 8, 9 + 16]]) / (2 * 1 * 2)
    assert torch.allclose(gram_matrix(features), expected.unsqueeze(0))


def test_gram_matrix_is_per_image_in_a_batch() -> None:
    features = torch.randn(3, 4, 5, 6)
    grams = gram_matrix(features)
    assert grams.shape == (3, 4, 4)
    assert torch.allclose(grams[1], gram_matrix(features[1:2])[0])
    assert torch.allclose(grams, grams.transpose(1, 2))


def test_gram_matrix_gradient_is_the_products_gradient() -> None:
    flat = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(FeatureProducts.apply, (flat,))
    features = torch.randn(2, 8, 5, 6).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    weights = torch.randn(2, 8, 8)
    (gram_matrix(features) * weights).sum().backward()
    expected = features.detach().clone().requires_grad_(True)
    flat = expected.reshape(2, 8, 30)
    ((flat @ flat.transpose(1, 2) / (8 * 30)) * weights).sum().backward()
    assert torch.allclose(features.grad, expected.grad, atol=1e-6)


def test_gram_matrix_stays_float32_under_autocast() -> None:
    features = torch.randn(1, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = gram_matrix(features.bfloat16())
    assert gram.dtype == torch.float32
    assert torch.allclose(gram, gram_matrix(features.bfloat16().float()))


def test_content_loss_of_an_image_with_itself_is_zero_and_mse_otherwise() -> None:
    features = torch.randn(2, 8, 4, 4)
    assert content_loss(features, features).item() == 0.0
    assert content_loss(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0)).item() == pytest.approx(9.0)


def test_style_loss_weights_layers() -> None:
    features = {"a": torch.ones(1, 1, 1, 2), "b": torch.zeros(1, 1, 1, 1)}
    # gram(a) = (1*1 + 1*1) / (1*1*2) = 1; gram(b) = 0
    targets = {"a": torch.full((1, 1, 1), 3.0), "b": torch.full((1, 1, 1), 2.0)}
    loss = style_loss(features, targets, {"a": 0.5, "b": 2.0})
    assert loss.item() == pytest.approx(0.5 * (1 - 3) ** 2 + 2.0 * (0 - 2) ** 2)


def test_tv_loss_matches_hand_computation() -> None:
    image = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    assert tv_loss(image).item() == pytest.approx(1.0)  # horizontal steps of 1, no vertical change
    assert tv_loss(torch.full((1, 3, 5, 5), 0.3)).item() == 0.0


@pytest.fixture(scope="module")
def random_vgg() -> LossNetwork:
    torch.manual_seed(0)
    return LossNetwork("vgg19", "random", ["relu1_1", "relu2_1", "relu2_2"])


def test_perceptual_loss_terms_vanish_at_their_targets(random_vgg: LossNetwork) -> None:
    style = torch.rand(3, 32, 32)
    criterion = PerceptualLoss(random_vgg, style, ["relu2_2"], {"relu1_1": 1.0, "relu2_1": 1.0}, weights(1.0, 10.0, 0.1))
    content = torch.rand(2, 3, 32, 32)
    at_content = criterion(content, content)
    assert set(at_content) == {"content", "style", "tv", "total"}
    assert at_content["content"].item() == 0.0
    assert at_content["style"].item() > 0
    at_style = criterion(style.unsqueeze(0), torch.rand(1, 3, 32, 32))
    assert at_style["style"].item() == pytest.approx(0.0, abs=1e-6)
    total = at_style["content"] + at_style["style"] + at_style["tv"]
    assert torch.allclose(at_style["total"], total)


def test_perceptual_loss_gradient_reaches_the_image_not_the_network(random_vgg: LossNetwork) -> None:
    criterion = PerceptualLoss(random_vgg, torch.rand(3, 32, 32), ["relu2_2"], {"relu1_1": 1.0}, weights(1.0, 1.0, 1.0))
    stylized = torch.rand(1, 3, 32, 32, requires_grad=True)
    criterion(stylized, torch.rand(1, 3, 32, 32))["total"].backward()
    assert stylized.grad is not None and stylized.grad.abs().sum() > 0
    assert not any(buffer.requires_grad for buffer in random_vgg.buffers())
    assert list(criterion.state_dict()) == []  # loss network and style targets never land in a checkpoint


def test_relative_style_terms_weigh_each_painting_of_a_batch_on_its_own_scale(random_vgg: LossNetwork) -> None:
    """Multi-style batches mix paintings whose Gram matrices differ in scale (a dim painting's are ~100x smaller
    here): with normalize, a photo's style term is the same whichever paintings share its batch."""
    bright, dim = torch.rand(3, 32, 32), torch.rand(3, 32, 32) * 0.1
    layers = {"relu1_1": 1.0, "relu2_1": 1.0}
    mixed = PerceptualLoss(random_vgg, [bright, dim], ["relu2_2"], layers, weights(0.0, 1.0, 0.0), normalize=True, separate_styles=True)
    images = torch.rand(2, 3, 32, 32)
    both = mixed(images, images, torch.tensor([0, 1]))["style"]
    alone = [PerceptualLoss(random_vgg, painting, ["relu2_2"], layers, weights(0.0, 1.0, 0.0), normalize=True)(
        image[None], image[None])["style"] for painting, image in zip([bright, dim], images)]
    assert alone[1] > 0.5 * alone[0]  # relative terms: the dim painting counts as much as the bright one
    assert both.item() == pytest.approx((alone[0] + alone[1]).item() / 2, rel=1e-4)


def test_the_stability_term_tells_a_network_that_moves_with_the_photo_from_one_that_flickers() -> None:
    """A per-pixel colour map moves with the photo (only the noise is left); a network that stamps a fixed
    pattern on the frame, or that reacts to the noise, does not."""
    from stylenet.models.losses import stability_loss

    generator = torch.Generator().manual_seed(0)
    photos = torch.nn.functional.interpolate(torch.rand(2, 3, 16, 16, generator=generator), size=64, mode="bilinear")
    colour_map = lambda images: images.pow(0.8)  # noqa: E731
    pattern = torch.rand(1, 3, 64, 64, generator=generator)
    stamped = lambda images: (images + pattern) / 2  # noqa: E731 - texture fixed to the frame, not the scene
    calm = stability_loss(colour_map, photos, colour_map(photos), torch.Generator().manual_seed(1))
    flickers = stability_loss(stamped, photos, stamped(photos), torch.Generator().manual_seed(1))
    assert calm < 0.001 and flickers > 5 * calm, (calm, flickers)
