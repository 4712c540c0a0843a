"""Reading images and masks as users have them, and writing outputs atomically.

Images come back upright (EXIF orientation applied) as ``H x W x C`` arrays: uint8 for 8-bit
files, uint16 for 16-bit ones; C is 3 (RGB) or 1 (grayscale). An alpha channel is returned
separately so it can be written back untouched.
"""

from __future__ import annotations

import os
import secrets
import stat
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


def _upright(source: Path | Image.Image) -> Image.Image:
    """A decoded image (read from ``source`` if it is a path) turned as its EXIF orientation says:
    the one place unseg applies EXIF rotation, for files, masks and PIL images passed in."""
    if isinstance(source, Path):
        if not source.is_file():
            raise ImageReadError(f"file not found: {source}")
        try:
            image = Image.open(source)
            image.load()
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise ImageReadError(f"cannot read {source}: corrupt or unsupported image ({error})") from error
        source = image
    return ImageOps.exif_transpose(source)


def read_image(path: str | Path) -> LoadedImage:
    """Read an image file upright; see the module docstring for the returned layout."""
    return loaded_from_pil(Path(path))


def as_loaded(image: np.ndarray | Image.Image | str | Path | LoadedImage) -> tuple[LoadedImage, bool]:
    """Any image input of the Python API -> (LoadedImage, whether the input was a 2-D array).

    A path is read (:func:`read_image`), a PIL image turned upright, an array must be uint8 or
    uint16, ``H x W`` or ``H x W x C`` with C = 1, 3 or 4 (the 4th channel is alpha).
    """
    if isinstance(image, (str, Path)):
        return read_image(image), False
    if isinstance(image, Image.Image):
        return loaded_from_pil(image), False
    if isinstance(image, LoadedImage):
        return image, False
    array = np.asarray(image)
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"image array must be uint8 or uint16, got {array.dtype}")
    if array.ndim == 2:
        return LoadedImage(array[..., None]), True
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"image array must be H x W, H x W x 1, H x W x 3 or H x W x 4, got {array.shape}")
    if array.shape[2] == 4:
        return LoadedImage(array[..., :3].copy(), array[..., 3].copy()), False
    return LoadedImage(array), False


def loaded_from_pil(source: Image.Image | Path) -> LoadedImage:
    """Pixels of a PIL image (or image file), turned upright, in the layout of :func:`read_image`."""
    image = _upright(source)
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
    return LoadedImage(_pixels(image), alpha)


def _pixels(image: Image.Image, rows: int = 256) -> np.ndarray:
    """``H x W x C`` uint8 copy of an RGB or L image, filled a band of rows at a time: a large
    image then costs its array plus PIL's own copy, not a third whole copy in between."""
    width, height = image.size
    array = np.empty((height, width, len(image.getbands())), np.uint8)
    for top in range(0, height, rows):
        band = np.asarray(image.crop((0, top, width, min(height, top + rows))))
        array[top : top + rows] = band.reshape(band.shape[0], width, -1)
    return array


def read_mask(path: str | Path, dtype: type | None = np.int64) -> np.ndarray:
    """Read a single-channel mask (binary or class-index PNG) as an ``H x W`` integer array.

    RGB masks whose three channels are equal are accepted; colour masks are rejected.
    ``dtype``: the array's type; None keeps the file's own (uint8 for an 8-bit PNG: 1 byte per
    pixel instead of int64's 8, for large images).
    """
    image = _upright(Path(path))
    array = np.asarray(image)
    if array.ndim == 3:
        if array.shape[2] >= 3 and (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all():
            array = array[..., 0]
        else:
            raise ImageReadError(f"{path}: mask must be single-channel (binary or class indices), got {image.mode}")
    return array.astype(dtype) if dtype is not None else array.copy()


PARTIAL_SUFFIX = ".partial"  # temporary files of atomic_write: hidden, and no image suffix


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then move the result into place, so no half-written ``path`` exists.

    The temporary file sits beside ``path`` as ``.<name>.<random>.partial``: hidden, and with no
    image suffix, so a ``*.png`` glob never sees a file cut short by a kill (the next
    ``unseg protect`` into the folder removes such leftovers, see :func:`remove_partial_files`).
    It is created with mode ``0o666`` less the umask, as ``open()`` would create ``path``, so the
    output gets the usual permissions (``mkstemp`` would give 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_partial(path)
    mode = stat.S_IMODE(tmp.stat().st_mode)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # a writer may replace the file with its own 0600 temporary (safetensors does)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _create_partial(path: Path) -> Path:
    """A new empty temporary file for ``path`` (exclusive create; the kernel applies the umask)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


def remove_partial_files(folder: Path) -> list[Path]:
    """Delete the temporary files that killed runs of :func:`atomic_write` left under ``folder``
    (recursively); returns them. Only for a folder no other process is writing into."""
    stale = [path for path in Path(folder).rglob(f".*{PARTIAL_SUFFIX}") if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


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
