"""Building blocks of the scratch U-Net, each trick a constructor argument."""

from __future__ import annotations

from typing import Literal, get_args

from torch import Tensor, nn

from segapp.errors import check_choice

Norm = Literal["batch", "instance", "group", "none"]
Activation = Literal["relu", "leaky_relu", "elu", "gelu", "silu"]
Block = Literal["plain", "residual"]
Upsample = Literal["nearest", "bilinear", "transposed"]

_ACTS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def make_norm(kind: Norm, channels: int, groups: int = 8) -> nn.Module:
    """Normalisation layer; ``group`` uses ``min(groups, channels)`` groups dividing ``channels``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        g = min(groups, channels)
        while channels % g:
            g -= 1
        return nn.GroupNorm(g, channels)
    check_choice("norm", kind, get_args(Norm))
    return nn.Identity()


def make_act(kind: Activation) -> nn.Module:
    check_choice("activation", kind, get_args(Activation))
    return _ACTS[kind]()


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with norm and activation.

    ``plain``: conv-norm-act-conv-norm-act. ``residual``: conv-norm-act-conv-norm, plus the
    input through an identity (or 1x1 projection when channels change), then activation.
    """

    def __init__(self, cin: int, cout: int, norm: Norm, act: Activation, block: Block, dropout: float = 0.0):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
        self.norm1 = make_norm(norm, cout)
        self.act1 = make_act(act)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=bias)
        self.norm2 = make_norm(norm, cout)
        self.act2 = make_act(act)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.residual = block == "residual"
        self.shortcut: nn.Module | None = None
        if self.residual:
            self.shortcut = (
                nn.Identity()
                if cin == cout
                else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=bias), make_norm(norm, cout))
            )

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(self.drop(y)))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.act2(y)


class Up(nn.Module):
    """Up-sample by 2: nearest or bilinear interpolation + 1x1 conv, or a transposed conv."""

    def __init__(self, cin: int, cout: int, mode: Upsample):
        super().__init__()
        if mode == "transposed":
            self.up: nn.Module = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        elif mode in ("nearest", "bilinear"):
            align = {"align_corners": False} if mode == "bilinear" else {}
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode=mode, **align), nn.Conv2d(cin, cout, 1))
        else:
            check_choice("upsample", mode, get_args(Upsample))

    def forward(self, x: Tensor) -> Tensor:
        return self.up(x)
