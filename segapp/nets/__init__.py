"""Plain ``nn.Module`` networks (no Lightning, no data code) and their factory."""

from segapp.nets.registry import available_nets, create_net, net_spec, register_net
from segapp.nets.smp_unet import SmpUnet
from segapp.nets.unet import UNet
from segapp.nets.weights import EncoderWeightsError

__all__ = ["EncoderWeightsError", "SmpUnet", "UNet", "available_nets", "create_net", "net_spec", "register_net"]
