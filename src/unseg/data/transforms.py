"""Geometry shared by protection, training and evaluation: SAM-style resize-longest-side + pad."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Letterbox:
    """How an ``height x width`` image maps into a square ``size`` model input.

    The image is resized so its longest side is ``size`` and padded at the bottom/right
    (as SAM does); ``scale`` maps image pixel coordinates to model-input coordinates.
    """

    height: int
    width: int
    size: int

    @property
    def scale(self) -> float:
        return self.size / max(self.height, self.width)

    @property
    def resized(self) -> tuple[int, int]:
        """(height, width) of the image content inside the model input."""
        return max(1, round(self.height * self.scale)), max(1, round(self.width * self.scale))

    def image_to_input(self, image: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """``B x C x H x W`` image or mask -> ``B x C x size x size`` (zero padded)."""
        h, w = self.resized
        if mode == "nearest":
            resized = F.interpolate(image, size=(h, w), mode="nearest")
        else:
            resized = F.interpolate(image, size=(h, w), mode=mode, align_corners=False, antialias=True)
        return F.pad(resized, (0, self.size - w, 0, self.size - h))

    def map_to_image(self, grid: torch.Tensor) -> torch.Tensor:
        """A ``B x C x N x N`` map over the model input -> ``B x C x height x width`` over the image.

        The padded part is cut off and the rest resized bilinearly; values stay within the
        input's range (bilinear interpolation is a convex combination).
        """
        n = grid.shape[-1]
        h, w = self.resized
        crop_h, crop_w = max(1, round(h * n / self.size)), max(1, round(w * n / self.size))
        cropped = grid[..., :crop_h, :crop_w]
        return F.interpolate(cropped, size=(self.height, self.width), mode="bilinear", align_corners=False)

    def map_rows_to_image(self, grid: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of :meth:`map_to_image`, computed alone: ``C x N x N`` map over the
        model input -> ``(stop - start) x width x C`` float32 over the image.

        Same geometry as ``F.interpolate(..., mode="bilinear", align_corners=False)`` (sample
        points ``(i + 0.5) * in / out - 0.5``, clamped at the edges), so a native-size map can be
        made one strip of rows at a time in bounded memory. Each output row is a convex
        combination of at most four grid values computed the same way whatever the strip or the
        number of threads (torch's kernel rounds differently with 1 and 2 threads), so the
        result is identical for any strip split; it matches ``map_to_image`` to ~1e-6.
        """
        n = grid.shape[-1]
        h, w = self.resized
        crop_h, crop_w = max(1, round(h * n / self.size)), max(1, round(w * n / self.size))
        row0, row1, row_weight = _linear_taps(crop_h, self.height, start, stop)
        col0, col1, col_weight = _linear_taps(crop_w, self.width, 0, self.width)
        low, high = int(row0.min(initial=0)), int(row1.max(initial=0)) + 1
        rows = np.moveaxis(np.asarray(grid, dtype=np.float32)[:, low:high, :crop_w], 0, -1)  # r x crop_w x C
        cols = rows[:, col0] * (1 - col_weight)[:, None] + rows[:, col1] * col_weight[:, None]  # r x width x C
        weight = row_weight[:, None, None]
        return cols[row0 - low] * (1 - weight) + cols[row1 - low] * weight

    def points_to_input(self, points: np.ndarray) -> np.ndarray:
        """Image pixel (x, y) coordinates -> model-input coordinates."""
        return np.asarray(points, dtype=np.float32) * self.scale


def _linear_taps(size_in: int, size_out: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps (align_corners=False) of output positions ``start:stop``: the two source
    indices and the float32 weight of the second one."""
    source = np.maximum((np.arange(start, stop, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5, 0.0)
    first = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
    weight = np.clip(source - first, 0.0, 1.0).astype(np.float32)
    return first, np.minimum(first + 1, size_in - 1), weight


def image_to_model_input(box: Letterbox, image: np.ndarray) -> torch.Tensor:
    """``H x W x C`` uint8 (C = 1 or 3) or uint16 (C = 1) image -> ``1 x 3 x size x size`` model
    input, the same as ``box.image_to_input(to_float_tensor(rgb8))``, one channel at a time.

    Converting one channel at a time keeps the float copy of a large image at 4 bytes per pixel
    (the whole RGB image in float32 would be 12, and the division another 12); per-channel
    resizing gives the identical result (checked in ``tests/test_large_images.py``).
    """
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    channels = []
    for channel in range(image.shape[2]):
        tensor = torch.from_numpy(np.ascontiguousarray(image[..., channel]))[None, None].float()
        channels.append(box.image_to_input(tensor.div_(255.0)))
        del tensor
    return torch.cat(channels * (3 // len(channels)), dim=1)  # gray: the one channel three times


def to_float_tensor(image: np.ndarray) -> torch.Tensor:
    """``H x W x 3`` uint8 (or uint16) RGB -> ``1 x 3 x H x W`` float in [0, 1]."""
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).float() / scale
