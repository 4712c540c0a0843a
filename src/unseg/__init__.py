"""unseg: make images unlearnable for segmentation models (UnSeg, NeurIPS 2024)."""

__version__ = "0.1.0"
