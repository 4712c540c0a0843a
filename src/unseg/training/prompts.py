"""Training prompts sampled from the true object mask (as the UnSeg paper, arXiv:2410.09909, trains).

Three prompt types: a tight box with a small jitter, ``k`` random positive points, and a
"noisy mask" (the true mask randomly dilated or eroded, its boundary band perturbed by smooth
random noise). The generator gets a random non-empty subset of the three per sample, the
surrogate exactly one (or, for a configurable share of samples, none). Every sample's prompts
share one layout — 2 box corners then ``k`` points — with absent ones labelled as padding (-1),
so a batch can mix prompt types.
"""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F

from unseg.models.prompts import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, PADDING, POSITIVE, PromptBatch, boxes_to_masks
from unseg.training.config import PromptSampling  # the [prompts] section: how prompts are drawn

BOX, POINTS, MASK = 0, 1, 2


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight ``B x 4`` (x0, y0, x1, y1) pixel boxes of non-empty ``B x 1 x S x S`` masks."""
    fg = masks[:, 0] > 0.5
    size = fg.shape[-1]
    index = torch.arange(size, device=masks.device)
    rows, cols = fg.any(dim=2), fg.any(dim=1)
    big = size + 1
    y0 = torch.where(rows, index, big).min(dim=1).values
    y1 = torch.where(rows, index, -1).max(dim=1).values
    x0 = torch.where(cols, index, big).min(dim=1).values
    x1 = torch.where(cols, index, -1).max(dim=1).values
    return torch.stack([x0, y0, x1, y1], dim=1).float()


def jittered_boxes(masks: torch.Tensor, jitter: float, generator: torch.Generator) -> torch.Tensor:
    """Tight boxes with each corner moved by up to ``jitter`` x box side, clamped to the input."""
    boxes = mask_boxes(masks)
    side = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, dim=1) + 1
    shift = (torch.rand(boxes.shape, generator=generator) * 2 - 1).to(boxes.device) * jitter * side
    return (boxes + shift).clamp(0, masks.shape[-1] - 1)


def random_points(masks: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``B x count x 2`` (x, y) pixels drawn uniformly (with replacement) from each mask."""
    size = masks.shape[-1]
    weights = (masks[:, 0] > 0.5).flatten(1).float().cpu() + 1e-12  # empty mask: uniform fallback
    flat = torch.multinomial(weights, count, replacement=True, generator=generator).to(masks.device)
    return torch.stack([flat % size, flat // size], dim=-1).float()


def noisy_masks(masks: torch.Tensor, max_radius: float, generator: torch.Generator) -> torch.Tensor:
    """True masks with a perturbed boundary: random dilation/erosion, then smooth noisy threshold."""
    batch, _, size, _ = masks.shape
    out = []
    for i in range(batch):
        m = masks[i : i + 1]
        radius = int(torch.randint(0, max(1, int(max_radius * size)) + 1, (1,), generator=generator))
        if radius:
            kernel = 2 * radius + 1
            if torch.rand(1, generator=generator).item() < 0.5:
                m = F.max_pool2d(m, kernel, stride=1, padding=radius)
            else:
                m = -F.max_pool2d(-m, kernel, stride=1, padding=radius)
        out.append(m)
    shrunk = torch.cat(out)
    field = (torch.rand(masks.shape, generator=generator).to(masks.device) - 0.5) * 2
    sigma = max(1.0, size / 64)
    field = kornia.filters.gaussian_blur2d(field, (int(4 * sigma) | 1,) * 2, (sigma, sigma))
    blurred = kornia.filters.gaussian_blur2d(shrunk, (int(4 * sigma) | 1,) * 2, (sigma, sigma))
    noisy = (blurred + field * 2 > 0.5).float()
    empty = noisy.flatten(1).sum(1) == 0
    return torch.where(empty.view(-1, 1, 1, 1), masks, noisy)


def prompt_batch(masks: torch.Tensor, use: torch.Tensor, sampling: PromptSampling,
                 generator: torch.Generator) -> PromptBatch:
    """Prompts for ``B x 1 x S x S`` true masks; ``use`` is ``B x 3`` bool over (box, points, mask)."""
    batch = masks.shape[0]
    k = sampling.num_points
    boxes = jittered_boxes(masks, sampling.box_jitter, generator)
    points = random_points(masks, k, generator)
    coords = torch.cat([boxes.view(batch, 2, 2), points], dim=1)
    box_labels = torch.tensor([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], device=masks.device).expand(batch, 2)
    point_labels = torch.full((batch, k), POSITIVE, device=masks.device)
    use = use.to(masks.device)
    labels = torch.cat([
        torch.where(use[:, BOX : BOX + 1], box_labels, PADDING),
        torch.where(use[:, POINTS : POINTS + 1], point_labels, PADDING),
    ], dim=1).long()
    coords = torch.where(labels.unsqueeze(-1) == PADDING, torch.zeros_like(coords), coords)
    has_mask = use[:, MASK]
    mask_prompt = noisy_masks(masks, sampling.mask_max_radius, generator) * has_mask.view(-1, 1, 1, 1)
    return PromptBatch(coords=coords, labels=labels, masks=mask_prompt, has_mask=has_mask)


def generator_prompt_types(batch: int, generator: torch.Generator) -> torch.Tensor:
    """``B x 3`` bool: a uniformly random non-empty subset of {box, points, mask} per sample."""
    subset = torch.randint(1, 8, (batch,), generator=generator)  # 1..7 = non-empty bit patterns
    return torch.stack([(subset >> bit) & 1 for bit in range(3)], dim=1).bool()


def surrogate_prompt_types(batch: int, generator: torch.Generator, unprompted: float = 0.0) -> torch.Tensor:
    """``B x 3`` bool: exactly one prompt type per sample, or none (all False) with probability
    ``unprompted``."""
    choice = torch.randint(0, 3, (batch,), generator=generator)
    keep = torch.rand(batch, generator=generator) >= unprompted
    return F.one_hot(choice, 3).bool() & keep[:, None]


def surrogate_prompts(masks: torch.Tensor, sampling: PromptSampling, generator: torch.Generator) -> PromptBatch:
    """The surrogate's prompts for ``B x 1 x S x S`` true masks: one type per sample, none for a
    ``sampling.surrogate_unprompted`` share; with ``sampling.surrogate_prompt == "box"`` the type is
    always the box, given as its corners *and* the filled box as the mask prompt — how the
    benchmark's interactive victim is prompted (``unseg.evaluation.interactive.ObjectSamples``)."""
    use = surrogate_prompt_types(masks.shape[0], generator, sampling.surrogate_unprompted)
    if sampling.surrogate_prompt == "any":
        return prompt_batch(masks, use, sampling, generator)
    use = use.any(dim=1, keepdim=True) & F.one_hot(torch.tensor(BOX), 3).bool()  # prompted -> the box
    prompts = prompt_batch(masks, use, sampling, generator)
    size = masks.shape[-1]
    has_box = use[:, BOX].to(masks.device)
    corners = prompts.coords[:, :2] + torch.tensor([[0.0, 0.0], [1.0, 1.0]], device=masks.device)  # last pixel in
    filled = boxes_to_masks(corners, size, size) * has_box.view(-1, 1, 1, 1)
    return PromptBatch(prompts.coords, prompts.labels, masks=filled, has_mask=has_box)


def rescale_prompts(prompts: PromptBatch, from_size: int, to_size: int) -> PromptBatch:
    """The same prompts for a square input of side ``to_size`` instead of ``from_size``."""
    if from_size == to_size:
        return prompts
    masks = prompts.masks
    if masks is not None:
        masks = F.interpolate(masks, size=(to_size, to_size), mode="bilinear", align_corners=False, antialias=True)
    return PromptBatch(coords=prompts.coords * (to_size / from_size), labels=prompts.labels, masks=masks,
                       has_mask=prompts.has_mask)
