import pytest
import torch
import torch.nn.functional as F

from stylenet.models.kinds.multistyle import MultiStyleTransformerNet
from stylenet.models.kinds.transformer import TransformerNet, set_fast_ops, upsample_conv


def test_no_network_upsamples_with_a_transposed_convolution() -> None:
    """Transposed convolutions are the checkerboard's source (Odena et al. 2016): both networks avoid them."""
    for network in (TransformerNet(), MultiStyleTransformerNet(["a", "b"])):
        assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in network.modules())


@pytest.mark.parametrize("height,width", [(64, 64), (65, 67), (30, 18), (9, 9)])
def test_any_size_comes_back_at_the_same_size_in_0_1(height: int, width: int) -> None:
    network = TransformerNet(channels=8, num_residual_blocks=1)
    output = network(torch.rand(2, 3, height, width))
    assert output.shape == (2, 3, height, width)
    assert output.min() >= 0 and output.max() <= 1


def test_width_and_depth_are_configurable_and_trainable() -> None:
    network = TransformerNet(channels=4, num_residual_blocks=2)
    size = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert size(network) < size(TransformerNet(channels=4, num_residual_blocks=3)) < size(TransformerNet(channels=8, num_residual_blocks=3))
    images = torch.rand(1, 3, 16, 16)
    network(images).mean().backward()
    assert all(p.grad is not None for p in network.parameters())


@pytest.mark.parametrize("height,width", [(1, 1), (5, 8), (13, 6)])
def test_upsample_conv_equals_upsample_pad_conv(height: int, width: int) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, height, width, generator=generator, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, generator=generator, dtype=torch.float64)
    bias = torch.randn(4, generator=generator, dtype=torch.float64)
    upsampled = F.pad(F.interpolate(x, scale_factor=2.0, mode="nearest"), [1, 1, 1, 1], mode="reflect")
    expected = F.conv2d(upsampled, weight, bias)
    assert (upsample_conv(x, weight, bias) - expected).abs().max() < 1e-12
    assert (upsample_conv(x, weight, None) - (expected - bias[:, None, None])).abs().max() < 1e-12


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_fast_ops_change_speed_not_results(kind: str) -> None:
    """The rewrites (upsample_conv, channels-last output conv) give the layers' own outputs and gradients."""
    torch.manual_seed(0)
    if kind == "single":
        network, extra = TransformerNet(channels=8, num_residual_blocks=2), ()
    else:
        network, extra = MultiStyleTransformerNet(["a", "b"], channels=8, num_residual_blocks=2), (torch.tensor([[0.3, 0.7]]),)
    network = network.double()
    images = torch.rand(2, 3, 37, 50, dtype=torch.float64)
    results = []
    for fast in (True, False):
        set_fast_ops(network, fast)
        network.zero_grad()
        output = network(images, *extra)
        (output * torch.linspace(-1, 1, output.numel(), dtype=torch.float64).view_as(output)).sum().backward()
        results.append((output.detach(), [p.grad.clone() for p in network.parameters()]))
    (fast_output, fast_grads), (reference_output, reference_grads) = results
    assert fast_output.is_contiguous(memory_format=torch.channels_last)  # the rewrite was in use
    assert (fast_output - reference_output).abs().max() < 1e-12
    assert all((a - b).abs().max() < 1e-9 for a, b in zip(fast_grads, reference_grads))
