"""From the generator's unit noise to protected pixels: the one path that protection, training and
evaluation share (torch, on the tensors' device).

Three stages, each usable alone:

1. :func:`map_to_native`: a noise map over the square model input (``(..., N, N)``) to the
   image's own rows (``(..., rows, W)``): the letterbox's padding cut off, the rest resized
   bilinearly (``align_corners=False`` geometry). Any range of rows can be made alone, with the
   same values whatever the split (bounded memory on large images, :mod:`unseg.protection.strips`).
2. :func:`saturate`: each channel's mean removed separately on every segment — the protected
   region and the rest, or per object (:meth:`NativeNoise.segment_rows`) — then the sign: the
   whole budget spent on every pixel in the generator's pattern.
   ``straight_through=True`` keeps a gradient (forward: the sign; backward: identity through the
   centred noise), so training can optimise the noise protection applies.
3. :func:`apply_budget`: unit noise onto an integer image under the per-pixel budget, exactly.

The float arithmetic that decides a pixel is float64 (saturation's means and signs, the budget's
products), so the bound is exact and the result does not depend on the device or on the strips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from unseg.budget import Budget
from unseg.data.transforms import InputFit, Letterbox
from unseg.protection.strips import row_strips

SATURATE_DEAD_ZONE = 1e-4  # unit-noise deviations below this are rounding, not pattern
OFF_REGION = 1  # the segment label off the protected region in every layout (as_segments, NativeNoise.segment_rows)


def _linear_taps(size_in: int, size_out: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps (align_corners=False) of output positions ``start:stop``: the two source
    indices and the float32 weight of the second one (sample points ``(i + 0.5) * in / out - 0.5``,
    clamped at the edges, as ``F.interpolate`` places them)."""
    source = np.maximum((np.arange(start, stop, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5, 0.0)
    first = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
    weight = np.clip(source - first, 0.0, 1.0).astype(np.float32)
    return first, np.minimum(first + 1, size_in - 1), weight


def map_to_native(grid: torch.Tensor, box: InputFit, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Rows ``start:stop`` (default: all) of a map over the model input, at the image's native size.

    Args:
        grid: ``(..., N, N)`` map over the square model input (noise ``B x 3 x N x N``, mask logits,
            ...), any float dtype; leading axes are kept.
        box: how the image fits the model input (native ``height x width``, input ``size``): a
            letterbox (its padding cut off) or a square resize (:mod:`unseg.data.transforms`).

    Returns:
        ``(..., stop - start, width)`` float32 on ``grid``'s device. Each value is a convex
        combination of at most four grid values (columns first, then rows), computed the same way
        for any strip or thread count; it matches ``F.interpolate(..., mode="bilinear")`` of the
        cropped grid to ~1e-6. Differentiable in ``grid`` (training maps its noise with it).
    """
    stop = box.height if stop is None else stop
    crop_h, crop_w = box.noise_crop(grid.shape[-1])
    row0, row1, row_weight = _linear_taps(crop_h, box.height, start, stop)
    col0, col1, col_weight = _linear_taps(crop_w, box.width, 0, box.width)
    low, high = int(row0.min(initial=0)), int(row1.max(initial=0)) + 1
    device = grid.device

    def on_device(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(device)

    rows = grid[..., low:high, :crop_w].float()
    col_w = on_device(col_weight)
    cols = rows[..., on_device(col0)] * (1 - col_w) + rows[..., on_device(col1)] * col_w  # (..., r, width)
    row_w = on_device(row_weight)[:, None]
    return cols[..., on_device(row0 - low), :] * (1 - row_w) + cols[..., on_device(row1 - low), :] * row_w


def _segment_index(segments: torch.Tensor, count: int) -> torch.Tensor:
    """Flat index into ``(batch * count)`` rows for ``(..., H, W)`` segment labels (each leading
    index gets its own ``count`` rows)."""
    flat = segments.reshape(-1, segments.shape[-2] * segments.shape[-1]).long()
    offsets = torch.arange(flat.shape[0], device=segments.device)[:, None] * count
    return (flat + offsets).reshape(-1)


def as_segments(region: torch.Tensor) -> torch.Tensor:
    """Segment labels of a region argument: a bool region -> 0 on it, 1 (``OFF_REGION``) off it;
    integer labels are returned as they are."""
    return (~region).to(torch.uint8) if region.dtype == torch.bool else region


def off_region_means(means: torch.Tensor) -> torch.Tensor:
    """``(..., S, C)`` segment means with every segment on the region zeroed, only ``OFF_REGION``'s
    kept: saturating with them removes the means off the region and keeps them on it, where a
    keyed generator's flat codes are meant (``GeneratorConfig.flat_codes``: the code *is* the
    channel mean, removing it would leave no noise)."""
    kept = torch.zeros_like(means)
    kept[..., OFF_REGION, :] = means[..., OFF_REGION, :]
    return kept


def segment_channel_sums(noise: torch.Tensor, segments: torch.Tensor,
                         count: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel sums of channels-last noise over each segment.

    Args:
        noise: ``(..., H, W, C)`` float noise.
        segments: ``(..., H, W)`` integer labels in ``0 .. count - 1``, or a bool region
            (:func:`as_segments`: segment 0 on it, 1 off it).
        count: the number of segments.

    Returns:
        ``(..., count, C)`` float64 sums and ``(..., count)`` int64 pixel counts. Sums of an
        image's strips add up to the image's; :func:`segment_channel_means` divides.
    """
    segments = as_segments(segments)
    lead, channels = segments.shape[:-2], noise.shape[-1]
    index = _segment_index(segments, count)
    rows = math.prod(lead) * count
    values = noise.double().reshape(-1, channels)
    sums = torch.zeros(rows, channels, dtype=torch.float64, device=noise.device).index_add(0, index, values)
    counts = torch.bincount(index, minlength=rows)[:rows]
    return sums.reshape(*lead, count, channels), counts.reshape(*lead, count)


def segment_channel_means(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``(..., S, C)`` means from :func:`segment_channel_sums` (0 for an empty segment)."""
    return sums / counts.clamp(min=1)[..., None]


def saturate(noise: torch.Tensor, region: torch.Tensor, means: torch.Tensor | None = None,
             straight_through: bool = False) -> torch.Tensor:
    """Unit noise pushed to the corners of the budget (see the module docstring).

    Args:
        noise: ``(..., H, W, C)`` channels-last unit noise (a strip of one image's rows, or a
            batch ``B x H x W x C``).
        region: ``(..., H, W)``: a bool protected region (two segments: on it, off it) or integer
            segment labels (:meth:`NativeNoise.segment_rows` gives each object its own, so every
            object keeps its own noise code and an object of zero noise, a keyed generator's
            null code, stays exactly untouched).
        means: ``(..., S, C)`` channel means of the segments to remove (those of the whole image
            when ``noise`` is one strip of it); default: this noise's own.
        straight_through: keep a gradient: the forward value is the sign, the gradient is that
            of the centred noise (identity).

    Returns:
        float32 noise of ``noise``'s shape in {-1, 0, 1} (0 where the centred noise is within
        ``SATURATE_DEAD_ZONE``, e.g. flat or zero noise up to rounding).

    Why: this keeps the noise's pattern, drops its colour cast, and spends the whole budget on
    every pixel. Measured (``src/unseg/weights/README.md``): a victim learns the generator's coarse
    pattern as a shortcut only at full amplitude; the raw tanh output (mean ≈ 0.5 colour shift plus
    a ±0.4 pattern) barely changed the victim.
    """
    if noise.shape[:-1] != region.shape:
        raise ValueError(f"noise {tuple(noise.shape)} and region {tuple(region.shape)} differ in size")
    segments = as_segments(region)
    if means is None:
        count = int(segments.max()) + 1 if segments.numel() else 1
        means = segment_channel_means(*segment_channel_sums(noise, segments, count))
    means = means.to(noise.device, torch.float64)
    count = means.shape[-2]
    per_pixel = means.reshape(-1, means.shape[-1])[_segment_index(segments, count)].reshape(noise.shape)
    centred = noise.double() - per_pixel
    hard = torch.where(centred.abs() < SATURATE_DEAD_ZONE, 0.0, torch.sign(centred.detach())).float()
    if straight_through:
        return hard + (centred - centred.detach()).float()
    return hard


def to_gray(noise: torch.Tensor, saturated: bool) -> torch.Tensor:
    """``(..., 3)`` unit noise -> ``(..., 1)`` for a one-channel (grayscale) image.

    The channel mean; for ``saturated`` noise (every channel in {-1, 0, 1}: the whole budget) its
    sign, so the gray image gets the whole budget too, in the same pattern. Why: a colour code's
    channels partly cancel in the mean — the checker of every binary mask, (+, +, −) / (−, −, +)
    (v11; v10: (+, −, +) / (−, +, −)), keeps only 1/3 of it, ±3 of 8 levels on a gray X-ray — and victims learn these
    codes as a shortcut only at full amplitude (``benchmarks/results/gray_probe.md``).
    """
    gray = noise.mean(dim=-1, keepdim=True)
    if not saturated:
        return gray
    return torch.where(gray.abs() < SATURATE_DEAD_ZONE, 0.0, torch.sign(gray)).to(noise.dtype)


def is_gray(pixels: np.ndarray) -> bool:
    """Whether ``H x W x C`` pixels are gray: one channel, or three equal ones (a gray X-ray or scan
    saved as RGB). Such an image gets gray noise (:func:`to_gray`, the same change on every channel)
    and stays gray: a victim that reads it as gray (one channel, or ITU-R 601 luma) then sees the whole
    budget, where colour noise keeps less: the checker's luma is ±6.2 of 8 levels (v11; v10: ±1.4).
    Compared a strip of rows at a time, stopping at the first colour strip (bounded memory on large
    images, quick for colour ones)."""
    if pixels.shape[-1] != 3:
        return pixels.shape[-1] == 1
    for start, stop in row_strips(pixels.shape[0], pixels.shape[1]):
        strip = pixels[start:stop]
        if not ((strip[..., 0] == strip[..., 1]).all() and (strip[..., 1] == strip[..., 2]).all()):
            return False
    return True


def apply_budget(image: torch.Tensor, noise: torch.Tensor, region: torch.Tensor, budget: Budget,
                 max_value: int) -> torch.Tensor:
    """Add unit ``noise`` to an integer ``image`` under the per-pixel budget, exactly.

    Args:
        image: ``(..., H, W, C)`` integer image (uint8, uint16 or a wider integer type holding
            such values), C = 1 or 3 (alpha is not passed here).
        noise: ``(..., H, W, 3)`` (or ``C``) float noise, clipped to [-1, 1]; a 1-channel image
            gets the channel mean (callers holding saturated noise reduce it with :func:`to_gray`
            first, which keeps the whole budget); 1-channel noise changes every channel alike.
        region: ``(..., H, W)`` bool, True on the protected object(s).
        budget: ε and ε_bg.
        max_value: the image type's largest value (255 for 8-bit, 65535 for 16-bit).

    Returns:
        The protected image, ``image``'s dtype and shape, with ``|out - in|`` at most ε's levels
        (:meth:`Budget.levels`) on ``region`` and ε_bg's elsewhere, on every pixel and channel.
    """
    if noise.shape[:-1] != image.shape[:-1] or region.shape != image.shape[:-1]:
        raise ValueError(f"noise {tuple(noise.shape)} / region {tuple(region.shape)} do not match image "
                         f"{tuple(image.shape)}")
    if image.shape[-1] != noise.shape[-1]:
        noise = noise.mean(dim=-1, keepdim=True)  # one channel: the same change on every channel
    inside, outside = budget.levels(max_value)
    levels = torch.where(region, float(inside), float(outside))[..., None].to(torch.float64)
    delta = noise.clamp(-1.0, 1.0).double() * levels  # float64: the product is exact
    delta = torch.minimum(torch.maximum(delta.round(), -levels), levels)
    out = image.to(torch.int32) + delta.to(torch.int32)  # |delta| <= max_value <= 65535: no overflow
    return out.clamp(0, max_value).to(image.dtype)


def linf_change(image: torch.Tensor, protected: torch.Tensor, region: torch.Tensor) -> tuple[int, int]:
    """Largest change in intensity levels ``(on region, off region)`` of ``(..., H, W, C)`` integer
    images; 0 for an empty part."""
    change = (protected.to(torch.int32) - image.to(torch.int32)).abs().amax(dim=-1)
    inside = int(torch.where(region, change, 0).max()) if region.numel() else 0
    outside = int(torch.where(region, 0, change).max()) if region.numel() else 0
    return inside, outside


def epsilon_map(region: torch.Tensor, budget: Budget) -> torch.Tensor:
    """Per-pixel budget as a fraction of the range for images in [0, 1]: ε where ``region`` is 1,
    ε_bg where it is 0 (soft values blend)."""
    region = region.float()
    return budget.fraction * region + budget.fraction_bg * (1 - region)


def scale_noise(noise: torch.Tensor, region: torch.Tensor, budget: Budget) -> torch.Tensor:
    """Unit noise in [-1, 1] -> float perturbation of images in [0, 1] bounded by the per-pixel
    budget (training; integer images go through :func:`apply_budget`)."""
    return noise * epsilon_map(region, budget)


@dataclass(frozen=True)
class Refinement:
    """A second noise mixed into an image's noise at native size, on its own share of the budget
    (:class:`unseg.protection.refine.Refiner` makes it).

    Attributes:
        grid: ``3 x S x S`` noise in {-1, 0, 1} over the input of the model that made it.
        box: the image's letterbox into that input (its own size ``S``).
        share: the fraction of every pixel's budget it takes; the other noise keeps ``1 - share``.
        untouched: ``H x W`` bool pixels it leaves alone (objects keyed 0: no noise), or None.
    """

    grid: torch.Tensor
    box: Letterbox
    share: float
    untouched: np.ndarray | None = None

    def mix(self, noise: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """``(1 - share) * noise + share * this``, for rows ``start:stop`` (``rows x W x 3``, or
        ``x 1`` for a gray image: this one taken to gray as saturated noise, :func:`to_gray`): in
        [-1, 1] wherever ``noise`` is, so the budget stays exact. This grid is mapped to native size
        and signed again (bilinear mapping blurs its ±1 steps)."""
        own = torch.sign(map_to_native(self.grid, self.box, start, stop)).permute(1, 2, 0).to(noise.device)
        if self.untouched is not None and self.untouched[start:stop].any():
            off = torch.from_numpy(np.ascontiguousarray(self.untouched[start:stop])).to(own.device)
            own = torch.where(off[..., None], 0.0, own)
        if noise.shape[-1] == 1:
            own = to_gray(own, saturated=True)
        return (1 - self.share) * noise + self.share * own


@dataclass
class NativeNoise:
    """One image's unit noise at its native resolution, made one strip of rows at a time.

    The generator's outputs stay on their device; a strip of noise costs ``12 * W * rows`` bytes
    there, whatever the image size.

    Attributes:
        box: how the image fits the model input (native size and model input size; letterbox or
            square resize, :data:`unseg.data.transforms.INPUT_FITS`).
        grid: ``3 x N x N`` noise over the model input, for the whole prompt.
        objects: per object, its ``H x W`` bool mask and the ``3 x N x N`` noise made with its
            own mask prompt (and, for a keyed generator, its key's code), which replaces
            ``grid``'s on the mask (where objects overlap, the later one wins).
        region: ``H x W`` bool (host memory), where ε applies.
        background: ``3 x N x N`` noise used off ``region`` instead of ``grid`` (a keyed
            generator's background: the whole prompt's noise without a code), or None (``grid``
            everywhere).
        means: ``(2 + K) x 3`` float64 channel means of the segments (:meth:`segment_rows`: the
            region outside every object, off the region, then each object) removed before the sign
            when the noise is saturated (:meth:`saturated`); None for the generator's raw noise.
        flat_objects: the noise on the region has flat channels that are meant (a keyed generator
            with ``"flat"`` codes, :attr:`~unseg.models.config.GeneratorConfig.flat_codes`: the
            prompt's code and each object's): saturation keeps the channel means there
            (:func:`off_region_means`) and removes only those off the region (the head's background
            noise); False removes every segment's means, so a flat channel would vanish.
        refinement: a second noise mixed in after saturation, on its share of the budget, or None.
    """

    box: InputFit
    grid: torch.Tensor
    objects: list[tuple[np.ndarray, torch.Tensor]]
    region: np.ndarray
    background: torch.Tensor | None = None
    means: torch.Tensor | None = None
    flat_objects: bool = False
    refinement: Refinement | None = None

    @property
    def device(self) -> torch.device:
        return self.grid.device

    @property
    def segment_count(self) -> int:
        """Segments of :meth:`segment_rows`: 2 + one per object."""
        return 2 + len(self.objects)

    def _on_device(self, array: np.ndarray) -> torch.Tensor:
        # np.require copies only a read-only or strided view (torch cannot wrap a read-only array)
        return torch.from_numpy(np.require(array, requirements=("C", "W"))).to(self.device, non_blocking=True)

    def region_rows(self, start: int, stop: int) -> torch.Tensor:
        """``(stop - start) x W`` bool region of those rows, on the noise's device."""
        return self._on_device(self.region[start:stop])

    def raw_rows(self, start: int, stop: int) -> torch.Tensor:
        """``(stop - start) x W x 3`` float32 generator noise of those rows, objects composed in."""
        noise = map_to_native(self.grid, self.box, start, stop).permute(1, 2, 0)
        if self.background is not None:
            outside = ~self.region[start:stop]
            if outside.any():
                back = map_to_native(self.background, self.box, start, stop).permute(1, 2, 0)
                noise = torch.where(self._on_device(outside)[..., None], back, noise)
        for mask, grid in self.objects:
            part = mask[start:stop]
            if part.any():
                own = map_to_native(grid, self.box, start, stop).permute(1, 2, 0)
                noise = torch.where(self._on_device(part)[..., None], own, noise)
        return noise

    def segment_rows(self, start: int, stop: int) -> torch.Tensor:
        """``(stop - start) x W`` int64 segment labels on the noise's device: 0 on the region outside
        every object, 1 off the region, ``2 + k`` on object ``k`` (the later object where they
        overlap). Each segment is saturated with its own means, so every object keeps its own
        noise (code) and an object of zero noise stays zero."""
        segments = (~self.region[start:stop]).astype(np.int64)
        for k, (mask, _) in enumerate(self.objects):
            segments[mask[start:stop]] = 2 + k
        return self._on_device(segments)

    def rows(self, start: int, stop: int, channels: int = 3) -> torch.Tensor:
        """The noise the budget gets for those rows (``rows x W x 3``, or ``x 1`` for a one-channel
        image: :func:`to_gray`): saturated with the whole image's means, or raw; with the refinement
        mixed in when there is one."""
        noise = self.raw_rows(start, stop)
        if self.means is not None:
            noise = saturate(noise, self.segment_rows(start, stop), self.means)
        if channels == 1:
            noise = to_gray(noise, saturated=self.means is not None)
        return noise if self.refinement is None else self.refinement.mix(noise, start, stop)

    def saturated(self) -> "NativeNoise":
        """This noise with the per-segment channel means of the whole image (a pass over the strips)."""
        count = self.segment_count
        sums = torch.zeros(count, self.grid.shape[0], dtype=torch.float64, device=self.device)
        counts = torch.zeros(count, dtype=torch.int64, device=self.device)
        for start, stop in row_strips(self.box.height, self.box.width):
            strip_sums, strip_counts = segment_channel_sums(self.raw_rows(start, stop), self.segment_rows(start, stop),
                                                            count)
            sums, counts = sums + strip_sums, counts + strip_counts
        means = segment_channel_means(sums, counts)
        return replace(self, means=off_region_means(means) if self.flat_objects else means)

    def full(self) -> np.ndarray:
        """``H x W x 3`` float32 noise of the whole image (12 bytes per pixel), in host memory."""
        return self.rows(0, self.box.height).cpu().numpy()

    def protect(self, pixels: np.ndarray, budget: Budget) -> tuple[np.ndarray, tuple[int, int]]:
        """``pixels`` (``H x W x C`` uint8 / uint16) with this noise added under ``budget``, strip
        by strip (a gray image, :func:`is_gray`, gets gray noise on every channel and stays gray);
        returns (protected pixels, measured L∞ in levels on / off the region)."""
        out = np.empty_like(pixels)
        max_value = int(np.iinfo(pixels.dtype).max)
        channels = 1 if is_gray(pixels) else 3
        inside = outside = 0
        for start, stop in row_strips(self.box.height, self.box.width):
            image, region = self._on_device(pixels[start:stop]), self.region_rows(start, stop)
            protected = apply_budget(image, self.rows(start, stop, channels), region, budget, max_value)
            strip_in, strip_out = linf_change(image, protected, region)
            inside, outside = max(inside, strip_in), max(outside, strip_out)
            out[start:stop] = protected.cpu().numpy()
        return out, (inside, outside)
