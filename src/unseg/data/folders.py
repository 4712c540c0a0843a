"""The one reader of the images + masks folder layout, for protect, train and evaluate alike.

Layout: images in one folder, masks (binary or class-index PNGs) in another, matched by file stem;
sub-folders are mirrored (``images/city/a.jpg`` -> ``masks/city/a.png``, else ``masks/a.png``).
A split file lists stems, one per line (blank lines and ``#`` comments skipped). A dataset folder
(:class:`unseg.data.segmentation.SegmentationFolder`, ``unseg train --data``) is
``images/`` + ``masks/`` + ``splits/<split>.txt``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unseg.data.images import IMAGE_SUFFIXES, LoadedImage, read_image, read_mask


def read_split(split_file: str | Path) -> list[str]:
    """Stems listed in a split file (one per line; blank lines and ``#`` comments skipped)."""
    path = Path(split_file)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    stems = [line.strip() for line in path.read_text().splitlines()]
    return [s for s in stems if s and not s.startswith("#")]


def list_images(folder: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, hidden files skipped), minus ``exclude`` trees.

    Raises FileNotFoundError when ``folder`` is not a directory."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"images folder not found: {folder}")
    excluded = [Path(path).resolve() for path in exclude]
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if not path.is_file() or any(path.resolve().is_relative_to(root) for root in excluded):
            continue
        found.append(path)
    return found


def find_by_stem(folder: Path, stem: str, first: tuple[str, ...] = ()) -> Path | None:
    """``folder/<stem><suffix>`` for the first image suffix that exists (``first`` tried before
    the others; each also in upper case), or None."""
    for suffix in dict.fromkeys((*first, *IMAGE_SUFFIXES)):
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def check_pair_size(image_size: tuple[int, int], mask: np.ndarray, what: str) -> None:
    """Raise ValueError unless an ``H x W`` mask has the image's (height, width)."""
    if mask.shape[:2] != tuple(image_size):
        raise ValueError(f"{what}: mask {mask.shape[1]}x{mask.shape[0]} and image {image_size[1]}x{image_size[0]} "
                         "sizes differ")


@dataclass(frozen=True)
class MaskFolder:
    """A folder of images and a folder of their masks, matched by stem (see the module docstring)."""

    images: Path
    masks: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", Path(self.images))
        object.__setattr__(self, "masks", Path(self.masks))

    def check(self) -> "MaskFolder":
        """Raise FileNotFoundError unless both folders exist; returns the folder."""
        for name, path in (("image", self.images), ("mask", self.masks)):
            if not path.is_dir():
                raise FileNotFoundError(f"{name} folder not found: {path}")
        return self

    def image_path(self, stem: str) -> Path:
        """The image of ``stem`` (any supported suffix, either case); FileNotFoundError if none."""
        path = find_by_stem(self.images, stem)
        if path is None:
            raise FileNotFoundError(f"no image for stem {stem!r} in {self.images}")
        return path

    def mask_path(self, relative: str | Path) -> Path | None:
        """The mask of an image at ``relative`` (a path under ``images``, or a stem): same relative
        folder and stem (PNG preferred, then any image suffix), else the same stem at the top."""
        relative = Path(relative)
        return find_by_stem(self.masks / relative.parent, relative.stem, (".png",)) or find_by_stem(
            self.masks, relative.stem, (".png",))

    def stems(self, split_file: str | Path | None = None) -> list[str]:
        """The stems of ``split_file``, or (None) of every mask at the top of ``masks``, sorted."""
        if split_file:
            return read_split(split_file)
        return sorted(path.stem for path in self.masks.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)

    def pairs(self, stems: list[str]) -> list[tuple[Path, Path]]:
        """(image, mask) paths of ``stems``; FileNotFoundError when images or masks are missing."""
        pairs = [(self.image_path(stem), self.mask_path(stem)) for stem in stems]
        missing = [stem for stem, (_, mask) in zip(stems, pairs) if mask is None]
        if missing:
            raise FileNotFoundError(f"{len(missing)} masks missing in {self.masks}, e.g. {missing[:3]}")
        return pairs  # type: ignore[return-value]

    def split_pairs(self, split_file: str | Path | None = None) -> list[tuple[Path, Path]]:
        """(image, mask) paths of the stems of ``split_file`` (every mask when None), both folders
        checked; ValueError when there is none (what the training datasets read)."""
        pairs = self.check().pairs(self.stems(split_file))
        if not pairs:
            raise ValueError(f"no image/mask pairs found in {self.images} / {self.masks}")
        return pairs

    def read_mask(self, stem: str) -> np.ndarray:
        """The ``H x W`` int64 mask of ``stem``."""
        path = self.mask_path(stem)
        if path is None:
            raise FileNotFoundError(f"no mask for stem {stem!r} in {self.masks}")
        return read_mask(path)

    def read_pair(self, stem: str) -> tuple[LoadedImage, np.ndarray]:
        """Image and mask of ``stem``, checked to be of one size."""
        image, mask = read_image(self.image_path(stem)), self.read_mask(stem)
        check_pair_size(image.size, mask, stem)
        return image, mask
