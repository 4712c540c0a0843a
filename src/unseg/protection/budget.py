"""The per-pixel L∞ budget on NumPy arrays: ε on the protected region, ε_bg elsewhere, exact on
integer images.

Thin adapters of :mod:`unseg.protection.perturb` (the one implementation, in torch) for callers
holding ``H x W x C`` arrays: baseline noise makers, the evaluation, tests.
"""

from __future__ import annotations

import numpy as np
import torch

from unseg.budget import DEFAULT_BUDGET, Budget
from unseg.protection import perturb
from unseg.protection.strips import row_strips


def saturate_noise(noise: np.ndarray, region: np.ndarray, means: np.ndarray | None = None) -> np.ndarray:
    """:func:`unseg.protection.perturb.saturate` of ``H x W x C`` noise on an ``H x W`` bool region
    or ``H x W`` integer segment labels (``means``: ``S x C`` per segment — on / off a bool
    region —, default this noise's own); float32 in {-1, 0, 1}."""
    if noise.shape[:2] != region.shape:
        raise ValueError(f"noise {noise.shape} and region {region.shape} differ in size")
    means_tensor = None if means is None else torch.from_numpy(np.asarray(means, dtype=np.float64))
    out = perturb.saturate(torch.from_numpy(np.ascontiguousarray(noise)), torch.from_numpy(np.ascontiguousarray(region)),
                           means_tensor)
    return out.numpy()


def apply_budget(
    image: np.ndarray,
    noise: np.ndarray,
    region: np.ndarray,
    budget: Budget = DEFAULT_BUDGET,
) -> np.ndarray:
    """Add unit ``noise`` to an integer ``image`` under the per-pixel budget, exactly.

    Args:
        image: ``H x W x C`` uint8 or uint16 image (C = 1 or 3; alpha is not passed here).
        noise: ``H x W x 3`` (or ``H x W x C``) float noise in [-1, 1]; a 1-channel image gets
            the channel mean.
        region: ``H x W`` bool, True on the protected object(s).
        budget: ε and ε_bg.

    Returns:
        The protected image, same dtype and shape, with ``|out - in|`` at most ε's levels
        (:meth:`Budget.levels`) on ``region`` and ε_bg's elsewhere, on every pixel and channel.
    """
    if image.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"image must be uint8 or uint16, got {image.dtype}")
    if image.ndim != 3:
        raise ValueError(f"image must be H x W x C, got shape {image.shape}")
    if noise.shape[:2] != image.shape[:2] or region.shape != image.shape[:2]:
        raise ValueError(f"noise {noise.shape} / region {region.shape} do not match image {image.shape}")
    out = perturb.apply_budget(torch.from_numpy(np.ascontiguousarray(image)),
                               torch.from_numpy(np.ascontiguousarray(noise)),
                               torch.from_numpy(np.ascontiguousarray(region)), budget, int(np.iinfo(image.dtype).max))
    return out.numpy()


def measured_linf(original: np.ndarray, protected: np.ndarray, region: np.ndarray) -> tuple[int, int]:
    """Largest change in intensity levels (inside region, outside region); 0 for an empty part.

    Computed a strip of rows at a time (bounded memory on large images)."""
    inside = outside = 0
    for start, stop in row_strips(*region.shape):
        strip = perturb.linf_change(torch.from_numpy(original[start:stop]), torch.from_numpy(protected[start:stop]),
                                    torch.from_numpy(region[start:stop]))
        inside, outside = max(inside, strip[0]), max(outside, strip[1])
    return inside, outside
