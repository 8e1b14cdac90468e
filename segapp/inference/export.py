"""Export a checkpoint's net to ONNX or TorchScript with its preprocessing metadata.

The checkpoint's ``segapp`` block (net spec, preprocessing, threshold, data fingerprint) goes
into the ONNX ``metadata_props`` under ``segapp`` (TorchScript: the extra file
``segapp.json``) and into a sidecar ``FILE.json``, so an exported model is self-describing.
Batch, height and width are dynamic axes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal, get_args

from segapp.errors import check_choice
from segapp.inference.checkpoint import file_sha256, load_net
from segapp.inference.engines import ONNX_META_KEY
from segapp.io import atomic_write

ExportFormat = Literal["onnx", "torchscript"]
META_KEYS = ("schema_version", "net", "preprocess", "threshold", "data_fingerprint", "versions")


def export_meta(meta: dict[str, Any], checkpoint: Path, fmt: str) -> dict[str, Any]:
    """The JSON block embedded in an exported model."""
    block = {k: meta.get(k) for k in META_KEYS}
    block.update(format=fmt, source_checkpoint=checkpoint.name, source_sha256=file_sha256(checkpoint))
    return block


def _export_onnx(net: Any, example: Any, out: Path, opset: int, block: dict[str, Any]) -> None:
    import onnx
    import torch

    axes = {0: "batch", 2: "height", 3: "width"}
    with atomic_write(out, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the input-size check
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
        )
        model = onnx.load(str(tmp))
        prop = model.metadata_props.add()
        prop.key, prop.value = ONNX_META_KEY, json.dumps(block)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))


def _export_torchscript(net: Any, example: Any, out: Path, block: dict[str, Any]) -> None:
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, example)
    with atomic_write(out, suffix=".pt") as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={"segapp.json": json.dumps(block)})


def export_model(checkpoint: str | Path, out: str | Path, fmt: ExportFormat = "onnx", opset: int = 17) -> Path:
    """Export ``checkpoint`` to ``out`` and write ``out.json`` beside it.

    Args:
        checkpoint: A ``segapp fit`` checkpoint (loaded with ``weights_only=True``).
        out: The exported file (``.onnx`` or ``.pt``).
        fmt: ``onnx`` or ``torchscript``.
        opset: ONNX opset version.

    Returns:
        The path written.

    Raises:
        SettingError: for an unknown format (a ValueError).
        CheckpointError: for an unreadable checkpoint.
    """
    import torch

    check_choice("format", fmt, get_args(ExportFormat))
    checkpoint, out = Path(checkpoint), Path(out)
    net, spec, _, meta = load_net(checkpoint)
    block = export_meta(meta, checkpoint, fmt)
    example = torch.zeros(1, spec.in_channels, *spec.size)
    if fmt == "onnx":
        _export_onnx(net, example, out, opset, block)
    else:
        _export_torchscript(net, example, out, block)
    with atomic_write(out.with_name(out.name + ".json"), suffix=".json") as tmp:
        tmp.write_text(json.dumps(block, indent=2))
    return out
