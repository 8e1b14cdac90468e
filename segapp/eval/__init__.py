"""Evaluation: per-image and dataset metrics, empty-mask policy, reports (no Lightning here).

Names are imported when first used (PEP 562), so ``import segapp.eval.calibration`` stays numpy
only: inference imports :func:`uncertainty_score` in images that have no OpenCV, matplotlib or scipy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "METRIC_COLUMNS": "segapp.eval.metrics",
    "MetricConfig": "segapp.eval.metrics",
    "image_metrics": "segapp.eval.metrics",
    "ReliabilityBins": "segapp.eval.calibration",
    "uncertainty_score": "segapp.eval.calibration",
    "EvalCase": "segapp.eval.pairing",
    "Pairing": "segapp.eval.pairing",
    "attach_probs": "segapp.eval.pairing",
    "pair_folders": "segapp.eval.pairing",
    "EmptyPolicy": "segapp.eval.policy",
    "ReportOptions": "segapp.eval.report",
    "read_metrics_csv": "segapp.eval.report",
    "write_report": "segapp.eval.report",
    "bootstrap_ci": "segapp.eval.stats",
    "paired_compare": "segapp.eval.stats",
    "summarize": "segapp.eval.stats",
}
__all__ = [
    "METRIC_COLUMNS",
    "EmptyPolicy",
    "EvalCase",
    "MetricConfig",
    "Pairing",
    "ReliabilityBins",
    "ReportOptions",
    "attach_probs",
    "bootstrap_ci",
    "image_metrics",
    "pair_folders",
    "paired_compare",
    "read_metrics_csv",
    "summarize",
    "uncertainty_score",
    "write_report",
]

if TYPE_CHECKING:
    from segapp.eval.calibration import ReliabilityBins, uncertainty_score
    from segapp.eval.metrics import METRIC_COLUMNS, MetricConfig, image_metrics
    from segapp.eval.pairing import EvalCase, Pairing, attach_probs, pair_folders
    from segapp.eval.policy import EmptyPolicy
    from segapp.eval.report import ReportOptions, read_metrics_csv, write_report
    from segapp.eval.stats import bootstrap_ci, paired_compare, summarize


def __getattr__(name: str) -> Any:
    """Import ``name`` from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segapp.eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
