"""Plain ``nn.Module`` networks (no Lightning, no data code) and their factory."""

from segapp.nets.registry import available_nets, create_net, net_spec, register_net
from segapp.nets.unet import UNet

__all__ = ["UNet", "available_nets", "create_net", "net_spec", "register_net"]
