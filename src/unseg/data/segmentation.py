"""Semantic-segmentation folders (``images/`` + ``masks/`` + ``splits/<split>.txt``) for evaluation.

Images and masks are read with the same readers as ``unseg protect`` (:mod:`unseg.data.images`),
so a protected PNG comes back bit-exact. Victims train at a small fixed size: the resize happens
*after* protection, on the image the attacker downloaded (that is the attacker's choice, and it
is part of what the noise has to survive).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unseg.data.folders import MaskFolder, read_split
from unseg.data.images import LoadedImage, read_image

OBJECT_RULES = ("all_labelled", "foreground")


@dataclass(frozen=True)
class DatasetSpec:
    """What a segmentation folder holds and how the benchmark uses it.

    Attributes:
        name: short name (folder name for the known sets).
        num_classes: valid labels are ``0 .. num_classes - 1``.
        ignore_index: label skipped by loss and metrics (None: every pixel counts).
        class_names: one name per class.
        train_split / test_split: split files used for victim training / clean testing.
        objects: which pixels are "objects to protect" (ε) — ``all_labelled`` (every non-ignored
            pixel) or ``foreground`` (label != 0; background gets ε_bg).
        aspect: width / height of the victim training size.
        primary_metric: the headline number (``miou`` for multi-class, ``iou`` of class 1 for binary).
    """

    name: str
    num_classes: int
    ignore_index: int | None
    class_names: tuple[str, ...]
    train_split: str = "train"
    test_split: str = "test"
    objects: str = "all_labelled"
    aspect: float = 1.0
    primary_metric: str = "miou"

    def __post_init__(self) -> None:
        if self.objects not in OBJECT_RULES:
            raise ValueError(f"objects must be one of {OBJECT_RULES}, got {self.objects!r}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")

    @property
    def binary(self) -> bool:
        return self.num_classes == 2

    @property
    def pad_label(self) -> int:
        """The label a letterboxing victim gives its padding (:data:`VICTIM_FITS`): the ignore label
        (neither trained on nor scored), else background 0 (as SAM-style fine-tuning pads its masks)."""
        return 0 if self.ignore_index is None else self.ignore_index

    def object_region(self, mask: np.ndarray) -> np.ndarray:
        """``H x W`` bool: pixels that get the object budget ε under this set's ``objects`` rule."""
        labelled = (mask >= 0) & (mask < self.num_classes)
        if self.ignore_index is not None:
            labelled &= mask != self.ignore_index
        return labelled & (mask != 0) if self.objects == "foreground" else labelled


CAMVID = DatasetSpec(
    name="camvid",
    num_classes=11,
    ignore_index=11,
    class_names=("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian", "bicyclist"),
    test_split="test",
    objects="all_labelled",
    aspect=4 / 3,
)
KVASIR_SEG = DatasetSpec(
    name="kvasir_seg",
    num_classes=2,
    ignore_index=None,
    class_names=("background", "polyp"),
    test_split="val",
    objects="foreground",
    aspect=1.0,
    primary_metric="iou",
)
KNOWN_DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (CAMVID, KVASIR_SEG)}


def spec_from_file(path: Path, name: str) -> DatasetSpec:
    """Read a ``dataset.json`` (keys as :class:`DatasetSpec`; lists become tuples)."""
    data = json.loads(path.read_text())
    data.setdefault("name", name)
    data["class_names"] = tuple(data["class_names"])
    return DatasetSpec(**data)


