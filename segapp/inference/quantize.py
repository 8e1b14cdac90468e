"""Static int8 quantisation of an exported ONNX model, kept only where it holds the masks.

ONNX Runtime's ``quantize_static`` (QDQ format, uint8 activations, int8 per-channel weights,
min-max calibration) runs on the *segmentation path* of the exported graph: the nodes that
``logits`` depends on through the image's values. Three kinds of node stay fp32:

- the trust head (pooling of the features, Mahalanobis distance, the NaN placeholder of a member
  without statistics), so ``ood`` and ``features_k`` keep their meaning and NaNs never reach the
  calibration ranges;
- the shape arithmetic of "same" padding (EfficientNet's ``Shape -> Div -> Ceil -> Pad``): it is
  float maths on sizes, and quantising it pads by the wrong amount;
- the head convolution and the nodes between it and ``logits`` (gather, concat), so the logits
  are never rounded to 8 bits (a 1-channel convolution: it costs next to nothing).

Calibration images come from a folder of training images, preprocessed exactly as inference does
(:func:`segapp.io.preprocess` with the model's spec). Every 4th image is held out: it is never used
for calibration; fp32 and int8 ONNX Runtime both predict it and the int8 model is kept only when
the mean per-image Dice of its masks against the fp32 masks is at least :data:`MIN_MEAN_DICE`
(and, for a model with OOD statistics, the OOD ratios move by at most :data:`MAX_OOD_DIFF`). Two
scopes are tried in turn: every layer of the path int8, then the decoder only (the encoder, whose
output gives the pooled features, stays fp32). When neither holds, nothing is written and a
:class:`QuantizeError` names the measured Dice, the bound and the fix.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segapp.errors import UserError
from segapp.inference.checkpoint import ONNX_META_KEY
from segapp.io import IMAGE_EXTENSIONS, PreprocessSpec, ReadError, atomic_write, preprocess, read_image

MIN_MEAN_DICE = 0.995  # int8 masks vs fp32 masks, per-image Dice on the held-out check images:
# the one-sided 95 % lower confidence bound of the mean (mean - 1.645 SE) must reach it. The
# plain mean of 16 check images passed at 0.9959 for an int8 model whose masks scored 0.9913 vs
# fp32 over the 900 Kvasir images (bench/predict_bench.py): a small sample's mean alone is not enough.
MIN_CHECK_IMAGES = 30  # fewer held-out images cannot bound the mean tightly enough: refused
MAX_OOD_DIFF = 0.05  # largest change of an OOD ratio (1 = the validation threshold) int8 may make
CHECK_EVERY = 4  # every 4th selected image checks, the others calibrate
MIN_IMAGES = 8  # readable images needed: at least 2 check and 6 calibration images
DEFAULT_CALIBRATION_COUNT = 96  # and 32 held-out check images (every 4th of 128 picked)
BATCH = 8
FORMAT = "int8-static-qdq"
SCOPES = ("full", "decoder")  # tried in this order; the first that holds the masks is kept
SCOPE_DOC = {"full": "every layer int8", "decoder": "decoder int8, encoder fp32"}
CONV_OPS = ("Conv", "ConvTranspose")


class QuantizeError(UserError):
    """int8 quantisation cannot be done or would change the masks; the message says the fix."""


@dataclass
class CalibrationSet:
    """Preprocessed images (``N x C x H x W`` float32) from one folder, split in two."""

    folder: Path
    calibration: np.ndarray
    check: np.ndarray
    unreadable: int = 0


@dataclass
class Comparison:
    """int8 against fp32 on the check images."""

    mean_dice: float
    min_dice: float
    max_prob_diff: float
    max_ood_diff: float | None
    lower_dice: float = 1.0  # one-sided 95 % lower confidence bound of the mean Dice
    n: int = 0

    def holds(self) -> bool:
        """Enough check images, the mean Dice's lower bound and the OOD ratios within the bounds."""
        ood_ok = self.max_ood_diff is None or self.max_ood_diff <= MAX_OOD_DIFF
        return self.n >= MIN_CHECK_IMAGES and self.lower_dice >= MIN_MEAN_DICE and ood_ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean_dice_vs_fp32": round(self.mean_dice, 5),
            "mean_dice_lower_95": round(self.lower_dice, 5),
            "min_dice_vs_fp32": round(self.min_dice, 5),
            "max_prob_diff": round(self.max_prob_diff, 5),
            "max_ood_diff": None if self.max_ood_diff is None else round(self.max_ood_diff, 5),
        }


@dataclass
class GraphParts:
    """Node names of an exported graph: what may be quantised and what is the encoder."""

    segmentation: set[str]  # data nodes that logits depends on, minus the head conv and what follows
    encoder: set[str]  # those the pooled features also depend on
    tensors: set[str] = field(default_factory=set)  # inputs and outputs of the segmentation nodes


