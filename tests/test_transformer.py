import pytest
import torch

from stylenet.transformer import TransformerNet


def test_default_network_has_the_size_of_johnson_et_al() -> None:
    network = TransformerNet()
    assert sum(p.numel() for p in network.parameters()) == 1_679_235
    assert network.config() == {"channels": 32, "num_residual_blocks": 5, "output": "sigmoid"}
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in network.modules())  # no checkerboard source


@pytest.mark.parametrize("height,width", [(64, 64), (65, 67), (30, 18), (9, 9)])
def test_any_size_comes_back_at_the_same_size_in_0_1(height: int, width: int) -> None:
    network = TransformerNet(channels=8, num_residual_blocks=1)
    output = network(torch.rand(2, 3, height, width))
    assert output.shape == (2, 3, height, width)
    assert output.min() >= 0 and output.max() <= 1


def test_width_and_depth_are_configurable_and_trainable() -> None:
    network = TransformerNet(channels=4, num_residual_blocks=2)
    assert len(network.residuals) == 2 and network.encoder[0][1].out_channels == 4
    images = torch.rand(1, 3, 16, 16)
    network(images).mean().backward()
    assert all(p.grad is not None for p in network.parameters())
