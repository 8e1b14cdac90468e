"""Export one checkpoint, several (an ensemble) or a ``segapp-cv`` folder to ONNX, or one to TorchScript.

ONNX gets the whole :class:`~segapp.nets.trust.TrustNet`: one graph runs every member and
outputs ``logits`` (``N x K x H x W``, one channel per member), ``ood`` (``N x K``, each member's
distance from its training data over its validation threshold; zeros when the checkpoints have
no training statistics) and ``features_k`` (``N x D_k``, member k's pooled features), so the
container gets ensembles and trust signals from one file. The ``segapp`` block (preprocessing,
the ensemble's threshold and trust rules, each member's net, threshold and source hash, and
``outputs``: which output is which) goes into the ONNX ``metadata_props`` under ``segapp``
(TorchScript: the extra file ``segapp.json``) and into a sidecar ``FILE.json``. Batch, height
and width are dynamic axes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal, get_args

from segapp.errors import SettingError, check_choice
from segapp.inference.checkpoint import ONNX_META_KEY, file_sha256
from segapp.inference.ensemble import Members, load_members, rules_of
from segapp.io import atomic_write

ExportFormat = Literal["onnx", "torchscript"]
Quantize = Literal["int8"]
META_KEYS = ("schema_version", "net", "preprocess", "threshold", "data_fingerprint", "versions", "inference")


OUTPUTS_DOC = {
    "logits": "N x K x H x W: member k's logits in channel k (mean of sigmoid over K = the ensemble's probability)",
    "ood": "N x K: member k's Mahalanobis distance of pooled features over its validation threshold (> 1 = OOD)",
    "features_k": "N x D_k: member k's pooled bottleneck features (global average)",
}


def export_meta(meta: dict[str, Any], checkpoint: Path, fmt: str) -> dict[str, Any]:
    """The JSON block of one member (its checkpoint's metadata, without the trust tensors)."""
    block = {k: meta.get(k) for k in META_KEYS}
    block.update(format=fmt, source_checkpoint=checkpoint.name, source_sha256=file_sha256(checkpoint))
    block["trust"] = rules_of(meta.get("trust"))
    return block


def ensemble_meta(members: Members, fmt: str) -> dict[str, Any]:
    """The block of an exported model: the first member's keys, the ensemble's settings, every member."""
    blocks = [export_meta(m, p, fmt) for m, p in zip(members.metas, members.paths, strict=True)]
    first = {k: v for k, v in blocks[0].items() if k != "inference" or len(blocks) == 1}  # a member's own choice
    return {
        **first,
        "threshold": members.threshold,
        "trust": members.trust,
        "members": len(blocks),
        "member_blocks": blocks,
        "has_ood": any(s is not None for s in members.stats),
        "outputs": OUTPUTS_DOC,
        "source": members.source,
    }


def _export_onnx(net: Any, example: Any, out: Path, opset: int, block: dict[str, Any]) -> None:
    import onnx
    import torch

    axes = {0: "batch", 2: "height", 3: "width"}
    features = [f"features_{k}" for k in range(net.size)]
    with atomic_write(out, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the input-size check
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=["logits", "ood", *features],
            dynamic_axes={"image": axes, "logits": axes, "ood": {0: "batch"}, **{f: {0: "batch"} for f in features}},
        )
        model = onnx.load(str(tmp))
        prop = model.metadata_props.add()
        prop.key, prop.value = ONNX_META_KEY, json.dumps(block)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))


def torchscript_meta(block: dict[str, Any]) -> dict[str, Any]:
    """The block of a TorchScript export: the bare net returns one ``N x 1 x H x W`` tensor, not the
    ONNX graph's logits / ood / features (user code unpacking ``logits, ood, *f = model(x)`` split
    the batch instead, without an error), and what the caller applies itself is said."""
    return {
        **block,
        "has_ood": False,
        "outputs": {
            "logits": "N x 1 x H x W logits of the bare net: sigmoid, then `threshold`; not in the graph: the "
            "trust temperature, the OOD score, the stored inference choice (TTA, keep_largest), resizing back"
        },
    }


def _export_torchscript(net: Any, example: Any, out: Path, block: dict[str, Any]) -> None:
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, example)
    with atomic_write(out, suffix=".pt") as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={"segapp.json": json.dumps(block)})


