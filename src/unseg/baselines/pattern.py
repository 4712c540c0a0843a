"""The hand-made bar a learned generator must beat: one coarse checkerboard, sign flipped off the object.

The best hand-made noise of ``benchmarks/noise_structure_probe.py`` (Kvasir-SEG UNet,
``benchmarks/results/noise_structure_probe_kvasir_seg_unet.md``: period 64 native px lowered the
victim's IoU the most): a ±1 checkerboard with squares of ``period / 2`` pixels in the colour
(+, −, +) on the object region and its negative elsewhere, so "object" and "background" carry
opposite phases of one fixed, image-independent texture. It knows nothing about classes or
instances: every object gets the same pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unseg.baselines.sample import NoiseSample

COLOUR = np.array([1.0, -1.0, 1.0], dtype=np.float32)


def checkerboard(height: int, width: int, period: int) -> np.ndarray:
    """``H x W`` ±1 checkerboard with squares of ``period // 2`` pixels (top-left square +1)."""
    half = max(1, period // 2)
    y, x = np.ogrid[0:height, 0:width]
    return np.where((x // half + y // half) % 2 == 0, 1.0, -1.0).astype(np.float32)


@dataclass
class CheckerPattern:
    """Unit ``H x W x 3`` noise: ``checkerboard(period)`` x (+, −, +), negated off ``sample.region``.

    Attributes:
        period: checker period in native image pixels (64: the probe's best).
    """

    period: int = 64

    def __post_init__(self) -> None:
        if self.period < 2:
            raise ValueError(f"period must be at least 2 pixels, got {self.period}")

    def __call__(self, samples: list[NoiseSample]) -> list[np.ndarray]:
        return [self._one(sample) for sample in samples]

    def _one(self, sample: NoiseSample) -> np.ndarray:
        height, width = sample.region.shape
        sign = np.where(sample.region, 1.0, -1.0).astype(np.float32)
        return (checkerboard(height, width, self.period) * sign)[..., None] * COLOUR
