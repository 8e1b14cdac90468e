"""Inference from a checkpoint: no Lightning, albumentations or training code inside."""

from segapp.inference.checkpoint import CheckpointError, load_net
from segapp.inference.predictor import Predictor, output_name

__all__ = ["CheckpointError", "Predictor", "load_net", "output_name"]
