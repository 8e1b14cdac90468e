"""Evaluation: per-image and dataset metrics, empty-mask policy, reports (no Lightning here)."""

from segapp.eval.metrics import METRIC_COLUMNS, MetricConfig, image_metrics
from segapp.eval.pairing import EvalCase, Pairing, pair_folders
from segapp.eval.policy import EmptyPolicy
from segapp.eval.report import ReportOptions, read_metrics_csv, write_report
from segapp.eval.stats import bootstrap_ci, paired_compare, summarize

__all__ = [
    "METRIC_COLUMNS",
    "EmptyPolicy",
    "EvalCase",
    "MetricConfig",
    "Pairing",
    "ReportOptions",
    "bootstrap_ci",
    "image_metrics",
    "pair_folders",
    "paired_compare",
    "read_metrics_csv",
    "summarize",
    "write_report",
]
