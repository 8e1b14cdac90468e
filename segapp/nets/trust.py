"""One module for every inference path: K member nets, their logits, pooled features and OOD ratios.

:class:`TrustNet` is what the torch engine runs and what ``segapp-export --format onnx`` writes,
so a one-member model, a fold ensemble and the container all compute the trust signals the same
way. Each member's pooled feature vector is the global average of its :func:`feature_module`'s
output (the bottleneck of a scratch U-Net, the deepest encoder stage of an SMP U-Net); its
out-of-distribution ratio is the Mahalanobis distance of that vector from the training set's
mean under the stored (shrunk) covariance, divided by the distance that the validation split
stays under (``ood_scale``), so a ratio above 1 means "further than the validation scans went".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

#: the names of :class:`TrustNet`'s outputs, in order (feature outputs follow, one per member)
OUTPUT_NAMES = ("logits", "ood")


def feature_module(net: nn.Module) -> nn.Module:
    """The module whose output, averaged over space, is the net's feature vector.

    Raises:
        TypeError: a net without ``feature_module()`` (every registered segapp net has one).
    """
    get = getattr(net, "feature_module", None)
    if get is None:
        raise TypeError(f"{type(net).__name__} has no feature_module(); add one returning its bottleneck module")
    return get()


def pooled(output: Any) -> Tensor:
    """Global average over space of a feature map (the deepest one when ``output`` is a list)."""
    fmap = output[-1] if isinstance(output, list | tuple) else output
    return fmap.float().mean(dim=(-2, -1))


def forward_with_features(net: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(logits N x 1 x H x W, pooled features N x D)`` from one forward pass (a forward hook)."""
    captured: list[Any] = []
    handle = feature_module(net).register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        logits = net(x)
    finally:
        handle.remove()
    return logits, pooled(captured[-1])


def mahalanobis(features: Tensor, mean: Tensor, precision: Tensor) -> Tensor:
    """Distance of each row of ``features`` (N x D) from ``mean`` under ``precision`` (D x D)."""
    diff = features - mean
    return ((diff @ precision) * diff).sum(-1).clamp_min(0).sqrt()


class TrustNet(nn.Module):
    """K member nets on one batch.

    Args:
        nets: The members (same input size and preprocessing; checked by the caller).
        stats: Per member ``{"mean": D, "precision": D x D, "ood_scale": float}`` or None. A
            member without them outputs NaN as its OOD ratio; :attr:`has_ood` says whether any has.
        inputs: Per member ``(scale, shift)`` (C values each) that turn the shared input (member
            0's normalisation) into the member's own: ``x * scale + shift`` (folds normalise with
            their own training split's statistics); None: every member takes the input as is.

    Shape:
        input ``(N, C, H, W)`` -> ``logits (N, K, H, W)``, ``ood (N, K)`` (ratio; NaN for a member
        without stats), then one ``(N, D_k)`` pooled-feature tensor per member.
    """

    def __init__(
        self,
        nets: Sequence[nn.Module],
        stats: Sequence[dict[str, Any] | None],
        inputs: Sequence[tuple[Sequence[float], Sequence[float]]] | None = None,
    ) -> None:
        super().__init__()
        if len(nets) != len(stats) or not nets:
            raise ValueError(f"TrustNet needs one stats entry per member, got {len(nets)} nets and {len(stats)}")
        self.members = nn.ModuleList(nets)
        self.has_ood = any(s is not None for s in stats)
        self.with_stats = [s is not None for s in stats]
        self.adapt = [False] * len(nets)
        for k, (scale, shift) in enumerate(inputs or []):
            if any(abs(a - 1) > 1e-7 for a in scale) or any(abs(b) > 1e-7 for b in shift):
                self.adapt[k] = True
                self.register_buffer(f"in_scale_{k}", torch.tensor(scale, dtype=torch.float32).view(1, -1, 1, 1))
                self.register_buffer(f"in_shift_{k}", torch.tensor(shift, dtype=torch.float32).view(1, -1, 1, 1))
        for k, s in enumerate(stats):
            if s is None:
                continue
            self.register_buffer(f"mean_{k}", torch.as_tensor(s["mean"], dtype=torch.float32))
            self.register_buffer(f"precision_{k}", torch.as_tensor(s["precision"], dtype=torch.float32))
            self.register_buffer(f"scale_{k}", torch.tensor(float(s["ood_scale"]), dtype=torch.float32))

    @property
    def size(self) -> int:
        """Number of members K."""
        return len(self.members)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        logits, oods, feats = [], [], []
        for k, net in enumerate(self.members):
            xk = x * getattr(self, f"in_scale_{k}") + getattr(self, f"in_shift_{k}") if self.adapt[k] else x
            y, f = forward_with_features(net, xk)
            logits.append(y[:, 0].float())
            feats.append(f)
            if self.with_stats[k]:
                with torch.autocast(device_type=f.device.type, enabled=False):  # a D x D product: fp32 always
                    d = mahalanobis(f.float(), getattr(self, f"mean_{k}"), getattr(self, f"precision_{k}"))
                oods.append(d / getattr(self, f"scale_{k}"))
            else:
                oods.append(f[:, 0] * 0.0 + float("nan"))
        return (torch.stack(logits, 1), torch.stack(oods, 1), *feats)
