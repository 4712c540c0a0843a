"""The per-pixel L∞ budget (:class:`unseg.budget.Budget`): ε on the protected region, ε_bg
elsewhere, exact on integer images."""

from __future__ import annotations

import numpy as np
import torch

from unseg.budget import DEFAULT_BUDGET, Budget
from unseg.protection.strips import row_strips

SATURATE_DEAD_ZONE = 1e-4  # unit-noise deviations below this are rounding, not pattern


def epsilon_map(region: torch.Tensor, budget: Budget) -> torch.Tensor:
    """Per-pixel budget as a fraction of the range: ε where ``region`` is 1, ε_bg where it is 0
    (soft values blend)."""
    region = region.float()
    return budget.fraction * region + budget.fraction_bg * (1 - region)


def scale_noise(noise: torch.Tensor, region: torch.Tensor, budget: Budget) -> torch.Tensor:
    """Unit noise in [-1, 1] -> float perturbation bounded by the per-pixel budget (training path)."""
    return noise * epsilon_map(region, budget)


def region_channel_sums(noise: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel sums of ``H x W x C`` noise on ``region`` and off it: ``2 x C`` float64 sums
    (row 0: on the region) and the ``2`` pixel counts. Sums of the strips of an image add up to
    the image's; ``sums / counts[:, None]`` are the means :func:`saturate_noise` removes."""
    noise = noise.reshape(-1, noise.shape[-1])
    flat = region.reshape(-1)
    sums = np.stack([noise[flat].sum(axis=0, dtype=np.float64), noise[~flat].sum(axis=0, dtype=np.float64)])
    count = int(flat.sum())
    return sums, np.array([count, flat.size - count])


def region_channel_means(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``2 x C`` means from :func:`region_channel_sums` (0 for an empty part)."""
    return sums / np.maximum(counts, 1)[:, None]


def saturate_noise(noise: np.ndarray, region: np.ndarray, means: np.ndarray | None = None) -> np.ndarray:
    """Unit ``H x W x C`` noise pushed to the corners of the budget: each channel's mean is removed
    separately on ``region`` and off it, then only the sign is kept (±1; what is within
    ``SATURATE_DEAD_ZONE`` of the mean, e.g. flat noise up to rounding, becomes 0).

    ``means`` (``2 x C``, on / off the region, :func:`region_channel_means`) are those of the whole
    image when ``noise`` and ``region`` are one strip of its rows; by default this array's own.

    This keeps the noise's pattern, drops its colour cast, and spends the whole budget on every
    pixel. Measured (``src/unseg/weights/README.md``): a victim learns the generator's coarse
    pattern as a shortcut only at full amplitude; the raw tanh output (mean ≈ 0.5 colour shift plus
    a ±0.4 pattern) barely changed the victim.
    """
    if noise.shape[:2] != region.shape:
        raise ValueError(f"noise {noise.shape} and region {region.shape} differ in size")
    if means is None:
        means = region_channel_means(*region_channel_sums(noise, region))
    centred = noise.astype(np.float64, copy=True)
    centred -= np.where(region[..., None], means[0], means[1])
    centred[np.abs(centred) < SATURATE_DEAD_ZONE] = 0
    return np.sign(centred).astype(np.float32)


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
    max_value = int(np.iinfo(image.dtype).max)
    if image.shape[2] != noise.shape[2]:
        noise = noise.mean(axis=2, keepdims=True)
    levels = np.where(region, *budget.levels(max_value))[..., None]
    delta = np.clip(noise, -1.0, 1.0).astype(np.float64)  # float64: the product below is exact
    delta *= levels
    np.rint(delta, out=delta)
    np.clip(delta, -levels, levels, out=delta)
    out = image.astype(np.int32)  # levels and values fit: |delta| <= max_value <= 65535
    out += delta.astype(np.int32)
    np.clip(out, 0, max_value, out=out)
    return out.astype(image.dtype)


def measured_linf(original: np.ndarray, protected: np.ndarray, region: np.ndarray) -> tuple[int, int]:
    """Largest change in intensity levels (inside region, outside region); 0 for an empty part.

    Computed a strip of rows at a time (bounded memory on large images)."""
    inside = outside = 0
    for start, stop in row_strips(*region.shape):
        diff = np.abs(protected[start:stop].astype(np.int32) - original[start:stop].astype(np.int32)).max(axis=2)
        part = region[start:stop]
        if part.any():
            inside = max(inside, int(diff[part].max()))
        if not part.all():
            outside = max(outside, int(diff[~part].max()))
    return inside, outside
