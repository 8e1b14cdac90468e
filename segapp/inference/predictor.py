"""Predict lesion masks for a folder of images, at each image's original resolution."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from segapp.inference.checkpoint import load_net
from segapp.io import IMAGE_EXTENSIONS, PreprocessSpec, ReadError, atomic_write, preprocess, read_image, write_mask_png

CSV_FIELDS = ("input", "output", "status", "reason", "height", "width", "lesion_pixels", "lesion_fraction", "seconds")


def output_name(rel: Path) -> Path:
    """Mask path for an input path relative to the input root: ``a/b.jpg`` -> ``a/b.jpg.mask.png``.

    Keeping the full file name makes ``x.png`` and ``x.tiff`` map to different outputs.
    """
    return rel.with_name(rel.name + ".mask.png")


@dataclass
class Predictor:
    """Runs a trained net on raw images; ``predict_probs`` returns probabilities at original size."""

    net: torch.nn.Module
    spec: PreprocessSpec
    threshold: float = 0.5

    @classmethod
    def from_checkpoint(cls, path: str | Path, threshold: float | None = None) -> "Predictor":
        net, spec, t, _ = load_net(path)
        return cls(net=net, spec=spec, threshold=t if threshold is None else threshold)

    @torch.inference_mode()
    def predict_probs(self, image: np.ndarray) -> np.ndarray:
        """``image`` (H x W x C, any dtype) -> float32 probabilities ``H x W``."""
        x = torch.from_numpy(preprocess(image, self.spec))[None]
        probs = torch.sigmoid(self.net(x).float())[0, 0].numpy()
        h, w = image.shape[:2]
        return cv2.resize(probs, (w, h), interpolation=cv2.INTER_LINEAR)

    def predict_mask(self, image: np.ndarray) -> np.ndarray:
        return self.predict_probs(image) > self.threshold

    def predict_folder(self, input_dir: str | Path, output_dir: str | Path) -> dict[str, int]:
        """Write ``<output>/<rel>.mask.png`` for every image under ``input_dir`` and ``predictions.csv``.

        Unreadable files become ``error`` rows; the run goes on. Returns counts ``ok``/``error``.
        """
        input_dir, output_dir = Path(input_dir).resolve(), Path(output_dir).resolve()
        if output_dir == input_dir or input_dir in output_dir.parents:
            raise ValueError(f"output folder {output_dir} is inside the input folder {input_dir}; choose another")
        files = sorted(p for p in input_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        rows, counts = [], {"ok": 0, "error": 0}
        for f in files:
            rel = f.relative_to(input_dir)
            t0 = time.perf_counter()
            row = {"input": rel.as_posix(), "output": "", "status": "ok", "reason": ""}
            try:
                img = read_image(f)
                mask = self.predict_mask(img)
                write_mask_png(output_dir / output_name(rel), mask)
                row.update(output=output_name(rel).as_posix(), height=mask.shape[0], width=mask.shape[1],
                           lesion_pixels=int(mask.sum()), lesion_fraction=round(float(mask.mean()), 6))  # fmt: skip
            except ReadError as e:
                row.update(status="error", reason=e.reason)
            row["seconds"] = round(time.perf_counter() - t0, 4)
            counts[row["status"]] += 1
            rows.append(row)
        with atomic_write(output_dir / "predictions.csv") as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        return counts