def check_quantize(fmt: str, quantize: str | None, calibration: str | Path | None) -> None:
    """Refuse int8 for TorchScript or without calibration images (before any checkpoint is read).

    Raises:
        SettingError: naming what was given and the fix.
    """
    if quantize is None:
        if calibration is not None:
            raise SettingError(
                f"--calibration {calibration} is only used with --quantize int8; fix: add --quantize int8 or drop it"
            )
        return
    check_choice("quantize", quantize, get_args(Quantize))
    if fmt != "onnx":
        raise SettingError(f"--quantize {quantize} quantises an ONNX model, got --format {fmt}; fix: --format onnx")
    if calibration is None:
        raise SettingError(
            f"--quantize {quantize} needs calibration images, got no --calibration; fix: add "
            "--calibration DIR with training images (say data/train/images), or drop --quantize for fp32"
        )


def _export_int8(net: Any, example: Any, out: Path, opset: int, block: dict[str, Any], images: Any) -> dict[str, Any]:
    """Export fp32 to a temporary file, then write the int8 model that holds the masks to ``out``."""
    import tempfile

    from segapp.inference.quantize import quantize_onnx

    with tempfile.TemporaryDirectory(prefix="segapp-export-") as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        _export_onnx(net, example, fp32, opset, block)
        return quantize_onnx(fp32, out, block, images)


def export_model(
    checkpoint: str | Path | list[str | Path],
    out: str | Path,
    fmt: ExportFormat = "onnx",
    opset: int = 17,
    quantize: Quantize | None = None,
    calibration: str | Path | None = None,
    calibration_count: int = 96,
) -> Path:
    """Export ``checkpoint`` (one, several, or a cv folder) to ``out`` and write ``out.json`` beside it.

    Args:
        checkpoint: ``segapp fit`` checkpoint(s) (loaded with ``weights_only=True``) or a
            ``segapp-cv --out`` folder; several make one ensemble graph (ONNX only).
        out: The exported file (``.onnx`` or ``.pt``).
        fmt: ``onnx`` or ``torchscript`` (the net of one checkpoint: its logits only).
        opset: ONNX opset version.
        quantize: ``int8``: ONNX Runtime static quantisation, kept only where it holds the masks
            (see :mod:`segapp.inference.quantize`); None: fp32.
        calibration: With ``quantize``: a folder of training images (``DIR/images`` when it has one).
        calibration_count: How many of them calibrate (a third more are held out to check).

    Returns:
        The path written.

    Raises:
        SettingError: for an unknown format (a ValueError), TorchScript of several members, or
            ``quantize`` without ``calibration`` or with TorchScript.
        CheckpointError: for an unreadable checkpoint or members that do not fit together.
        QuantizeError: a calibration folder without enough readable images, or int8 masks too far
            from fp32's (nothing is written then).
    """
    import torch

    from segapp.nets.trust import TrustNet

    check_choice("format", fmt, get_args(ExportFormat))
    check_quantize(fmt, quantize, calibration)
    if quantize is not None:
        from segapp.inference.quantize import check_calibration

        check_calibration(calibration, calibration_count)  # refused before the checkpoints load
    paths = list(checkpoint) if isinstance(checkpoint, list | tuple) else [checkpoint]
    members, out = load_members(paths), Path(out)
    block = ensemble_meta(members, fmt)
    example = torch.zeros(1, members.spec.in_channels, *members.spec.size)
    if quantize is not None:
        from segapp.inference.quantize import load_calibration

        images = load_calibration(calibration, members.spec, calibration_count)
        net = TrustNet(members.nets, members.stats, members.inputs).eval()
        block = {**block, "quantization": _export_int8(net, example, out, opset, block, images)}
    elif fmt == "onnx":
        _export_onnx(TrustNet(members.nets, members.stats, members.inputs).eval(), example, out, opset, block)
    elif len(members.nets) > 1:
        raise SettingError(
            f"--format torchscript exports one net, got {len(members.nets)} members; fix: export an ensemble "
            "with --format onnx (one graph with every member and the trust outputs)"
        )
    else:
        block = torchscript_meta(block)
        _export_torchscript(members.nets[0], example, out, block)
    with atomic_write(out.with_name(out.name + ".json"), suffix=".json") as tmp:
        tmp.write_text(json.dumps(block, indent=2))
    return out
