"""Inference from a checkpoint or an exported ONNX model: no Lightning, albumentations or training code.

Importing this package does not import torch: the torch engine imports it when used, so the
ONNX Runtime engine runs in a container without torch.
"""

from segapp.inference.checkpoint import CheckpointError, load_net, read_meta
from segapp.inference.engines import OnnxEngine, TorchEngine, create_engine, resolve_precision
from segapp.inference.folder import FolderOptions, FolderSummary, predict_folder
from segapp.inference.outputs import output_name
from segapp.inference.predictor import Predictor, prepare_input

__all__ = [
    "CheckpointError",
    "FolderOptions",
    "FolderSummary",
    "OnnxEngine",
    "Predictor",
    "TorchEngine",
    "create_engine",
    "load_net",
    "output_name",
    "predict_folder",
    "prepare_input",
    "read_meta",
    "resolve_precision",
]
