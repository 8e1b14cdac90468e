"""The Python API: masks and probabilities at each image's original resolution.

``Predictor`` wraps an engine (torch checkpoint or ONNX model) with the options users set on
the command line: threshold, test-time flips, resize or tiled mode and mask clean-up. Folder runs
live in :mod:`segapp.inference.folder`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from segapp.errors import check_choice, check_range
from segapp.inference.choice import model_choice
from segapp.inference.engines import Device, Engine, Precision, create_engine
from segapp.inference.postprocess import clean_mask, upsample
from segapp.inference.tiling import sliding_window
from segapp.inference.trust import (
    TrustRules,
    agreement,
    binary_entropy,
    expected_dice,
    input_checks,
    uncertainty_score,
)
from segapp.io import PreprocessSpec, preprocess
from segapp.io.preprocess import resize_array

Tta = Literal["none", "flip", "flip4"]
Mode = Literal["resize", "tile"]


@dataclass
class FrameResult:
    """One frame's prediction at its original resolution.

    Attributes:
        probs: Calibrated probabilities (temperature-scaled; what reports and maps show).
        mask: The mask: uncalibrated mean probability > threshold, then clean-up, so the
            temperature never changes it.
        components: Connected components kept.
        signals: ``uncertainty``, ``est_dice``, ``agreement`` and ``ood_score`` (see
            :mod:`segapp.inference.trust`; ``""`` where not available).
    """

    probs: np.ndarray
    mask: np.ndarray
    components: int
    signals: dict[str, Any]
    entropy: np.ndarray | None = None

    def uncertainty_map(self) -> np.ndarray:
        """Per-pixel binary entropy (bits) of the calibrated probabilities (computed once)."""
        if self.entropy is None:
            self.entropy = binary_entropy(self.probs)
        return self.entropy


TTA_FLIPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "none": ((),),
    "flip": ((), (-1,)),
    "flip4": ((), (-1,), (-2,), (-2, -1)),
}


def prepare_input(image: np.ndarray, spec: PreprocessSpec, mode: str = "resize") -> np.ndarray:
    """Raw image -> network input: :func:`segapp.io.preprocess` at ``spec.size`` (resize mode)
    or at the image's own size (tile mode); the same function training validates with."""
    if mode == "resize":
        return preprocess(image, spec)
    return preprocess(image, replace(spec, size=tuple(image.shape[:2])))


