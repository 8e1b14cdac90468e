"""Load a segapp checkpoint safely (``weights_only``) and rebuild its net without Lightning.

torch is imported inside the functions so that ``import segapp.inference`` works in the slim
ONNX Runtime container, which has no torch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segapp.errors import UserError
from segapp.io import PreprocessSpec
from segapp.io.archive import checkpoint_problem

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn


ONNX_META_KEY = "segapp"  # the ONNX metadata property that holds an exported model's segapp block


class CheckpointError(UserError, ValueError):
    """The checkpoint (or exported model) is missing, unsafe to load, or lacks segapp's metadata."""


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (recorded in ``run.json``)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_meta(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return ``(ckpt["segapp"], net state dict)`` loaded with ``weights_only=True``.

    Raises:
        CheckpointError: naming the file and what is wrong.
    """
    import torch

    path = Path(path)
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path}: {problem}; expected a .ckpt written by `segapp fit`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot load {path} safely (weights_only=True): {reason}") from e
    meta = ckpt.get("segapp") if isinstance(ckpt, dict) else None
    if not meta or not meta.get("preprocess"):
        raise CheckpointError(
            f"{path} has no segapp metadata block (ckpt['segapp'] with net and preprocess); "
            "expected a checkpoint written by `segapp fit`"
        )
    state = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    return meta, state


def load_net(path: str | Path) -> tuple[nn.Module, PreprocessSpec, float, dict[str, Any]]:
    """Rebuild the trained net (eval mode, CPU) with its preprocessing and threshold.

    Returns:
        ``(net, preprocess spec, threshold, metadata block)``.

    Raises:
        CheckpointError: unreadable checkpoint, or weights that do not fit the recorded net.
    """
    from segapp.nets import create_net

    meta, state = read_meta(path)
    try:
        net = create_net(meta["net"]["name"], **meta["net"]["kwargs"])
        net.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot rebuild the net from its metadata block: {e}") from e
    net.eval()
    return net, PreprocessSpec.from_dict(meta["preprocess"]), float(meta.get("threshold", 0.5)), meta


def add_block(path: str | Path, key: str, block: dict[str, Any]) -> None:
    """Write ``block`` into ``ckpt["segapp"][key]`` of the checkpoint at ``path``, atomically
    (the trust block, the inference choice: plain types, so ``weights_only`` loading keeps working)."""
    import torch

    from segapp.io import atomic_write

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["segapp"][key] = block
    with atomic_write(Path(path), suffix=".ckpt") as tmp:
        torch.save(ckpt, tmp)
