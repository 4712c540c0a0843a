"""Autoregressive (AR) class-wise perturbations, placed per pixel by the pixel's class.

Sandoval-Segura et al., "Autoregressive Perturbations for Data Poisoning" (NeurIPS 2022): each
class gets an AR process with its own random coefficients over a 3x3 window; the noise is
generated pixel by pixel from its (already generated) upper/left neighbours, so a tiny
convolution can tell the classes apart while the pattern looks like texture. Coefficients are
normalised to sum to one (as in the paper); draws whose process explodes are rejected and
redrawn. The result is scaled to unit L∞ (99th percentile, clipped) since our budget is L∞
(the paper's is L2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from unseg.baselines.sample import NoiseSample, compose_classwise

# Causal neighbours of (i, j) in a 3x3 window whose bottom-right entry is the generated pixel.
WINDOW_OFFSETS = [(di, dj) for di in (-2, -1, 0) for dj in (-2, -1, 0) if (di, dj) != (0, 0)]


def ar_coefficients(rng: np.random.Generator, channels: int = 3) -> np.ndarray:
    """``channels x 8`` random AR coefficients, each row summing to one."""
    raw = rng.normal(size=(channels, len(WINDOW_OFFSETS)))
    sums = raw.sum(axis=1, keepdims=True)
    sums = np.where(np.abs(sums) < 1e-3, 1e-3, sums)
    return raw / sums


def generate_ar(coefficients: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size x size x C`` AR pattern: Gaussian start in the first two rows/columns, then the recursion.

    Pixels on one anti-diagonal (i + j = d) depend only on earlier anti-diagonals, so each
    diagonal is computed in one vectorised step.
    """
    channels = coefficients.shape[0]
    pattern = np.zeros((size + 2, size + 2, channels))
    pattern[:2, :] = rng.normal(size=(2, size + 2, channels))
    pattern[:, :2] = rng.normal(size=(size + 2, 2, channels))
    for diagonal in range(4, 2 * size + 3):
        rows = np.arange(max(2, diagonal - size - 1), min(size + 1, diagonal - 2) + 1)
        cols = diagonal - rows
        value = np.zeros((len(rows), channels))
        for k, (di, dj) in enumerate(WINDOW_OFFSETS):
            value += coefficients[:, k] * pattern[rows + di, cols + dj]
        pattern[rows, cols] = np.clip(value, -1e6, 1e6)
    return pattern[2:, 2:]


def stable_pattern(rng: np.random.Generator, size: int, bound: float = 20.0, tries: int = 500) -> np.ndarray:
    """An AR pattern whose values stay within ``bound`` (start values are standard normal).

    Redraws coefficients until the process does not explode; if none of ``tries`` draws is
    stable, falls back to coefficients with unit L1 norm, which can never explode.
    """
    for _ in range(tries):
        pattern = generate_ar(ar_coefficients(rng), size, rng)
        if np.abs(pattern).max() < bound:
            return pattern
    raw = rng.uniform(-1.0, 1.0, size=(3, len(WINDOW_OFFSETS)))
    return generate_ar(raw / np.abs(raw).sum(axis=1, keepdims=True), size, rng)


@dataclass
class AutoregressiveNoise:
    """Class-wise AR patterns of side ``size``, tiled over the image."""

    num_classes: int
    seed: int = 0
    size: int = 32
    patterns: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        patterns = []
        for _ in range(self.num_classes + 1):
            pattern = stable_pattern(rng, self.size)
            centred = pattern - pattern.mean(axis=(0, 1))
            # unit scale at the 99th percentile of |value| (then clipped): a few early, large start
            # values must not shrink the whole pattern far below the budget
            scale = max(float(np.percentile(np.abs(centred), 99)), 1e-12)
            patterns.append(np.clip(centred / scale, -1.0, 1.0).astype(np.float32))
        self.patterns = np.stack(patterns)

    def __call__(self, samples: list[NoiseSample]) -> list[np.ndarray]:
        return [compose_classwise(self.patterns, s.mask, self.num_classes) for s in samples]
