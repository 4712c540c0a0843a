"""Segmentation metrics from a confusion matrix: per-class IoU, mIoU, foreground IoU and Dice.

Conventions (as in the usual semantic-segmentation benchmarks, e.g. mmsegmentation):
pixels whose ground truth equals ``ignore_index`` are skipped; a class absent from both the
prediction and the ground truth has an undefined IoU (NaN) and is left out of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """``num_classes x num_classes`` counts, rows = ground truth, columns = prediction.

    Args:
        pred: integer class predictions, any shape.
        target: integer ground truth, same shape as ``pred``.
        num_classes: number of valid classes (labels ``0 .. num_classes - 1``).
        ignore_index: ground-truth label to skip (also any label outside the valid range).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    valid = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        valid &= target != ignore_index
    if (pred[valid] < 0).any() or (pred[valid] >= num_classes).any():
        raise ValueError(f"predictions must lie in [0, {num_classes - 1}]")
    index = target[valid] * num_classes + pred[valid]
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def per_class_iou(confusion: torch.Tensor) -> np.ndarray:
    """IoU of each class (``TP / (TP + FP + FN)``); NaN where the class is in neither pred nor GT."""
    confusion = confusion.double()
    true_positive = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    iou = torch.where(union > 0, true_positive / union.clamp(min=1), torch.full_like(union, float("nan")))
    return iou.numpy()


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean of the defined per-class IoUs (NaN if no class is defined)."""
    iou = per_class_iou(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def foreground_iou_dice(confusion: torch.Tensor, foreground: int = 1) -> tuple[float, float]:
    """IoU and Dice of one class (the foreground of a binary task); NaN when it is absent from both."""
    confusion = confusion.double()
    tp = float(confusion[foreground, foreground])
    fp = float(confusion[:, foreground].sum()) - tp
    fn = float(confusion[foreground, :].sum()) - tp
    if tp + fp + fn == 0:
        return float("nan"), float("nan")
    return tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)


@dataclass
class SegmentationScore:
    """Accumulates a confusion matrix over batches and reports the metrics."""

    num_classes: int
    ignore_index: int | None = None
    confusion: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of integer predictions and ground truth."""
        self.confusion += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def summary(self) -> dict[str, float | list[float | None] | list[list[int]]]:
        """``miou``, ``per_class_iou``, ``pixel_accuracy`` and, for 2 classes, ``iou``/``dice`` of class 1 (0–100 scale);
        ``confusion``: the pixel counts (rows: true class, columns: predicted), which say where a class's pixels went."""
        iou = per_class_iou(self.confusion)
        total = int(self.confusion.sum())
        result: dict[str, float | list[float | None] | list[list[int]]] = {
            "miou": 100 * mean_iou(self.confusion),
            "per_class_iou": [None if np.isnan(v) else 100 * float(v) for v in iou],
            "pixel_accuracy": 100 * float(self.confusion.diag().sum()) / total if total else float("nan"),
            "confusion": self.confusion.tolist(),
        }
        if self.num_classes == 2:
            fg_iou, fg_dice = foreground_iou_dice(self.confusion)
            result["iou"] = 100 * fg_iou
            result["dice"] = 100 * fg_dice
        return result
