"""Reading images and masks as users have them, and writing outputs atomically.

Images come back upright (EXIF orientation applied) as ``H x W x C`` arrays: uint8 for 8-bit
files, uint16 for 16-bit ones; C is 3 (RGB) or 1 (grayscale). An alpha channel is returned
separately so it can be written back untouched.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(ValueError):
    """An image or mask file is missing, corrupt or of an unsupported kind."""


@dataclass
class LoadedImage:
    """Pixels of one image file.

    Attributes:
        pixels: ``H x W x C`` uint8 or uint16, C = 3 (RGB) or 1 (grayscale).
        alpha: ``H x W`` alpha channel of the same dtype, or None.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.pixels.shape[0], self.pixels.shape[1]

    def rgb8(self) -> np.ndarray:
        """``H x W x 3`` uint8 RGB view for the model (16-bit scaled down, gray replicated)."""
        pixels = self.pixels
        if pixels.dtype == np.uint16:
            pixels = (pixels.astype(np.uint32) * 255 + 32767) // 65535
        pixels = pixels.astype(np.uint8)
        return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise ImageReadError(f"file not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(f"cannot read {path}: corrupt or unsupported image ({error})") from error
    return ImageOps.exif_transpose(image)


def read_image(path: str | Path) -> LoadedImage:
    """Read an image file upright; see the module docstring for the returned layout."""
    return loaded_from_pil(_open(Path(path)))


def loaded_from_pil(image: Image.Image) -> LoadedImage:
    """Pixels of an (already upright) PIL image in the layout of :func:`read_image`."""
    alpha = None
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image)
        if array.dtype != np.uint16:
            array = np.clip(array, 0, 65535).astype(np.uint16)
        return LoadedImage(array[..., None])
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA" if image.mode != "LA" else "LA")
        alpha = np.asarray(image)[..., -1].copy()
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    array = np.asarray(image).copy()
    if array.ndim == 2:
        array = array[..., None]
    return LoadedImage(array, alpha)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a single-channel mask (binary or class-index PNG) as an ``H x W`` integer array.

    RGB masks whose three channels are equal are accepted; colour masks are rejected.
    """
    image = _open(Path(path))
    array = np.asarray(image)
    if array.ndim == 3:
        if array.shape[2] >= 3 and (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all():
            array = array[..., 0]
        else:
            raise ImageReadError(f"{path}: mask must be single-channel (binary or class indices), got {image.mode}")
    return array.astype(np.int64)


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then move the result into place, so no half-written ``path`` exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def to_pil(pixels: np.ndarray, alpha: np.ndarray | None = None) -> Image.Image:
    """Inverse of :func:`read_image`: a PIL image of the given pixels (+ alpha)."""
    if pixels.dtype == np.uint16:
        if pixels.shape[2] != 1:
            raise ValueError("16-bit output is supported for grayscale images only")
        return Image.fromarray(pixels[..., 0])  # PIL picks I;16
    channels = pixels[..., 0] if pixels.shape[2] == 1 else pixels
    image = Image.fromarray(channels)
    if alpha is not None:
        image.putalpha(Image.fromarray(alpha.astype(np.uint8)))
    return image


def write_image(path: str | Path, pixels: np.ndarray, alpha: np.ndarray | None = None, jpeg_quality: int | None = None) -> None:
    """Write pixels atomically: lossless PNG unless ``jpeg_quality`` is given (then JPEG, no alpha)."""
    image = to_pil(pixels, alpha)
    if jpeg_quality is not None:
        image = image.convert("RGB") if image.mode not in ("RGB", "L") else image
        atomic_write(Path(path), lambda tmp: image.save(tmp, format="JPEG", quality=jpeg_quality, subsampling=0))
    else:
        atomic_write(Path(path), lambda tmp: image.save(tmp, format="PNG"))
