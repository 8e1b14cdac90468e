import pytest
import torch

from segapp.nets import UNet, available_nets, create_net


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_output_has_input_spatial_size(depth):
    net = UNet(in_channels=3, depth=depth, base_channels=4).eval()
    x = torch.randn(2, 3, 32, 48)
    assert net(x).shape == (2, 1, 32, 48)


def test_gray_input_and_two_output_channels():
    net = UNet(in_channels=1, out_channels=2, depth=2, base_channels=4).eval()
    assert net(torch.randn(1, 1, 16, 16)).shape == (1, 2, 16, 16)


def test_size_not_divisible_names_the_size_to_pad_to():
    net = UNet(depth=3, base_channels=4)
    with pytest.raises(ValueError, match=r"divisible by 8, got 30x33; pad or resize the input to 32x40"):
        net(torch.randn(1, 3, 30, 33))


def test_factory_builds_registered_nets_and_lists_valid_names():
    assert "unet" in available_nets()
    net = create_net("unet", depth=2, base_channels=4)
    assert isinstance(net, UNet) and net.net_config["depth"] == 2
    with pytest.raises(ValueError, match="unknown net 'unet9'; expected one of: .*unet"):
        create_net("unet9")


def test_he_init_is_the_default_and_scaled_by_fan_out():
    torch.manual_seed(0)
    net = UNet(depth=2, base_channels=16)
    w = net.down[1].conv1.weight  # 16 -> 32 channels, 3x3
    fan_out = w.shape[0] * 9
    assert w.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.1)