@dataclass
class SegmentationFolder:
    """One dataset folder on disk: ``images/`` + ``masks/`` (read by
    :class:`unseg.data.folders.MaskFolder`) + ``splits/<split>.txt``. ``spec`` defaults to the known
    set of that name or ``dataset.json``."""

    root: Path
    spec: DatasetSpec = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not (self.root / "images").is_dir() or not (self.root / "masks").is_dir():
            raise FileNotFoundError(f"{self.root} is not a segmentation folder (needs images/ and masks/)")
        self.files = MaskFolder(self.root / "images", self.root / "masks")
        if self.spec is None:
            self.spec = self._default_spec()

    def _default_spec(self) -> DatasetSpec:
        if (self.root / "dataset.json").is_file():
            return spec_from_file(self.root / "dataset.json", self.root.name)
        if self.root.name in KNOWN_DATASETS:
            return KNOWN_DATASETS[self.root.name]
        raise ValueError(f"unknown dataset {self.root.name!r}: add a dataset.json or use one of {sorted(KNOWN_DATASETS)}")

    def stems(self, split: str) -> list[str]:
        """Stems listed in ``splits/<split>.txt``."""
        return read_split(self.root / "splits" / f"{split}.txt")

    def read_image(self, stem: str) -> LoadedImage:
        return read_image(self.files.image_path(stem))

    def read_mask(self, stem: str) -> np.ndarray:
        return self.files.read_mask(stem)

    def read_pair(self, stem: str) -> tuple[LoadedImage, np.ndarray]:
        """Image and mask of ``stem``, checked to be of one size."""
        return self.files.read_pair(stem)


def victim_size(spec: DatasetSpec, height: int) -> tuple[int, int]:
    """(height, width) for victims: ``height`` and the set's aspect, width rounded to a multiple of 32."""
    width = max(32, int(round(height * spec.aspect / 32)) * 32)
    if height % 32:
        raise ValueError(f"victim image height must be a multiple of 32 (encoder strides), got {height}")
    return height, width


# How a victim brings each image to its fixed training size (``unseg evaluate --victim-fit``):
# ``stretch`` resizes each axis onto the size (a fixed-size Resize((h, w)); every run before stop 31),
# ``letterbox`` scales by the smaller factor so the image keeps its aspect and pads the bottom/right
# (SAM's resize-longest-side + pad, a keep-ratio resize). They differ only where an image's aspect is
# not the size's: on Kvasir-SEG (aspects 0.8–1.8 into a square), not on CamVid (one aspect).
VICTIM_FITS = ("stretch", "letterbox")


def fitted_size(height: int, width: int, size: tuple[int, int], fit: str = "stretch") -> tuple[int, int]:
    """(rows, columns) the content of an ``height x width`` image covers in a victim input of ``size``
    under ``fit`` (:data:`VICTIM_FITS`): the whole ``size`` when stretched, less along one axis when
    letterboxed (the rest is padding at the bottom/right)."""
    if fit not in VICTIM_FITS:
        raise ValueError(f"unknown victim fit {fit!r}; choose one of {VICTIM_FITS}")
    if fit == "stretch":
        return size
    scale = min(size[0] / height, size[1] / width)
    return min(size[0], max(1, round(height * scale))), min(size[1], max(1, round(width * scale)))


def resize_pair(pixels: np.ndarray, mask: np.ndarray, size: tuple[int, int], fit: str = "stretch",
                pad_label: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``H x W x 3`` image and ``H x W`` mask -> ``3 x h x w`` uint8 (bilinear, antialiased) and
    ``h x w`` long (nearest), fitted to ``size`` by ``fit`` (:data:`VICTIM_FITS`; padding: black pixels,
    ``pad_label`` in the mask — the set's ignore label where it has one, so no loss or score counts it)."""
    rows, columns = fitted_size(*mask.shape, size, fit)
    image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float()
    image = F.interpolate(image, size=(rows, columns), mode="bilinear", align_corners=False, antialias=True)
    image = F.pad(image, (0, size[1] - columns, 0, size[0] - rows))
    return image[0].round().clamp(0, 255).to(torch.uint8), resize_mask(mask, size, fit, pad_label)


def resize_mask(mask: np.ndarray, size: tuple[int, int], fit: str = "stretch", pad_label: int = 0) -> torch.Tensor:
    """``H x W`` integer mask -> ``h x w`` long (nearest: labels are never blended), fitted as
    :func:`resize_pair` fits its image."""
    rows, columns = fitted_size(*mask.shape, size, fit)
    label = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=(rows, columns), mode="nearest")
    return F.pad(label, (0, size[1] - columns, 0, size[0] - rows), value=pad_label)[0, 0].long()
