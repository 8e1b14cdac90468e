"""A U-Net built from scratch, with every training trick as a constructor switch."""

from __future__ import annotations

from typing import get_args

import torch
from torch import Tensor, nn

from segapp.errors import SettingError, check_choice, check_range
from segapp.nets.blocks import Activation, Block, ConvBlock, Norm, Up, Upsample
from segapp.nets.init import Init, init_weights
from segapp.nets.registry import register_net

_CHOICES = {"norm": Norm, "block": Block, "activation": Activation, "init": Init, "upsample": Upsample}


def _check_settings(kw: dict) -> None:
    """Refuse out-of-range sizes and unknown choices with the config key, before building anything."""
    key = "model.net.init_args."
    for name in ("in_channels", "out_channels", "depth", "base_channels"):
        check_range(key + name, kw[name], 1)
    for name in ("dropout", "decoder_dropout"):
        check_range(key + name, kw[name], 0.0, 1.0, hi_open=True)
    for name, choices in _CHOICES.items():
        check_choice(key + name, kw[name], get_args(choices))


@register_net("unet")
class UNet(nn.Module):
    """Classic U-Net: ``depth`` down steps (conv block + max-pool), bottleneck, ``depth`` up steps.

    Args:
        in_channels: Input channels (1 gray, 3 RGB).
        out_channels: Output channels (1 for binary segmentation; logits).
        depth: Number of down-sampling steps; inputs must be divisible by ``2**depth``.
        base_channels: Channels of the first block; doubled at each step down.
        norm: ``batch``, ``instance``, ``group`` or ``none``.
        block: ``plain`` (conv-norm-act x2) or ``residual`` (with identity/1x1 shortcut).
        activation: Non-linearity after each conv.
        init: ``he`` (Kaiming), ``xavier``, ``default`` (PyTorch's) or ``zeros`` (symmetry demo).
        dropout: Spatial dropout probability in the bottleneck.
        decoder_dropout: Spatial dropout probability in each decoder block.
        upsample: ``nearest`` / ``bilinear`` (interpolate + 1x1 conv) or ``transposed``.
        skips: Concatenate encoder features into the decoder (``False``: plain encoder-decoder).

    Attributes:
        net_config: The constructor arguments as called, defaults applied (recorded by
            :func:`~segapp.nets.register_net`; a checkpoint rebuilds the net from them).

    Shape:
        input ``(N, in_channels, H, W)`` -> logits ``(N, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        depth: int = 4,
        base_channels: int = 32,
        norm: Norm = "batch",
        block: Block = "plain",
        activation: Activation = "relu",
        init: Init = "he",
        dropout: float = 0.0,
        decoder_dropout: float = 0.0,
        upsample: Upsample = "bilinear",
        skips: bool = True,
    ) -> None:
        super().__init__()
        _check_settings(locals())
        self.depth = depth
        self.skips = skips
        widths = [base_channels * 2**i for i in range(depth + 1)]
        cin = in_channels
        self.down = nn.ModuleList()
        for w in widths[:-1]:
            self.down.append(ConvBlock(cin, w, norm, activation, block))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ConvBlock(widths[-2], widths[-1], norm, activation, block, dropout=dropout)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in range(depth - 1, -1, -1):
            self.ups.append(Up(widths[i + 1], widths[i], upsample))
            dec_in = widths[i] * 2 if skips else widths[i]
            self.decoders.append(ConvBlock(dec_in, widths[i], norm, activation, block, dropout=decoder_dropout))
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        init_weights(self, init, nonlinearity=activation)

    def check_input_size(self, h: int, w: int) -> None:
        """Raise a clear error, with the size to pad to, if H or W is not divisible by ``2**depth``."""
        k = 2**self.depth
        if h % k or w % k:
            ph, pw = -(-h // k) * k, -(-w // k) * k
            raise SettingError(
                f"UNet(depth={self.depth}) expects height and width divisible by {k}, got {h}x{w}; "
                f"pad or resize the input to {ph}x{pw} (in training: data.image_size)"
            )

    def encoder_module(self) -> nn.Module:
        """The down-sampling path (what ``freeze_encoder_epochs`` freezes)."""
        return self.down

    def feature_module(self) -> nn.Module:
        """The bottleneck: its pooled output is the scan's feature vector for the OOD score."""
        return self.bottleneck

    def forward(self, x: Tensor) -> Tensor:
        self.check_input_size(x.shape[-2], x.shape[-1])
        feats = []
        for enc in self.down:
            x = enc(x)
            feats.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(feats), strict=True):
            x = up(x)
            if self.skips:
                x = torch.cat([skip, x], dim=1)
            x = dec(x)
        return self.head(x)
