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

    def points_to_input(self, points: np.ndarray) -> np.ndarray:
        """Image pixel (x, y) coordinates -> model-input coordinates."""
        return np.asarray(points, dtype=np.float32) * self.scale


def to_float_tensor(image: np.ndarray) -> torch.Tensor:
    """``H x W x 3`` uint8 (or uint16) RGB -> ``1 x 3 x H x W`` float in [0, 1]."""
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).float() / scale
