"""Segmentation metrics against values computed by hand on tiny arrays."""

import math

import numpy as np
import pytest
import torch

from unseg.evaluation.metrics import SegmentationScore, confusion_matrix, foreground_iou_dice, mean_iou, per_class_iou

# Six pixels, classes 0..2, label 3 is "void". By hand (rows = ground truth, columns = prediction):
#   GT 0 -> pred 0, 1        GT 1 -> pred 1, 1        GT 2 -> pred 0        void -> pred 2 (skipped)
TARGET = torch.tensor([[0, 0, 1], [1, 2, 3]])
PRED = torch.tensor([[0, 1, 1], [1, 0, 2]])
EXPECTED_CONFUSION = [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
# IoU = TP / (TP + FP + FN): class 0: 1 / (1 + 1 + 1); class 1: 2 / (2 + 1 + 0); class 2: 0 / (0 + 0 + 1)
EXPECTED_IOU = [1 / 3, 2 / 3, 0.0]


def test_confusion_matrix_rows_are_ground_truth_and_ignore_is_skipped():
    confusion = confusion_matrix(PRED, TARGET, num_classes=3, ignore_index=3)
    assert confusion.tolist() == EXPECTED_CONFUSION
    assert int(confusion.sum()) == 5  # the void pixel is not counted


def test_labels_outside_the_class_range_are_skipped_without_ignore_index():
    target = torch.tensor([0, 1, 255])
    pred = torch.tensor([0, 0, 1])
    assert confusion_matrix(pred, target, num_classes=2).tolist() == [[1, 0], [1, 0]]


def test_ignored_pixels_do_not_count_as_false_positives():
    # Without ignore, the void pixel (label 3 -> outside 0..2) is still skipped; as a real class
    # (num_classes=4) its prediction 2 becomes a false positive of class 2.
    four = confusion_matrix(PRED, TARGET, num_classes=4)
    assert four[3, 2] == 1
    assert confusion_matrix(PRED, TARGET, num_classes=4, ignore_index=3)[3].sum() == 0


def test_per_class_and_mean_iou_match_hand_computation():
    confusion = confusion_matrix(PRED, TARGET, num_classes=3, ignore_index=3)
    np.testing.assert_allclose(per_class_iou(confusion), EXPECTED_IOU)
    assert mean_iou(confusion) == pytest.approx(np.mean(EXPECTED_IOU))


def test_absent_class_is_nan_and_left_out_of_the_mean():
    # Class 3 appears in neither prediction nor ground truth: undefined IoU, not a zero.
    confusion = confusion_matrix(PRED, TARGET, num_classes=4, ignore_index=3)
    iou = per_class_iou(confusion)
    assert math.isnan(iou[3])
    np.testing.assert_allclose(iou[:3], EXPECTED_IOU)
    assert mean_iou(confusion) == pytest.approx(np.mean(EXPECTED_IOU))


def test_class_only_predicted_counts_as_zero_iou():
    target = torch.tensor([0, 0, 0, 0])
    pred = torch.tensor([0, 0, 0, 1])  # class 1 never in GT, predicted once: IoU 0, counted in the mean
    confusion = confusion_matrix(pred, target, num_classes=2)
    np.testing.assert_allclose(per_class_iou(confusion), [3 / 4, 0.0])
    assert mean_iou(confusion) == pytest.approx(3 / 8)


def test_mean_iou_of_an_empty_confusion_is_nan():
    assert math.isnan(mean_iou(torch.zeros(3, 3, dtype=torch.long)))


def test_foreground_iou_and_dice_by_hand():
    target = torch.tensor([1, 1, 1, 0, 0, 0])
    pred = torch.tensor([1, 1, 0, 1, 0, 0])  # TP 2, FP 1, FN 1
    iou, dice = foreground_iou_dice(confusion_matrix(pred, target, num_classes=2))
    assert iou == pytest.approx(2 / 4)
    assert dice == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))


def test_foreground_absent_everywhere_is_nan():
    zeros = torch.zeros(5, dtype=torch.long)
    iou, dice = foreground_iou_dice(confusion_matrix(zeros, zeros, num_classes=2))
    assert math.isnan(iou) and math.isnan(dice)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(3, 2), num_classes=2)
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 1]), num_classes=2)


def test_score_accumulates_batches_like_one_batch_and_reports_percentages():
    score = SegmentationScore(num_classes=4, ignore_index=3)
    score.update(PRED[:1], TARGET[:1])
    score.update(PRED[1:], TARGET[1:])
    assert score.confusion[:3, :3].tolist() == EXPECTED_CONFUSION
    summary = score.summary()
    assert summary["miou"] == pytest.approx(100 * np.mean(EXPECTED_IOU))
    assert summary["per_class_iou"][:3] == pytest.approx([100 * v for v in EXPECTED_IOU])
    assert summary["per_class_iou"][3] is None  # absent class
    assert summary["pixel_accuracy"] == pytest.approx(100 * 3 / 5)
    assert [row[:3] for row in summary["confusion"][:3]] == EXPECTED_CONFUSION  # where each class's pixels went
    assert "iou" not in summary and "dice" not in summary  # only binary tasks report them


def test_binary_score_reports_foreground_iou_and_dice():
    score = SegmentationScore(num_classes=2)
    score.update(torch.tensor([[1, 1, 0], [1, 0, 0]]), torch.tensor([[1, 1, 1], [0, 0, 0]]))
    summary = score.summary()
    assert summary["iou"] == pytest.approx(50.0)
    assert summary["dice"] == pytest.approx(100 * 4 / 6)
    # background: TP 2, FP 1, FN 1 -> 0.5 as well; mIoU averages both classes
    assert summary["miou"] == pytest.approx(50.0)
