"""segapp: train and deploy 2D lesion segmentation."""

__version__ = "0.1.0"
