"""CUDA: class-wise random convolution filters, applied per pixel by the pixel's class.

Sadasivan et al., "CUDA: Convolution-based Unlearnable Datasets" (CVPR 2023): every image of a
class is blurred with that class's random k x k filter (weights drawn uniformly); the filter is
the shortcut. CUDA is not norm-bounded in the paper; here the change (filtered − image) is
clipped into the same per-pixel budget as every other method, to compare at equal ε: the unit
noise is the change divided by the pixel's budget in intensity levels, clipped to [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from unseg.baselines.sample import NoiseSample, class_index_map
from unseg.budget import DEFAULT_BUDGET, Budget


@dataclass
class ConvolutionFilters:
    """Class-wise random depthwise ``kernel x kernel`` filters (uniform weights, normalised to sum 1)."""

    num_classes: int
    seed: int = 0
    kernel: int = 3
    budget: Budget = DEFAULT_BUDGET
    filters: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {self.kernel}")
        generator = torch.Generator().manual_seed(self.seed)
        weights = torch.rand(self.num_classes + 1, 3, 1, self.kernel, self.kernel, generator=generator)
        self.filters = weights / weights.sum(dim=(-1, -2), keepdim=True)

    def __call__(self, samples: list[NoiseSample]) -> list[np.ndarray]:
        return [self._one(sample) for sample in samples]

    def _one(self, sample: NoiseSample) -> np.ndarray:
        image = torch.from_numpy(sample.pixels.astype(np.float32)).permute(2, 0, 1)[None]
        padded = F.pad(image, [self.kernel // 2] * 4, mode="reflect")
        index = class_index_map(sample.mask, self.num_classes)
        change = np.zeros(sample.pixels.shape, dtype=np.float32)
        for label in np.unique(index):
            filtered = F.conv2d(padded, self.filters[label], groups=3)[0].permute(1, 2, 0).numpy()
            where = index == label
            change[where] = filtered[where] - sample.pixels[where]
        levels = np.where(sample.region, *self.budget.levels())[..., None]
        return np.clip(change / np.maximum(levels, 1), -1.0, 1.0).astype(np.float32)
