"""Load a segapp checkpoint safely (``weights_only``) and rebuild its net without Lightning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from segapp.io import PreprocessSpec
from segapp.nets import create_net


class CheckpointError(ValueError):
    """The checkpoint is missing, unsafe to load, or lacks segapp's metadata block."""


def read_meta(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return ``(ckpt["segapp"], net state dict)`` loaded with ``weights_only=True``.

    Raises:
        CheckpointError: naming the file and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; expected a .ckpt written by `segapp fit`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot load {path} safely (weights_only=True): {e}") from e
    meta = ckpt.get("segapp") if isinstance(ckpt, dict) else None
    if not meta or not meta.get("preprocess"):
        raise CheckpointError(
            f"{path} has no segapp metadata block (ckpt['segapp'] with net and preprocess); "
            "expected a checkpoint written by `segapp fit`"
        )
    state = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    return meta, state


def load_net(path: str | Path) -> tuple[nn.Module, PreprocessSpec, float, dict[str, Any]]:
    """Rebuild the trained net (eval mode, CPU) with its preprocessing and threshold."""
    meta, state = read_meta(path)
    net = create_net(meta["net"]["name"], **meta["net"]["kwargs"])
    net.load_state_dict(state)
    net.eval()
    return net, PreprocessSpec.from_dict(meta["preprocess"]), float(meta.get("threshold", 0.5)), meta
