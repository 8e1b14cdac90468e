"""Transfer learning: freeze the encoder for N epochs, then fine-tune it with a lower LR.

Helpers used by :class:`segapp.lit.SegmentationModule` (``freeze_encoder_epochs``,
``encoder_lr_mult``). The encoder of a net is ``net.encoder_module()`` (SMP encoder, or the
scratch U-Net's down path).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from segapp.errors import SettingError

log = logging.getLogger(__name__)

_BN = (nn.modules.batchnorm._BatchNorm,)


def encoder_of(net: nn.Module) -> nn.Module | None:
    """The net's encoder (``net.encoder_module()``), or None if the net has none."""
    get = getattr(net, "encoder_module", None)
    return get() if callable(get) else None


def require_encoder(net: nn.Module, what: str) -> nn.Module:
    """:func:`encoder_of`, raising a clear error when ``what`` needs an encoder."""
    enc = encoder_of(net)
    if enc is None:
        raise SettingError(
            f"{what} needs a net with an encoder (a method encoder_module()); "
            f"{type(net).__name__} has none. Use segapp.nets.SmpUnet or segapp.nets.UNet, or leave it at its default"
        )
    return enc


def set_encoder_frozen(encoder: nn.Module, frozen: bool, training: bool = True, keep_grads: bool = False) -> None:
    """Freeze (``requires_grad=False``, BatchNorm in eval mode: running stats kept) or unfreeze
    (``requires_grad=True`` and the encoder back in ``training`` mode: Lightning restores the
    modes it found before validation, so eval BatchNorm layers would otherwise stay eval).

    ``keep_grads=True`` (distributed runs) leaves ``requires_grad`` alone: DDP fixes the set of
    parameters it synchronises when it wraps the model, so the caller drops the encoder's
    gradients after each backward instead (:func:`drop_grads`).
    """
    if not keep_grads:
        for p in encoder.parameters():
            p.requires_grad_(not frozen)
    if frozen:
        keep_bn_eval(encoder)
    else:
        encoder.train(training)


def drop_grads(encoder: nn.Module) -> None:
    """Set the encoder's gradients to None: the optimiser then skips them (no step, no decay)."""
    for p in encoder.parameters():
        p.grad = None


def keep_bn_eval(encoder: nn.Module) -> None:
    """Put the encoder's BatchNorm layers in eval mode (call after every ``train()``)."""
    for m in encoder.modules():
        if isinstance(m, _BN):
            m.eval()


def param_groups(net: nn.Module, encoder_lr_mult: float) -> list[dict[str, Any]] | Iterable[nn.Parameter]:
    """Optimiser parameter groups: encoder params tagged with ``lr_mult``, the rest plain.

    Returns ``net.parameters()`` unchanged when ``encoder_lr_mult == 1`` or there is no encoder.
    """
    enc = encoder_of(net)
    if enc is None or encoder_lr_mult == 1.0:
        return net.parameters()
    enc_ids = {id(p) for p in enc.parameters()}
    rest = [p for p in net.parameters() if id(p) not in enc_ids]
    return [
        {"params": list(enc.parameters()), "lr_mult": encoder_lr_mult, "name": "encoder"},
        {"params": rest, "name": "decoder"},
    ]


def build_optimizer(
    factory: Callable[[Any], torch.optim.Optimizer], net: nn.Module, encoder_lr_mult: float
) -> torch.optim.Optimizer:
    """Call ``factory`` on :func:`param_groups`, then scale each tagged group's LR (and
    ``initial_lr`` if set) by its ``lr_mult``, so schedulers built afterwards keep the ratio."""
    if encoder_lr_mult <= 0:
        raise SettingError(f"encoder_lr_mult must be > 0, got {encoder_lr_mult}; use freeze_encoder_epochs to freeze")
    opt = factory(param_groups(net, encoder_lr_mult))
    for group in opt.param_groups:
        mult = group.get("lr_mult", 1.0)
        if mult != 1.0:
            group["lr"] = group["lr"] * mult
            if "initial_lr" in group:
                group["initial_lr"] = group["initial_lr"] * mult
    return opt


def group_lrs(opt: torch.optim.Optimizer) -> dict[str, float]:
    """``{group name: lr}`` (unnamed groups as ``group<i>``)."""
    return {g.get("name", f"group{i}"): float(g["lr"]) for i, g in enumerate(opt.param_groups)}
