"""Image-free baselines for semantic victims: what a predictor that never looks at the pixels scores.

The *layout prior* predicts, at every pixel of the victim's input size, the class most often found
there in the training labels (one fixed map for every test image). It is the semantic counterpart of
the interactive victim's box-fill / ellipse (:func:`unseg.evaluation.interactive.prompt_only_ious`):
noise can only take away what a victim learns *from the image*, so a protected-trained victim that
scores about the layout prior has learned nothing from the content; going below it needs noise that
misleads. On street scenes it is high (CamVid, 128 x 160: mIoU 17.0 — sky 59, building 49, road 66 —
against 35.2 for a clean-trained UNet-R18), on object-centred binary sets near zero (the majority of
every Kvasir-SEG pixel is background).
"""

from __future__ import annotations

import torch

from unseg.data.segmentation import DatasetSpec
from unseg.evaluation.metrics import SegmentationScore


def layout_prior(train_masks: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """``H x W`` long: per pixel, the most frequent valid class of ``train_masks`` (``N x H x W``).

    Ignored and out-of-range labels do not vote; a pixel no training label covers gets class 0.
    """
    if train_masks.ndim != 3 or not len(train_masks):
        raise ValueError(f"train_masks must be a non-empty N x H x W stack, got shape {tuple(train_masks.shape)}")
    votes = torch.stack([(train_masks == c).sum(0) for c in range(spec.num_classes)])
    return votes.argmax(0)


def layout_prior_scores(train_masks: torch.Tensor, test_masks: torch.Tensor, spec: DatasetSpec) -> dict:
    """The :func:`layout_prior` of ``train_masks`` scored on ``test_masks`` (``N x H x W``, same ``H x W``):
    the :meth:`SegmentationScore.summary` metrics (``miou``, ``per_class_iou``, ``iou`` when binary, 0–100)."""
    if train_masks.shape[1:] != test_masks.shape[1:]:
        raise ValueError(f"train masks {tuple(train_masks.shape[1:])} and test masks {tuple(test_masks.shape[1:])} differ in size")
    prior = layout_prior(train_masks, spec)
    score = SegmentationScore(spec.num_classes, spec.ignore_index)
    score.update(prior.expand_as(test_masks), test_masks)
    return score.summary()
