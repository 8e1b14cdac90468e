"""The Python API: masks and probabilities at each image's original resolution.

``Predictor`` wraps an engine (torch checkpoint or ONNX model) with the options users set on
the command line: threshold, test-time flips, resize or tiled mode and mask clean-up. Folder runs
live in :mod:`segapp.inference.folder`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from segapp.errors import check_choice, check_range
from segapp.inference.engines import Device, Engine, Precision, create_engine
from segapp.inference.postprocess import clean_mask, upsample
from segapp.io import PreprocessSpec, preprocess

Tta = Literal["none", "flip", "flip4"]
Mode = Literal["resize", "tile"]
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
            probabilities are averaged over the flips.
        mode: ``resize`` (whole image to the training size, as trained) or ``tile``
            (Gaussian-blended windows of the training size over the image at native scale).
        keep_largest: Keep only the largest connected component.
        min_size: Remove components smaller than this many pixels (at original resolution).
        overlap: Window overlap in tile mode.
        batch_size: Images (resize) or windows (tile) per forward pass.
    """

    engine: Engine
    threshold: float | None = None
    tta: Tta = "none"
    mode: Mode = "resize"
    keep_largest: bool = False
    min_size: int = 0
    overlap: float = 0.25
    batch_size: int = 8

    def __post_init__(self) -> None:
        check_choice("tta", self.tta, get_args(Tta))
        check_choice("mode", self.mode, get_args(Mode))
        check_range("batch_size", self.batch_size, 1)
        check_range("min_size", self.min_size, 0)
        if self.threshold is None:
            self.threshold = self.engine.threshold
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
        path: str | Path,
        threshold: float | None = None,
        device: Device = "auto",
        precision: Precision = "fp32",
        **options,
    ) -> Predictor:
        """Torch engine from a ``segapp fit`` checkpoint (``weights_only`` loading)."""
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

    def _tta_mean(self, x: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Mean over the TTA flips of ``unflip(fn(flip(x)))``; flips act on the last two (H, W) axes.

        Shape:
            ``x``: ``(..., C, H, W)``; ``fn(x)``: ``(..., H, W)`` probabilities.
        """
        flips = TTA_FLIPS[self.tta]
        acc: np.ndarray | None = None
        for axes in flips:
            p = np.flip(fn(np.flip(x, axes).copy()), axes) if axes else fn(x)
            if acc is None:
                acc = np.array(p, np.float32)  # a float32 copy, as the loops this replaces accumulated
            else:
                acc += p
        return acc / len(flips)

    def _batch_probs(self, batch: np.ndarray) -> np.ndarray:
        return self._tta_mean(batch, self.engine.probs)

    def _tile_probs(self, x: np.ndarray) -> np.ndarray:
        return self._tta_mean(x, lambda xi: self.engine.tile_probs(xi, self.overlap, self.batch_size))

    def probs_prepared(self, inputs: list[np.ndarray], sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """Prepared inputs (from :meth:`prepare`) -> probabilities at the given original sizes."""
        out: list[np.ndarray] = []
        if self.mode == "tile":
            return [upsample(self._tile_probs(x), s) for x, s in zip(inputs, sizes, strict=True)]
        for i in range(0, len(inputs), self.batch_size):
            probs = self._batch_probs(np.stack(inputs[i : i + self.batch_size]))
            out.extend(upsample(p, s) for p, s in zip(probs, sizes[i : i + self.batch_size], strict=True))
        return out

    def predict_probs(self, image: np.ndarray) -> np.ndarray:
        """``image`` (H x W x C, any dtype) -> float32 probabilities ``H x W``."""
        return self.probs_prepared([self.prepare(image)], [tuple(image.shape[:2])])[0]

    def to_mask(self, probs: np.ndarray) -> tuple[np.ndarray, int]:
        """Threshold and clean probabilities: ``(bool mask, connected components)``."""
        return clean_mask(probs > self.threshold, keep_largest=self.keep_largest, min_size=self.min_size)

    def predict_mask(self, image: np.ndarray) -> np.ndarray:
        """``image`` -> bool mask ``H x W`` at the image's resolution."""
        return self.to_mask(self.predict_probs(image))[0]
