"""LightningModules, losses, metrics and schedulers (training only)."""

from segapp.lit.module import SegmentationModule

__all__ = ["SegmentationModule"]
