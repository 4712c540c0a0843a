"""The per-pixel L∞ budget: ε on the protected region, ε_bg elsewhere, exact on integer images."""

from __future__ import annotations

import numpy as np
import torch

from unseg.protection.strips import row_strips

DEFAULT_EPSILON = 8 / 255
DEFAULT_EPSILON_BG = 2 / 255
SATURATE_DEAD_ZONE = 1e-4  # unit-noise deviations below this are rounding, not pattern


def budget_levels(epsilon: float, max_value: int = 255) -> int:
    """The budget ε in integer intensity levels: ``round(max_value * ε)``."""
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    return int(round(max_value * epsilon))


def epsilon_map(region: torch.Tensor, epsilon: float, epsilon_bg: float) -> torch.Tensor:
    """Per-pixel budget: ``epsilon`` where ``region`` is 1, ``epsilon_bg`` where it is 0 (soft values blend)."""
    region = region.float()
    return epsilon * region + epsilon_bg * (1 - region)


def scale_noise(noise: torch.Tensor, region: torch.Tensor, epsilon: float, epsilon_bg: float) -> torch.Tensor:
    """Unit noise in [-1, 1] -> float perturbation bounded by the per-pixel budget (training path)."""
    return noise * epsilon_map(region, epsilon, epsilon_bg)


def segment_channel_sums(noise: np.ndarray, segments: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel sums of ``H x W x C`` noise over each of ``count`` segments (``segments``:
    ``H x W`` integer labels in ``0 .. count - 1``): ``count x C`` float64 sums and ``count`` pixel
    counts. Sums of the strips of an image add up to the image's; ``sums / counts[:, None]`` are
    the means :func:`saturate_noise` removes."""
    flat = segments.reshape(-1).astype(np.int64)
    channels = noise.shape[-1]
    values = noise.reshape(-1, channels).astype(np.float64)
    sums = np.stack([np.bincount(flat, weights=values[:, c], minlength=count) for c in range(channels)], axis=1)
    return sums[:count], np.bincount(flat, minlength=count)[:count]


def region_segments(region: np.ndarray) -> np.ndarray:
    """The two segments of a plain region: 0 on ``region``, 1 off it."""
    return (~region).astype(np.uint8)


def segment_channel_means(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``S x C`` means from :func:`segment_channel_sums` (0 for an empty segment)."""
    return sums / np.maximum(counts, 1)[:, None]


def saturate_noise(noise: np.ndarray, region: np.ndarray, means: np.ndarray | None = None) -> np.ndarray:
    """Unit ``H x W x C`` noise pushed to the corners of the budget: each channel's mean is removed
    separately on every segment, then only the sign is kept (±1; what is within
    ``SATURATE_DEAD_ZONE`` of the mean, e.g. flat or zero noise up to rounding, becomes 0).

    ``region`` is an ``H x W`` bool region (segments: on it, off it) or ``H x W`` integer segment
    labels (:class:`~unseg.protection.protector.NativeNoise` gives each object its own, so every
    object keeps its own code and an object of the null code stays untouched). ``means``
    (``S x C``, :func:`segment_channel_means`) are those of the whole image when ``noise`` and
    ``region`` are one strip of its rows; by default this array's own.

    This keeps the noise's pattern, drops its colour cast, and spends the whole budget on every
    pixel. Measured (``src/unseg/weights/README.md``): a victim learns the generator's coarse
    pattern as a shortcut only at full amplitude; the raw tanh output (mean ≈ 0.5 colour shift plus
    a ±0.4 pattern) barely changed the victim.
    """
    if noise.shape[:2] != region.shape:
        raise ValueError(f"noise {noise.shape} and region {region.shape} differ in size")
    segments = region_segments(region) if region.dtype == bool else region
    if means is None:
        count = int(segments.max()) + 1 if segments.size else 1
        means = segment_channel_means(*segment_channel_sums(noise, segments, count))
    centred = noise.astype(np.float64, copy=True)
    centred -= means[segments]
    centred[np.abs(centred) < SATURATE_DEAD_ZONE] = 0
    return np.sign(centred).astype(np.float32)


def apply_budget(
    image: np.ndarray,
    noise: np.ndarray,
    region: np.ndarray,
    epsilon: float = DEFAULT_EPSILON,
    epsilon_bg: float = DEFAULT_EPSILON_BG,
) -> np.ndarray:
    """Add unit ``noise`` to an integer ``image`` under the per-pixel budget, exactly.

    Args:
        image: ``H x W x C`` uint8 or uint16 image (C = 1 or 3; alpha is not passed here).
        noise: ``H x W x 3`` (or ``H x W x C``) float noise in [-1, 1]; a 1-channel image gets
            the channel mean.
        region: ``H x W`` bool, True on the protected object(s).
        epsilon, epsilon_bg: budgets in [0, 1] units of the full intensity range.

    Returns:
        The protected image, same dtype and shape, with ``|out - in| <= round(max * ε)`` on
        ``region`` and ``<= round(max * ε_bg)`` elsewhere, on every pixel and channel.
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
    levels = np.where(region, budget_levels(epsilon, max_value), budget_levels(epsilon_bg, max_value))[..., None]
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
