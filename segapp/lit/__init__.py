"""LightningModules, losses, metrics and schedulers (training only)."""

import sys

from segapp.lit import report_callback as _report_callback
from segapp.lit.module import SegmentationModule

# Deprecated class path ``segapp.lit.test_report.TestReport`` (the module was renamed so product
# code no longer matches pytest's ``test_*.py`` glob); TestReport warns when it is built.
sys.modules.setdefault("segapp.lit.test_report", _report_callback)

__all__ = ["SegmentationModule"]