# --- calibration images ---------------------------------------------------------------------


def image_files(folder: str | Path) -> tuple[Path, list[Path]]:
    """The image folder (``DIR/images`` when DIR has one, as in segapp's data layout, so masks are
    never read as images) and its image files, recursively, sorted by relative path.

    Raises:
        QuantizeError: a missing folder, or one without image files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise QuantizeError(
            f"--calibration {folder}: expected a folder of training images, got "
            f"{'a file' if folder.exists() else 'nothing there'}; fix: pass the training images' folder"
        )
    if (folder / "images").is_dir():
        folder = folder / "images"
    files = sorted(
        (p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(IMAGE_EXTENSIONS)),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not files:
        raise QuantizeError(
            f"--calibration {folder}: expected training images ({', '.join(IMAGE_EXTENSIONS)}), found none; "
            "fix: pass the folder that holds the training images"
        )
    return folder, files


def pick(files: list[Path], count: int) -> tuple[list[Path], list[Path]]:
    """``(calibration, check)``: about ``count`` calibration images spread evenly over ``files``
    plus one check image for every 3 of them (every 4th pick)."""
    total = min(len(files), max(MIN_IMAGES, round(count * CHECK_EVERY / (CHECK_EVERY - 1))))
    chosen = [files[i * len(files) // total] for i in range(total)]
    check = chosen[CHECK_EVERY - 1 :: CHECK_EVERY]
    held = set(check)
    return [p for p in chosen if p not in held], check


def _read(paths: list[Path], spec: PreprocessSpec) -> tuple[list[np.ndarray], int]:
    """Preprocessed inputs of the readable files, and how many could not be read."""
    out, bad = [], 0
    for p in paths:
        try:
            out.append(preprocess(read_image(p), spec))
        except (ReadError, ValueError, OSError):
            bad += 1
    return out, bad


def check_calibration(folder: str | Path, count: int) -> tuple[Path, list[Path]]:
    """:func:`image_files` of ``folder`` after checking ``count`` (cheap: run before the checkpoints load).

    Raises:
        QuantizeError: a count under ``MIN_IMAGES - 2``, a missing folder, or one without image files.
    """
    if count < MIN_IMAGES - 2:
        raise QuantizeError(
            f"--calibration-count: expected at least {MIN_IMAGES - 2}, got {count}; "
            f"fix: --calibration-count {DEFAULT_CALIBRATION_COUNT} (the default)"
        )
    return image_files(folder)


def load_calibration(
    folder: str | Path, spec: PreprocessSpec, count: int = DEFAULT_CALIBRATION_COUNT
) -> CalibrationSet:
    """Read and preprocess the calibration and check images of ``folder`` for ``spec``.

    Raises:
        QuantizeError: a bad folder or count, or fewer than :data:`MIN_IMAGES` readable images.
    """
    folder, files = check_calibration(folder, count)
    calib_files, check_files = pick(files, count)
    calib, bad_calib = _read(calib_files, spec)
    check, bad_check = _read(check_files, spec)
    if len(calib) + len(check) < MIN_IMAGES or len(check) < 2:
        raise QuantizeError(
            f"--calibration {folder}: expected at least {MIN_IMAGES} readable training images, "
            f"got {len(calib) + len(check)} of {len(calib_files) + len(check_files)} tried ({len(files)} found); "
            "fix: pass a folder with more training images"
        )
    return CalibrationSet(folder, np.stack(calib), np.stack(check), bad_calib + bad_check)


# --- the graph ------------------------------------------------------------------------------


def _ancestors(nodes: list[Any], outputs: list[str]) -> set[str]:
    """Names of the nodes that ``outputs`` depend on."""
    producer = {o: n for n in nodes for o in n.output}
    seen: set[str] = set()
    stack = list(outputs)
    while stack:
        node = producer.get(stack.pop())
        if node is not None and node.name not in seen:
            seen.add(node.name)
            stack.extend(node.input)
    return seen


def _data_nodes(nodes: list[Any], image: str) -> set[str]:
    """Nodes whose output depends on the image's values (not only on its shape); nodes are in
    topological order, as ONNX requires."""
    data, names = {image}, set()
    for n in nodes:
        if n.op_type != "Shape" and any(i in data for i in n.input):
            names.add(n.name)
            data.update(n.output)
    return names


def _head(nodes: list[Any], output: str) -> set[str]:
    """The last convolutions that make ``output`` and the nodes after them (ONNX Runtime quantises a
    quantised convolution's output too, so the head convolution itself stays fp32)."""
    producer = {o: n for n in nodes for o in n.output}
    seen: set[str] = set()
    stack = [output]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and node.name not in seen:
            seen.add(node.name)
            if node.op_type not in CONV_OPS:
                stack.extend(node.input)
    return seen


def graph_parts(model: Any) -> GraphParts:
    """Split an exported segapp graph (input ``image``; outputs ``logits``, ``ood``, ``features_k``)."""
    nodes = list(model.graph.node)
    image = model.graph.input[0].name
    data = _data_nodes(nodes, image)
    seg = (_ancestors(nodes, ["logits"]) & data) - _head(nodes, "logits")
    features = [o.name for o in model.graph.output if o.name.startswith("features_")]
    encoder = _ancestors(nodes, features) & seg
    tensors = {t for n in nodes if n.name in seg for t in (*n.input, *n.output)}
    return GraphParts(seg, encoder, tensors)


def excluded_nodes(model: Any, parts: GraphParts, scope: str) -> list[str]:
    """Names of the nodes left fp32 in ``scope`` (``full``: everything off the segmentation path;
    ``decoder``: the encoder too)."""
    quantised = parts.segmentation - (parts.encoder if scope == "decoder" else set())
    return [n.name for n in model.graph.node if n.name not in quantised]


# --- onnxruntime ----------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence onnxruntime.quantization's advice on the root logger and numpy's all-NaN warnings."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def session(path: str | Path) -> Any:
    """A CPU ONNX Runtime session with the engine's optimisation level, warnings off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class _Reader:
    """A CalibrationDataReader over ``N x C x H x W`` inputs, :data:`BATCH` at a time."""

    def __init__(self, name: str, inputs: np.ndarray) -> None:
        self.batches = iter([{name: inputs[i : i + BATCH]} for i in range(0, len(inputs), BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def calibrate(fp32: Path, parts: GraphParts, inputs: np.ndarray, work: Path) -> Path:
    """Min-max ranges of the segmentation tensors over ``inputs``, saved as an ONNX Runtime
    calibration cache (the trust head is cut off first: its NaN placeholder has no range)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorsData, create_calibrator, save_tensors_data

    seg_model = work / "segmentation.onnx"
    image = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    onnx.utils.extract_model(str(fp32), str(seg_model), [image], ["logits"])
    with _quiet():
        calibrator = create_calibrator(seg_model, [], augmented_model_path=str(work / "augmented.onnx"))
        calibrator.collect_data(_Reader(image, inputs))
        ranges = calibrator.compute_data()
    kept = {
        k: v for k, v in ranges.data.items() if k in parts.tensors and np.all(np.isfinite(np.asarray(v.range_value)))
    }
    cache = work / "calibration.json"
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, kept), cache)
    return cache


