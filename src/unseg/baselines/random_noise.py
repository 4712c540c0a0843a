"""Uniform random noise: the weakest baseline (i.i.d. per pixel, seeded per image)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unseg.baselines.sample import NoiseSample


@dataclass
class RandomNoise:
    """I.i.d. noise per pixel and channel: uniform in [-1, 1], or random signs (``sign=True``, full budget)."""

    sign: bool = False

    def __call__(self, samples: list[NoiseSample]) -> list[np.ndarray]:
        return [self._one(sample) for sample in samples]

    def _one(self, sample: NoiseSample) -> np.ndarray:
        rng = np.random.default_rng(sample.seed)
        shape = (*sample.pixels.shape[:2], 3)
        if self.sign:
            return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=shape)
        return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
