"""Ablation studies: run variants of a config over seeds and report convergence and generalisation."""

from segapp.ablation.metrics import RUN_COLUMNS, read_epochs, summarize_run
from segapp.ablation.report import write_study_report
from segapp.ablation.runner import run_study, write_results
from segapp.ablation.study import Study, StudyError, Variant, load_study, validate_study

__all__ = [
    "RUN_COLUMNS",
    "Study",
    "StudyError",
    "Variant",
    "load_study",
    "read_epochs",
    "run_study",
    "summarize_run",
    "validate_study",
    "write_study_report",
    "write_results",
]
