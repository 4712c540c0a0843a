"""Synthetic class-wise perturbations (SynPer), placed per pixel by the pixel's class.

Yu et al., "Availability Attacks Create Shortcuts" (KDD 2022): class-wise noise made of
low-dimensional, linearly separable synthetic patterns is enough to make data unlearnable.
Their recipe: draw one point per class from a Gaussian mixture in a low-dimensional space,
expand it into a small patch, and tile the patch over the image. For segmentation the pattern
is chosen per pixel by the pixel's ground-truth class (void pixels get their own pattern).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from unseg.baselines.sample import NoiseSample, compose_classwise, normalise_unit


@dataclass
class SynPer:
    """Class-wise tiled synthetic patterns.

    Attributes:
        num_classes: classes of the dataset (one extra pattern is made for void pixels).
        seed: seed of the class patterns (same for all images: the patterns are class-wise).
        cell: side of the low-dimensional seed grid (``cell x cell x 3`` values per class).
        patch: side of the tiled patch (the seed grid upsampled, nearest).
    """

    num_classes: int
    seed: int = 0
    cell: int = 2
    patch: int = 8
    patterns: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        count = self.num_classes + 1
        centres = rng.normal(0.0, 1.0, size=(count, 3, self.cell, self.cell))  # one mixture centre per class
        points = centres + 0.1 * rng.normal(size=centres.shape)  # a draw near each centre
        patches = F.interpolate(torch.from_numpy(points).float(), size=(self.patch, self.patch), mode="nearest")
        self.patterns = np.stack([normalise_unit(p) for p in patches.permute(0, 2, 3, 1).numpy()])

    def __call__(self, samples: list[NoiseSample]) -> list[np.ndarray]:
        return [compose_classwise(self.patterns, s.mask, self.num_classes) for s in samples]