@dataclass
class Predictor:
    """Run an engine on raw images (``H x W x C``, any dtype) and return full-resolution outputs.

    Args:
        engine: A :class:`~segapp.inference.engines.Engine` (see :func:`create_engine`).
        threshold: Probability above which a pixel is lesion (default: the model's).
        tta: ``none``, ``flip`` (identity + horizontal flip) or ``flip4`` (+ vertical and both);
            probabilities are averaged over the flips. ``None``: the model's choice
            (:mod:`segapp.inference.choice`; resize mode only), else ``none``.
        mode: ``resize`` (whole image to the training size, as trained) or ``tile``
            (Gaussian-blended windows of the training size over the image at native scale).
        keep_largest: Keep only the largest connected component. ``None``: the model's choice, else False.
        min_size: Remove components smaller than this many pixels (at original resolution).
        overlap: Window overlap in tile mode.
        batch_size: Images (resize) or windows (tile) per forward pass.
    """

    engine: Engine
    threshold: float | None = None
    tta: Tta | None = None
    mode: Mode = "resize"
    keep_largest: bool | None = None
    min_size: int = 0
    overlap: float = 0.25
    batch_size: int = 8
    last_seconds: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    from_model: tuple[str, ...] = field(default=(), init=False)
    """The options left unset that took the model's stored choice (``tta``, ``keep_largest``)."""

    def __post_init__(self) -> None:
        unset = self.tta is None or self.keep_largest is None
        chosen = model_choice(self.engine, self.mode) if unset else {}
        self.from_model = tuple(k for k in ("tta", "keep_largest") if getattr(self, k) is None and k in chosen)
        if self.tta is None:
            self.tta = chosen.get("tta", "none")
        if self.keep_largest is None:
            self.keep_largest = bool(chosen.get("keep_largest", False))
        check_choice("tta", self.tta, get_args(Tta))
        check_choice("mode", self.mode, get_args(Mode))
        check_range("batch_size", self.batch_size, 1)
        check_range("min_size", self.min_size, 0)
        if self.threshold is None:
            self.threshold = self.engine.threshold
        # --threshold 50 (a percentage) thresholded every probability to an empty mask, exit 0
        check_range("threshold", self.threshold, 0, 1, lo_open=True, hi_open=True, fix="a probability, e.g. 0.5")
        if self.mode == "tile" and self.engine.spec.size_policy == "resize":
            warnings.warn(
                "--mode tile: this model was trained on whole images resized to "
                f"{self.engine.spec.size[0]}x{self.engine.spec.size[1]}, not on native-scale patches; "
                "tiles show it structures at a scale it never saw. Prefer --mode resize unless you checked it.",
                stacklevel=2,
            )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | list[str | Path],
        threshold: float | None = None,
        device: Device = "auto",
        precision: Precision = "fp32",
        **options,
    ) -> Predictor:
        """Torch engine from a ``segapp fit`` checkpoint, several (an ensemble) or a ``segapp-cv`` folder."""
        return cls(create_engine(checkpoint=path, device=device, precision=precision), threshold=threshold, **options)

    @classmethod
    def from_onnx(
        cls, path: str | Path, threshold: float | None = None, device: Device = "auto", **options
    ) -> Predictor:
        """ONNX Runtime engine from a ``segapp-export --format onnx`` file (no torch needed)."""
        return cls(create_engine(model=path, device=device), threshold=threshold, **options)

    @property
    def spec(self) -> PreprocessSpec:
        """The model's preprocessing."""
        return self.engine.spec

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Raw ``H x W x C`` image -> ``C x h x w`` network input (the training preprocessing)."""
        return prepare_input(image, self.engine.spec, self.mode)

    def preparer(self) -> Callable[[np.ndarray], np.ndarray]:
        """A picklable :meth:`prepare` for loader workers (holds no engine)."""
        return partial(prepare_input, spec=self.engine.spec, mode=self.mode)

    @property
    def rules(self) -> TrustRules:
        """The model's review rules and temperature (neutral without a trust block)."""
        return TrustRules.from_meta(getattr(self.engine, "trust", None))

    @property
    def calibrated_threshold(self) -> float:
        """The threshold on the scale of the reported (calibrated) probabilities: ``sigmoid(logit(t) / T)``.

        Exact for one member without TTA (then ``probs > calibrated_threshold`` is the mask before
        clean-up); for an ensemble or TTA the mask thresholds the mean of uncalibrated
        probabilities, so this is the nearest single number, not an identity.
        """
        t = min(max(float(self.threshold), 1e-7), 1 - 1e-7)
        return float(1 / (1 + np.exp(-np.log(t / (1 - t)) / self.rules.temperature)))

    def checker(self) -> Callable[..., list[str]]:
        """A picklable raw-frame check for loader workers: blank, saturated, low-range (given the
        frame's ``depth_known``), grey for a colour model."""
        return partial(
            input_checks,
            in_channels=self.engine.spec.in_channels,
            trained_on_colour=self.rules.trained_on_colour,
            trained_on_low_range=self.rules.trained_on_low_range,
        )

    def _flip_passes(self, x: np.ndarray, fn: Callable[[np.ndarray], tuple[np.ndarray, Any]]) -> list[tuple]:
        """``[(unflipped fn output, side output)]`` per TTA flip; flips act on the last two axes."""
        outs = []
        for axes in TTA_FLIPS[self.tta]:
            y, side = fn(np.flip(x, axes).copy()) if axes else fn(x)
            outs.append((np.flip(y, axes) if axes else y, side))
        return outs

    def _probs_of_logits(self, logits: np.ndarray) -> np.ndarray:
        """``... x K x H x W`` logits -> ``... x 2K x H x W``: raw then calibrated probabilities."""
        t = self.rules.temperature
        return np.concatenate([_sigmoid(logits), _sigmoid(logits / t)], axis=-3)

    def _resize_pass(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.engine.run(batch)
        return self._probs_of_logits(out.logits), out.ood

    def _tile_pass(self, x: np.ndarray) -> tuple[np.ndarray, None]:
        fn = lambda tiles: self._probs_of_logits(self.engine.run(tiles).logits)  # noqa: E731
        return sliding_window(x, self.engine.spec.size, fn, overlap=self.overlap, batch_size=self.batch_size), None

    def _tile_ood(self, x: np.ndarray) -> np.ndarray | None:
        """Tile mode: the OOD ratio of the whole image at the training size (one extra pass)."""
        small = np.stack([resize_array(c, self.engine.spec.size) for c in x])[None]
        ood = self.engine.run(small.astype(np.float32)).ood
        return None if ood is None else ood[0]

    def _variants(self, inputs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per input: ``(V x 2K x h x w probabilities, K OOD ratios or None)``, V = TTA flips."""
        if self.mode == "tile":
            out = []
            for x in inputs:
                passes = self._flip_passes(x, self._tile_pass)
                out.append((np.stack([p for p, _ in passes]), self._tile_ood(x)))
            return out
        out = []
        for i in range(0, len(inputs), self.batch_size):
            passes = self._flip_passes(np.stack(inputs[i : i + self.batch_size]), self._resize_pass)
            stacked = np.stack([p for p, _ in passes], axis=1)  # N x V x 2K x h x w
            oods = [o for _, o in passes]
            ood = None if oods[0] is None else np.mean(oods, axis=0)  # N x K
            out.extend((stacked[n], None if ood is None else ood[n]) for n in range(len(stacked)))
        return out

    def _result(self, variants: np.ndarray, ood: np.ndarray | None, size: tuple[int, int]) -> FrameResult:
        k = variants.shape[1] // 2
        raw, cal = variants[:, :k], variants[:, k:]
        mask, comps = self.to_mask(upsample(raw.mean(axis=(0, 1)), size))
        q = upsample(cal.mean(axis=(0, 1)), size)
        entropy = binary_entropy(q)
        masks = [m for m in raw.reshape(-1, *raw.shape[-2:]) > self.threshold]
        ag = agreement(masks)
        signals = {
            "uncertainty": round(uncertainty_score(q, mask, entropy), 4),
            "est_dice": round(expected_dice(q, mask), 4),
            "agreement": "" if ag is None else round(ag, 4),
            "ood_score": "" if ood is None or np.isnan(ood).all() else round(float(np.nanmean(ood)), 4),
        }
        return FrameResult(probs=q, mask=mask, components=comps, signals=signals, entropy=entropy)

    def predict_prepared(self, inputs: list[np.ndarray], sizes: list[tuple[int, int]]) -> list[FrameResult]:
        """Prepared inputs (from :meth:`prepare`) -> one :class:`FrameResult` each, at the given sizes.

        :attr:`last_seconds` holds the ``forward`` and ``postprocess`` (mask, signals) time of the call.
        """
        t0 = time.perf_counter()
        variants = self.forward_prepared(inputs)
        t1 = time.perf_counter()
        results = self.results_of(variants, sizes)
        self.last_seconds = {"forward": t1 - t0, "postprocess": time.perf_counter() - t1}
        return results

    def forward_prepared(self, inputs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """The forward half of :meth:`predict_prepared` (the engine; for pipelined folder runs)."""
        return self._variants(inputs)

    def results_of(
        self, variants: list[tuple[np.ndarray, np.ndarray | None]], sizes: list[tuple[int, int]]
    ) -> list[FrameResult]:
        """The second half: masks at ``sizes`` and trust signals (numpy only; safe in another thread)."""
        return [self._result(v, o, s) for (v, o), s in zip(variants, sizes, strict=True)]

    def predict(self, image: np.ndarray) -> FrameResult:
        """``image`` (H x W x C, any dtype) -> mask, calibrated probabilities and trust signals."""
        return self.predict_prepared([self.prepare(image)], [tuple(image.shape[:2])])[0]

    def predict_probs(self, image: np.ndarray) -> np.ndarray:
        """``image`` -> float32 **uncalibrated** probabilities ``H x W`` (the scale ``threshold`` applies to)."""
        ((v, _),) = self._variants([self.prepare(image)])
        k = v.shape[1] // 2
        return upsample(v[:, :k].mean(axis=(0, 1)), tuple(image.shape[:2]))

    def to_mask(self, probs: np.ndarray) -> tuple[np.ndarray, int]:
        """Threshold and clean uncalibrated probabilities: ``(bool mask, connected components)``."""
        return clean_mask(probs > self.threshold, keep_largest=self.keep_largest, min_size=self.min_size)

    def predict_mask(self, image: np.ndarray) -> np.ndarray:
        """``image`` -> bool mask ``H x W`` at the image's resolution."""
        return self.predict(image).mask


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)
