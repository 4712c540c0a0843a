"""What every baseline noise maker sees for one image, and the interface they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class NoiseSample:
    """One training image to protect.

    Attributes:
        pixels: ``H x W x 3`` uint8 RGB image.
        mask: ``H x W`` integer class labels (may contain the ignore label).
        region: ``H x W`` bool, pixels that get the object budget ε (others ε_bg).
        seed: per-image seed (deterministic noise per image).
    """

    pixels: np.ndarray
    mask: np.ndarray
    region: np.ndarray
    seed: int


class NoiseMaker(Protocol):
    """Turns a batch of samples into unit noise maps ``H x W x 3`` in [-1, 1] (one per sample).

    The budget (ε on ``region``, ε_bg elsewhere) is applied afterwards, exactly, by
    :func:`unseg.protection.budget.apply_budget`.
    """

    def __call__(self, samples: list[NoiseSample]) -> list[np.ndarray]: ...


def class_index_map(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Labels outside ``0 .. num_classes - 1`` (void / ignore) become the extra index ``num_classes``."""
    mask = np.asarray(mask)
    return np.where((mask >= 0) & (mask < num_classes), mask, num_classes).astype(np.int64)


def tile_to(pattern: np.ndarray, height: int, width: int) -> np.ndarray:
    """Repeat a ``h x w x C`` pattern over ``height x width`` (cropping the last tile)."""
    reps = (-(-height // pattern.shape[0]), -(-width // pattern.shape[1]), 1)
    return np.tile(pattern, reps)[:height, :width]


def compose_classwise(patterns: np.ndarray, mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Per pixel, the tiled pattern of that pixel's class: ``patterns`` is ``K x h x w x 3`` (K = classes + 1 for void)."""
    height, width = mask.shape
    index = class_index_map(mask, num_classes)
    out = np.zeros((height, width, 3), dtype=np.float32)
    for label in np.unique(index):
        tiled = tile_to(patterns[label], height, width)
        out[index == label] = tiled[index == label]
    return out


def normalise_unit(pattern: np.ndarray) -> np.ndarray:
    """Scale a pattern so its largest magnitude is 1 (an all-zero pattern stays zero)."""
    peak = float(np.abs(pattern).max())
    return (pattern / peak).astype(np.float32) if peak > 0 else pattern.astype(np.float32)
