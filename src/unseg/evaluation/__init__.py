"""Evaluation: victims trained on protected data, defences, metrics, the run protocol and its report."""

from unseg.evaluation.config import PRESETS, EvaluationConfig, preset_config
from unseg.evaluation.metrics import SegmentationScore, confusion_matrix, foreground_iou_dice, mean_iou, per_class_iou
from unseg.evaluation.protocol import plan_cells, run_evaluation
from unseg.evaluation.report import write_report

__all__ = [
    "EvaluationConfig",
    "PRESETS",
    "SegmentationScore",
    "confusion_matrix",
    "foreground_iou_dice",
    "mean_iou",
    "per_class_iou",
    "plan_cells",
    "preset_config",
    "run_evaluation",
    "write_report",
]
