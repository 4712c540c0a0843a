"""Geometry shared by protection, training and evaluation: how an image maps into a square model input.

:class:`Letterbox` is SAM's resize-longest-side + pad (aspect kept); :class:`SquareResize` stretches each
axis onto the whole square (aspect lost, as most semantic training pipelines resize). Both answer the same
questions (``resized``, ``image_to_input``, ``noise_crop``, ``points_to_input``), so the protection path
(:func:`unseg.protection.perturb.map_to_native`) takes either; :data:`INPUT_FITS` names them.
"""

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
    def scales(self) -> tuple[float, float]:
        """(row, column) factors from image pixel coordinates to model-input coordinates: both ``scale``."""
        return self.scale, self.scale

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

    def noise_crop(self, n: int) -> tuple[int, int]:
        """(rows, columns) of an ``N x N`` map over the model input that cover the image content
        (the rest is padding); :func:`unseg.protection.perturb.map_to_native` resizes them."""
        h, w = self.resized
        return max(1, round(h * n / self.size)), max(1, round(w * n / self.size))

    def points_to_input(self, points: np.ndarray) -> np.ndarray:
        """Image pixel (x, y) coordinates -> model-input coordinates."""
        return np.asarray(points, dtype=np.float32) * self.scale


@dataclass(frozen=True)
class SquareResize:
    """How an ``height x width`` image maps into a square ``size`` model input by stretching each axis
    onto the whole square (no padding; a fixed-size resize, as victims that squash their inputs do).

    Why the protector uses it by default (:data:`DEFAULT_FIT`): a pattern made on this input lands on
    the *same* relative place of every image, whatever its aspect, so a victim that resizes images to
    one fixed size sees one pattern in one phase on every training image; made on the letterboxed
    input it lands at another scale and phase per aspect (``benchmarks/results/adversarial_poison_probe.md``,
    stop 29; ``benchmarks/results/evaluate_protection_square_fit_cpu/``).
    """

    height: int
    width: int
    size: int

    @property
    def scales(self) -> tuple[float, float]:
        """(row, column) factors from image pixel coordinates to model-input coordinates."""
        return self.size / self.height, self.size / self.width

    @property
    def resized(self) -> tuple[int, int]:
        """(height, width) of the image content inside the model input: all of it."""
        return self.size, self.size

    def image_to_input(self, image: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """``B x C x H x W`` image or mask -> ``B x C x size x size``."""
        if mode == "nearest":
            return F.interpolate(image, size=self.resized, mode="nearest")
        return F.interpolate(image, size=self.resized, mode=mode, align_corners=False, antialias=True)

    def noise_crop(self, n: int) -> tuple[int, int]:
        """(rows, columns) of an ``N x N`` map over the model input that cover the image: all of it."""
        return n, n

    def points_to_input(self, points: np.ndarray) -> np.ndarray:
        """Image pixel (x, y) coordinates -> model-input coordinates (each axis its own scale)."""
        row_scale, column_scale = self.scales
        return np.asarray(points, dtype=np.float32) * np.array([column_scale, row_scale], dtype=np.float32)


InputFit = Letterbox | SquareResize
INPUT_FITS: dict[str, type[Letterbox] | type[SquareResize]] = {"letterbox": Letterbox, "square": SquareResize}
# The protector's default: every victim of ``unseg evaluate`` resizes its images to one fixed size,
# and on Kvasir-SEG (aspects 1.05-1.26) the shipped generator's noise takes the box-prompted `sam`
# victim below box-fill sooner and lower when fitted square (mean IoU of epochs 11-20: 16.1 / 15.6 on
# two seeds, letterbox 28.3; benchmarks/results/evaluate_protection_square_fit_cpu/). A victim that
# keeps each image's aspect (resize the longest side and pad) would see the letterbox fit consistently.
DEFAULT_FIT = "square"


def image_to_model_input(box: InputFit, image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``H x W x C`` uint8 (C = 1 or 3) or uint16 (C = 1) image -> ``1 x 3 x size x size`` model
    input on ``device``, the same as ``box.image_to_input(to_float_tensor(rgb8))``, one channel at
    a time.

    Converting one channel at a time keeps the float copy of a large image at 4 bytes per pixel
    (the whole RGB image in float32 would be 12, and the division another 12); per-channel
    resizing gives the identical result (checked in ``tests/test_large_images.py``). On a GPU only
    the 8-bit channel travels; the float conversion and the resize run there.
    """
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    channels = []
    for channel in range(image.shape[2]):
        tensor = torch.from_numpy(np.ascontiguousarray(image[..., channel]))[None, None].to(device).float()
        channels.append(box.image_to_input(tensor.div_(255.0)))
        del tensor
    return torch.cat(channels * (3 // len(channels)), dim=1)  # gray: the one channel three times


def to_float_tensor(image: np.ndarray) -> torch.Tensor:
    """``H x W x 3`` uint8 (or uint16) RGB -> ``1 x 3 x H x W`` float in [0, 1]."""
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).float() / scale
