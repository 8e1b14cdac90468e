"""Weight initialisation schemes for the scratch U-Net."""

from __future__ import annotations

import logging
from typing import Literal, get_args

from torch import nn

from segapp.errors import check_choice

Init = Literal["he", "xavier", "default", "zeros"]
log = logging.getLogger(__name__)


def init_weights(module: nn.Module, scheme: Init, nonlinearity: str = "relu") -> None:
    """Initialise every conv layer of ``module`` in place.

    ``he``: Kaiming normal (fan_out), right for ReLU-family activations. ``xavier``: Glorot
    uniform. ``default``: leave PyTorch's own init. ``zeros``: all weights zero, kept on
    purpose to show the symmetry failure (every filter stays identical).
    Norm layers are set to weight 1, bias 0; biases to 0.
    """
    check_choice("init", scheme, get_args(Init))
    if scheme == "default":
        return
    if scheme == "zeros":
        log.warning("init='zeros': every filter starts identical and stays so (symmetry); the net cannot learn well")
    nl = nonlinearity if nonlinearity in ("relu", "leaky_relu") else "relu"
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if scheme == "he":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity=nl)
            elif scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.zeros_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
