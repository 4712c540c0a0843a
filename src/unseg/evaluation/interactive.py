"""Samples and scoring for the interactive (box-prompted) victim: one sample per labelled object.

An "object" is the whole region of one class in one image (the all-labelled rule) or of one
non-background class (foreground rule), with its tight box as the prompt — the same kind of
object the generator protects.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unseg.data.segmentation import DatasetSpec
from unseg.data.transforms import Letterbox
from unseg.devices import mixed_precision
from unseg.evaluation.metrics import SegmentationScore
from unseg.models import PromptBatch
from unseg.models.prompts import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, boxes_to_masks

MIN_OBJECT_PIXELS = 16


@dataclass
class ObjectSamples:
    """``N x 3 x S x S`` images in [0, 1], their box prompts and ``N x 1 x M x M`` binary targets.

    The box reaches the victim twice, as SAM can take it: as its two corner tokens and as a dense
    mask prompt (the filled box), so "fill the box" is what an untrained victim starts from and
    whatever it learns beyond the box comes from the image.
    """

    images: torch.Tensor
    prompts: PromptBatch
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: torch.Tensor) -> "ObjectSamples":
        coords = self.prompts.coords[index]
        size = self.images.shape[-1]
        prompts = PromptBatch(coords, self.prompts.labels[index], masks=boxes_to_masks(coords, size, size),
                              has_mask=torch.ones(len(coords), dtype=torch.bool))
        return ObjectSamples(self.images[index], prompts, self.targets[index])

    def to(self, device: torch.device) -> "ObjectSamples":
        return ObjectSamples(self.images.to(device), self.prompts.to(device), self.targets.to(device))


def object_classes(mask: torch.Tensor, spec: DatasetSpec) -> list[int]:
    """Classes forming an object in ``mask`` (at least MIN_OBJECT_PIXELS pixels)."""
    counts = torch.bincount(mask.reshape(-1).clamp(min=0), minlength=spec.num_classes + 1)[: spec.num_classes]
    first = 1 if spec.objects == "foreground" else 0
    return [c for c in range(first, spec.num_classes) if counts[c] >= MIN_OBJECT_PIXELS and c != spec.ignore_index]


def object_samples(split, spec: DatasetSpec, size: int, max_objects: int, generator: torch.Generator, mask_size: int | None = None) -> ObjectSamples:
    """Up to ``max_objects`` random objects per image of ``split`` (a SplitTensors), letterboxed to ``size``."""
    mask_size = mask_size or size // 2
    images, coords, targets = [], [], []
    for image, mask in zip(split.images, split.masks):
        box = Letterbox(mask.shape[0], mask.shape[1], size)
        classes = object_classes(mask, spec)
        chosen = [classes[i] for i in torch.randperm(len(classes), generator=generator)[:max_objects]]
        if not chosen:
            continue
        model_image = box.image_to_input(image[None].float() / 255)[0]
        for label in chosen:
            binary = (mask == label).float()[None, None]
            ys, xs = torch.nonzero(binary[0, 0], as_tuple=True)
            corners = torch.tensor([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], dtype=torch.float32) * box.scale
            target = F.interpolate(box.image_to_input(binary, mode="nearest"), size=(mask_size, mask_size), mode="area")
            images.append(model_image)
            coords.append(corners)
            targets.append((target[0] > 0.5).float())
    if not images:
        raise ValueError("no objects found for the interactive victim")
    labels = torch.tensor([[BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]]).repeat(len(images), 1)
    return ObjectSamples(torch.stack(images), PromptBatch(torch.stack(coords), labels), torch.stack(targets))


def interactive_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice on mask logits (the surrogate's loss of the UnSeg paper, arXiv:2410.09909)."""
    if logits.shape[-1] != targets.shape[-1]:
        logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    probability = logits.sigmoid()
    dice = 1 - (2 * (probability * targets).sum((1, 2, 3)) + 1) / (probability.sum((1, 2, 3)) + targets.sum((1, 2, 3)) + 1)
    return bce + dice.mean()


def box_masks(samples: ObjectSamples) -> torch.Tensor:
    """``N x 1 x M x M`` masks of each sample's box prompt at the target resolution: the trivial
    "fill the box" prediction a victim that learned nothing beyond the prompt would make."""
    return boxes_to_masks(samples.prompts.coords, samples.images.shape[-1], samples.targets.shape[-1])


def ellipse_masks(samples: ObjectSamples) -> torch.Tensor:
    """``N x 1 x M x M`` ellipses inscribed in each sample's box (a pixel is in when its centre
    is): a shape prior a victim can learn from prompts and labels alone, without looking at the
    image; on round objects it beats box-fill (Kvasir-SEG test at 128 px: 61.3 vs 53.6 IoU)."""
    side = samples.targets.shape[-1]
    corners = samples.prompts.coords * side / samples.images.shape[-1]
    centre, radius = (corners[:, 0] + corners[:, 1]) / 2, ((corners[:, 1] - corners[:, 0]) / 2).clamp(min=1e-6)
    grid = torch.arange(side, dtype=torch.float32, device=corners.device) + 0.5
    dx = (grid[None] - centre[:, 0:1]) / radius[:, 0:1]
    dy = (grid[None] - centre[:, 1:2]) / radius[:, 1:2]
    return (dy[:, :, None] ** 2 + dx[:, None, :] ** 2 <= 1).float()[:, None]


def pooled_iou(predictions: torch.Tensor, samples: ObjectSamples) -> float:
    """Pooled foreground IoU (0-100) of ``N x 1 x M x M`` binary ``predictions`` on ``samples``."""
    score = SegmentationScore(2)
    score.update(predictions.long(), samples.targets.long())
    return score.summary()["iou"]


def box_fill_iou(samples: ObjectSamples) -> float:
    """Pooled foreground IoU (0-100) of the box-fill prediction on ``samples`` (see :func:`box_masks`)."""
    return pooled_iou(box_masks(samples), samples)


def prompt_only_ious(samples: ObjectSamples) -> dict:
    """What predictors that never look at the image score on ``samples``: ``box_fill_iou`` and
    ``ellipse_iou`` (:func:`ellipse_masks`). A protected-trained victim scoring no more than these
    on clean images has learned nothing from them."""
    return {"box_fill_iou": box_fill_iou(samples), "ellipse_iou": pooled_iou(ellipse_masks(samples), samples)}


@torch.no_grad()
def score_interactive(model: nn.Module, samples: ObjectSamples, device: torch.device, batch_size: int, amp: bool) -> dict:
    """Pooled foreground IoU / Dice (0–100) over all test objects (the prompt-only baselines of the same
    objects, which no training changes, come from :func:`prompt_only_ious`)."""
    model.eval()
    score = SegmentationScore(2)
    for start in range(0, len(samples), batch_size):
        batch = samples.subset(torch.arange(start, min(start + batch_size, len(samples)))).to(device)
        with mixed_precision(device, amp):
            logits = model(batch.images, batch.prompts).float()
        logits = F.interpolate(logits, size=batch.targets.shape[-2:], mode="bilinear", align_corners=False)
        score.update((logits > 0).long().cpu(), batch.targets.long().cpu())
    summary = score.summary()
    return {"iou": summary["iou"], "dice": summary["dice"], "objects": len(samples)}