def quantize_scope(fp32: Path, out: Path, cache: Path, exclude: list[str]) -> None:
    """Write the QDQ model of ``fp32`` to ``out`` with the nodes ``exclude`` left fp32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with _quiet():
        quantize_static(
            str(fp32),
            str(out),
            None,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=str(cache),
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _predict(sess: Any, inputs: np.ndarray, has_ood: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Ensemble probability ``N x H x W`` (mean of the members' sigmoids, as the predictor) and OOD ratios."""
    name = sess.get_inputs()[0].name
    wanted = ["logits", "ood"] if has_ood else ["logits"]
    outs = [sess.run(wanted, {name: inputs[i : i + BATCH]}) for i in range(0, len(inputs), BATCH)]
    probs = np.concatenate([_sigmoid(o[0].astype(np.float64)).mean(axis=1) for o in outs])
    return probs, (np.concatenate([o[1] for o in outs]) if has_ood else None)


def compare(
    fp32: Any, int8: Any, inputs: np.ndarray, threshold: float, has_ood: bool, reference: tuple | None = None
) -> Comparison:
    """Masks (``probability > threshold``) and OOD ratios of ``int8`` against ``fp32`` on ``inputs``.

    ``reference``: fp32's ``(probs, ood)`` when already computed.
    """
    from segapp.eval.metrics import overlap_scores

    p32, o32 = reference if reference is not None else _predict(fp32, inputs, has_ood)
    p8, o8 = _predict(int8, inputs, has_ood)
    dice = [overlap_scores(a > threshold, b > threshold)["dice"] for a, b in zip(p8, p32, strict=True)]
    ood = None
    if has_ood and o32 is not None and o8 is not None:
        both = np.isfinite(o32) & np.isfinite(o8)
        ood = float(np.abs(o32 - o8)[both].max()) if both.any() else 0.0
    n = len(dice)
    se = float(np.std(dice, ddof=1) / np.sqrt(n)) if n > 1 else 1.0
    mean = float(np.mean(dice))
    return Comparison(mean, float(np.min(dice)), float(np.abs(p32 - p8).max()), ood, mean - 1.645 * se, n)


