"""Defences an attacker may use against protected training data, parsed from short names.

Image-level (applied to each downloaded training image at full resolution, before resizing):
``jpeg<Q>`` JPEG re-encoding at quality Q, ``blur<S>`` Gaussian blur with σ = S px, ``bits<B>``
bit-depth reduction to B bits, ``gray`` grayscale (replicated to 3 channels).
Training-time: ``augment`` (flip, scale-crop, cutout), ``advtrain`` / ``advtrain<L>`` PGD
adversarial training with radius L/255 (default 4/255).
Data mixtures: ``mix<K>`` K % of the training images clean, the rest protected;
``cleanpart<K>`` the same K % clean images alone (the reference for ``mix<K>``: the paper's
claim is that the protected part adds nothing).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

ImageTransform = Callable[[np.ndarray], np.ndarray]
NONE = "none"
DEFAULT_ADVERSARIAL_LEVELS = 4


def jpeg(quality: int) -> ImageTransform:
    """Re-encode as JPEG at ``quality`` (4:2:0 chroma, PIL's default, as a scraper would)."""

    def transform(pixels: np.ndarray) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).copy()

    return transform


def gaussian_blur(sigma: float) -> ImageTransform:
    """Gaussian blur with standard deviation ``sigma`` pixels."""
    return lambda pixels: np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius=sigma))).copy()


def bit_depth(bits: int) -> ImageTransform:
    """Keep the ``bits`` most significant bits, mapped back to bin centres."""
    step = 2 ** (8 - bits)
    return lambda pixels: (pixels // step * step + step // 2).clip(0, 255).astype(np.uint8)


def grayscale(pixels: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, replicated to three channels."""
    gray = np.asarray(Image.fromarray(pixels).convert("L"))
    return np.repeat(gray[..., None], 3, axis=2)


@dataclass(frozen=True)
class Defence:
    """A parsed defence.

    Attributes:
        name: the short name it was parsed from.
        image_transform: per-image transform of the training images, or None.
        augment: standard augmentation during training.
        adversarial_epsilon: PGD adversarial-training radius (0 = off).
        clean_fraction: for mixtures, the fraction of training images kept clean (else None).
        clean_only: train on the clean fraction alone (the ``cleanpart`` reference).
    """

    name: str
    image_transform: ImageTransform | None = None
    augment: bool = False
    adversarial_epsilon: float = 0.0
    clean_fraction: float | None = None
    clean_only: bool = False

    @property
    def is_mixture(self) -> bool:
        return self.clean_fraction is not None and not self.clean_only


PATTERNS: list[tuple[str, Callable[[re.Match], dict]]] = [
    (r"none", lambda m: {}),
    (r"jpeg(\d+)", lambda m: {"image_transform": jpeg(_in_range(int(m[1]), 1, 100, "JPEG quality"))}),
    (r"blur(\d+(?:\.\d+)?)", lambda m: {"image_transform": gaussian_blur(float(m[1]))}),
    (r"bits(\d)", lambda m: {"image_transform": bit_depth(_in_range(int(m[1]), 1, 8, "bit depth"))}),
    (r"gray", lambda m: {"image_transform": grayscale}),
    (r"augment", lambda m: {"augment": True}),
    (r"advtrain(\d*)", lambda m: {"adversarial_epsilon": int(m[1] or DEFAULT_ADVERSARIAL_LEVELS) / 255}),
    (r"mix(\d+)", lambda m: {"clean_fraction": _in_range(int(m[1]), 0, 100, "clean percentage") / 100}),
    (r"cleanpart(\d+)", lambda m: {"clean_fraction": _in_range(int(m[1]), 1, 100, "clean percentage") / 100, "clean_only": True}),
]


def _in_range(value: int, low: int, high: int, what: str) -> int:
    if not low <= value <= high:
        raise ValueError(f"{what} must be in [{low}, {high}], got {value}")
    return value


def parse_defence(name: str) -> Defence:
    """Parse a defence name (see the module docstring); raises ValueError for unknown names."""
    for pattern, build in PATTERNS:
        match = re.fullmatch(pattern, name)
        if match:
            return Defence(name=name, **build(match))
    raise ValueError(f"unknown defence {name!r}; use none, jpeg<Q>, blur<S>, bits<B>, gray, augment, advtrain[<L>], mix<K>, cleanpart<K>")


def clean_subset(count: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the ``round(fraction * count)`` images kept clean (seeded, same for every method)."""
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[: int(round(fraction * count))])
