"""BCE + Dice mask loss (the UnSeg paper's, arXiv:2410.09909) and IoU, restricted to the valid
(non-padding) area."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_logit_grid(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a ``B x 1 x S x S`` mask (or valid area) to the ``size`` logit grid by area averaging."""
    if mask.shape[-1] == size:
        return mask.float()
    return F.interpolate(mask.float(), size=(size, size), mode="area")


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                  bce_weight: float = 1.0, dice_weight: float = 1.0) -> torch.Tensor:
    """Mean over the batch of BCE + soft Dice between ``B x 1 x M x M`` logits and a target.

    ``target`` and ``valid`` may be at a larger resolution; they are area-averaged to M (the
    target becomes soft at the boundary, the valid area is kept where it is mostly content).
    """
    size = logits.shape[-1]
    logits = logits.float()
    target = to_logit_grid(target, size)
    valid = (to_logit_grid(valid, size) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = (bce * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)
    prob = torch.sigmoid(logits) * valid
    t = target * valid
    dice = 1 - (2 * (prob * t).flatten(1).sum(1) + 1) / (prob.flatten(1).sum(1) + t.flatten(1).sum(1) + 1)
    return (bce_weight * bce + dice_weight * dice).mean()


def mask_iou(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-sample IoU (``B``) of thresholded logits against the target, inside the valid area."""
    size = logits.shape[-1]
    valid = to_logit_grid(valid, size) > 0.5
    pred = (logits > 0) & valid
    truth = (to_logit_grid(target, size) > 0.5) & valid
    inter = (pred & truth).flatten(1).sum(1).float()
    union = (pred | truth).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