# --- the whole step -------------------------------------------------------------------------


def _finish(int8: Path, out: Path, block: dict[str, Any]) -> None:
    """Drop initializers nothing reads (Clip bounds of removed activations: ONNX Runtime warns
    about each), set the ``segapp`` metadata property and write ``out`` atomically."""
    import onnx

    model = onnx.load(str(int8))
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    props = [p for p in model.metadata_props if p.key != ONNX_META_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    prop = model.metadata_props.add()
    prop.key, prop.value = ONNX_META_KEY, json.dumps(block)
    with atomic_write(out, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))


def _machine() -> dict[str, Any]:
    from segapp.machine import cpu_flags, cpu_model

    flags = cpu_flags()
    return {"cpu": cpu_model(), "vnni": bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)}


def refusal(tried: dict[str, Comparison], n_check: int, folder: Path) -> str:
    """The one-line refusal: what was measured, the bound, the fix."""
    got = ", ".join(
        f"{c.mean_dice:.4f}, lower 95 % bound {c.lower_dice:.4f} ({SCOPE_DOC[s]})"
        + (
            f" with OOD ratios moved by {c.max_ood_diff:.3f}"
            if c.max_ood_diff and c.max_ood_diff > MAX_OOD_DIFF
            else ""
        )
        for s, c in tried.items()
    )
    return (
        f"int8 would change the masks: mean Dice vs fp32 {got} on {n_check} held-out images from {folder}; "
        f"expected the lower bound >= {MIN_MEAN_DICE} on at least {MIN_CHECK_IMAGES} images (and OOD ratios "
        f"within {MAX_OOD_DIFF}); no int8 model written; "
        "fix: use the fp32 export (drop --quantize), or calibrate with more or other training images "
        "(--calibration-count, another --calibration folder)"
    )


def quantize_onnx(fp32: str | Path, out: str | Path, block: dict[str, Any], images: CalibrationSet) -> dict[str, Any]:
    """Quantise the exported ``fp32`` model to ``out`` (with ``block`` plus its ``quantization``
    entry as metadata), trying :data:`SCOPES` in turn.

    Returns:
        The ``quantization`` block written.

    Raises:
        QuantizeError: when no scope holds the masks (nothing is written).
    """
    import onnx
    import onnxruntime as ort

    fp32, out = Path(fp32), Path(out)
    model = onnx.load(str(fp32))
    parts = graph_parts(model)
    has_ood = bool(block.get("has_ood"))
    ref_sess = session(fp32)
    reference = _predict(ref_sess, images.check, has_ood)
    tried: dict[str, Comparison] = {}
    with tempfile.TemporaryDirectory(prefix="segapp-int8-") as tmp:
        work = Path(tmp)
        cache = calibrate(fp32, parts, images.calibration, work)
        for scope in SCOPES:
            if scope == "decoder" and not (parts.segmentation - parts.encoder):
                continue
            exclude = excluded_nodes(model, parts, scope)
            candidate = work / f"{scope}.onnx"
            quantize_scope(fp32, candidate, cache, exclude)
            result = compare(ref_sess, session(candidate), images.check, float(block["threshold"]), has_ood, reference)
            tried[scope] = result
            if result.holds():
                quant = {
                    "format": FORMAT,
                    "scope": scope,
                    "scope_doc": SCOPE_DOC[scope],
                    "calibration_dir": str(images.folder.resolve()),
                    "calibration_images": len(images.calibration),
                    "check_images": len(images.check),
                    "unreadable_images": images.unreadable,
                    **result.to_dict(),
                    "min_mean_dice": MIN_MEAN_DICE,
                    "min_check_images": MIN_CHECK_IMAGES,
                    "max_ood_diff_allowed": MAX_OOD_DIFF,
                    "tried": {s: c.to_dict() for s, c in tried.items()},
                    "activations": "uint8 per-tensor (min-max)",
                    "weights": "int8 per-channel",
                    "onnxruntime": ort.__version__,
                    "checked_on": _machine(),
                }
                _finish(candidate, out, {**block, "quantization": quant})
                return quant
    raise QuantizeError(refusal(tried, len(images.check), images.folder))


def summary(quant: dict[str, Any]) -> str:
    """One line for the console."""
    return (
        f"int8 ({quant['scope_doc']}): mean Dice vs fp32 {quant['mean_dice_vs_fp32']:.4f} "
        f"(min {quant['min_dice_vs_fp32']:.4f}, bound {quant['min_mean_dice']}) on {quant['check_images']} "
        f"held-out images, max probability difference {quant['max_prob_diff']:.3f}; calibrated on "
        f"{quant['calibration_images']} images from {quant['calibration_dir']}"
    )
