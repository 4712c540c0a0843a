"""Interactive-segmentation samples (image, one binary object mask) for generator training.

Two sources:

* a folder of images + class-index masks matched by stem (read by
  :class:`unseg.data.folders.MaskFolder`, as ``unseg protect --masks`` reads it; camvid layout:
  ``images/``, ``masks/``, optional split file of stems): every class region of an image is one
  object, and so is every connected component of it, when its area is at least ``min_area`` (a
  fraction of the image area); ``ignore_index`` (e.g. camvid's void 11) is never an object;
* a COCO instances json (:class:`unseg.data.coco.CocoInstances`, as ``unseg protect --coco``
  reads it): every non-crowd instance is one object.

Objects are indexed once; decoded images and masks are cached in memory. Each item is
letterboxed to the generator input size (``unseg.data.transforms.Letterbox``) with optional
horizontal flip and scale jitter. Augmentation randomness is a pure function of
``(seed, epoch, index)`` so that a resumed run sees exactly the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch.utils.data import Dataset

from unseg.data.coco import CocoInstances
from unseg.data.folders import MaskFolder, check_pair_size
from unseg.data.images import ImageReadError, read_image, read_mask
from unseg.data.transforms import Letterbox

WHOLE_REGION = 0  # component id meaning "the whole class region"


@dataclass(frozen=True)
class ObjectRef:
    """One object: which image, which class / instance, which connected component (0 = all)."""

    image_index: int
    class_id: int
    component: int
    area: int


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation: horizontal flip probability and the scale-jitter range."""

    flip_probability: float = 0.5
    scale_min: float = 0.75
    scale_max: float = 1.25

    def __post_init__(self) -> None:
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"scale range must satisfy 0 < min <= max, got {self.scale_min}..{self.scale_max}")


NO_AUGMENTATION = Augmentation(flip_probability=0.0, scale_min=1.0, scale_max=1.0)


def class_objects(mask: np.ndarray, image_index: int, ignore_index: int | None, min_area: int) -> list[ObjectRef]:
    """Objects of one class-index mask: each class region and each of its connected components."""
    objects: list[ObjectRef] = []
    classes, counts = np.unique(mask, return_counts=True)
    for class_id, count in zip(classes.tolist(), counts.tolist()):
        if class_id == ignore_index or count < min_area:
            continue
        labels, n = ndimage.label(mask == class_id)
        areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        kept = [k + 1 for k in range(n) if areas[k] >= min_area]
        if not (len(kept) == 1 and areas[kept[0] - 1] == count):  # region != its only component
            objects.append(ObjectRef(image_index, class_id, WHOLE_REGION, count))
        objects.extend(ObjectRef(image_index, class_id, k, int(areas[k - 1])) for k in kept)
    return objects


def object_mask(mask: np.ndarray, ref: ObjectRef) -> np.ndarray:
    """Binary ``H x W`` mask of ``ref`` in a class-index mask."""
    region = mask == ref.class_id
    if ref.component == WHOLE_REGION:
        return region
    labels, _ = ndimage.label(region)
    return labels == ref.component


class InteractiveDataset(Dataset):
    """Letterboxed (image, object mask, valid area) samples for promptable segmentation training.

    Build with :meth:`from_folder` or :meth:`from_coco`. Items are dicts with ``image``
    (3xSxS float [0, 1]), ``mask`` (1xSxS float {0, 1}) and ``valid`` (1xSxS float, 1 on image
    content, 0 on padding).
    """

    def __init__(
        self,
        image_paths: list[Path],
        objects: list[ObjectRef],
        mask_source,
        size: int,
        augmentation: Augmentation = NO_AUGMENTATION,
        seed: int = 0,
        description: str = "",
    ) -> None:
        if not objects:
            raise ValueError(f"no objects found ({description}); lower min_area or check the masks")
        self.image_paths = image_paths
        self.objects = objects
        self._mask_source = mask_source  # callable(image_index, ObjectRef) -> HxW bool
        self.size = size
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0
        self.description = description
        self._images: dict[int, np.ndarray] = {}

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_folder(
        cls,
        images_dir: str | Path,
        masks_dir: str | Path,
        size: int,
        split_file: str | Path | None = None,
        ignore_index: int | None = None,
        min_area: float = 0.002,
        augmentation: Augmentation = NO_AUGMENTATION,
        seed: int = 0,
    ) -> "InteractiveDataset":
        """Objects of a folder of images + class-index masks (``min_area``: fraction of image area)."""
        pairs = MaskFolder(images_dir, masks_dir).split_pairs(split_file)
        masks: dict[int, np.ndarray] = {}
        objects: list[ObjectRef] = []
        for index, (_, mask_path) in enumerate(pairs):
            mask = read_mask(mask_path)
            masks[index] = mask.astype(np.uint16) if mask.max() < 65536 else mask
            threshold = max(1, int(round(min_area * mask.size)))
            objects.extend(class_objects(mask, index, ignore_index, threshold))
        description = f"folder {images_dir} ({len(pairs)} images, split {split_file or 'all'})"
        return cls([p for p, _ in pairs], objects, lambda i, ref: object_mask(masks[i], ref), size,
                   augmentation, seed, description)

    @classmethod
    def from_coco(
        cls,
        annotation_file: str | Path,
        images_dir: str | Path,
        size: int,
        min_area: float = 0.002,
        augmentation: Augmentation = NO_AUGMENTATION,
        seed: int = 0,
    ) -> "InteractiveDataset":
        """Objects of a COCO instances json: every non-crowd instance large enough is one object."""
        coco = CocoInstances.read(annotation_file)
        paths, objects, annotations = [], [], {}
        for info in sorted(coco.images(), key=lambda entry: entry["id"]):
            anns = coco.annotations(info["id"], crowd=False, min_area=min_area * info["height"] * info["width"])
            if not anns:
                continue
            index = len(paths)
            paths.append(Path(images_dir) / info["file_name"])
            for ann in anns:
                annotations[ann["id"]] = ann
                objects.append(ObjectRef(index, int(ann["category_id"]), int(ann["id"]), int(ann["area"])))
        return cls(paths, objects, lambda i, ref: coco.mask(annotations[ref.component]), size,
                   augmentation, seed, f"coco {annotation_file} ({len(paths)} images)")

    # --- items ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.objects)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of ``epoch`` (items depend on (seed, epoch, index) only)."""
        self.epoch = epoch

    def image(self, image_index: int) -> np.ndarray:
        """Decoded ``H x W x 3`` uint8 image, cached."""
        if image_index not in self._images:
            path = self.image_paths[image_index]
            try:
                self._images[image_index] = read_image(path).rgb8()
            except ImageReadError as error:
                raise ImageReadError(f"training image unreadable: {error}") from error
        return self._images[image_index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ref = self.objects[index]
        pixels = self.image(ref.image_index)
        binary = self._mask_source(ref.image_index, ref)
        check_pair_size(pixels.shape[:2], binary, str(self.image_paths[ref.image_index]))
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        mask = torch.from_numpy(binary).float()[None, None]
        if rng.random() < self.augmentation.flip_probability:
            image, mask = image.flip(-1), mask.flip(-1)
        scale = rng.uniform(self.augmentation.scale_min, self.augmentation.scale_max)
        return self._letterbox_and_crop(image, mask, scale, rng)

    def _letterbox_and_crop(self, image: torch.Tensor, mask: torch.Tensor, scale: float,
                            rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Letterbox to ``size * scale`` then crop (keeping part of the object) or pad to ``size``."""
        height, width = image.shape[-2:]
        scaled = max(8, int(round(self.size * scale)))
        box = Letterbox(height, width, scaled)
        image = box.image_to_input(image)[0]
        mask = box.image_to_input(mask, mode="nearest")[0]
        valid = F.pad(torch.ones(1, *box.resized), (0, scaled - box.resized[1], 0, scaled - box.resized[0]))
        if scaled > self.size:
            # keep one random object pixel inside the crop, so the object never vanishes
            ys, xs = torch.nonzero(mask[0] > 0.5, as_tuple=True)
            pick = int(rng.integers(len(ys))) if len(ys) else -1
            top = _crop_offset(rng, scaled, self.size, int(ys[pick]) if pick >= 0 else scaled // 2)
            left = _crop_offset(rng, scaled, self.size, int(xs[pick]) if pick >= 0 else scaled // 2)
            crop = (slice(None), slice(top, top + self.size), slice(left, left + self.size))
            image, mask, valid = image[crop], mask[crop], valid[crop]
        elif scaled < self.size:
            pad = (0, self.size - scaled, 0, self.size - scaled)
            image, mask, valid = F.pad(image, pad), F.pad(mask, pad), F.pad(valid, pad)
        return {"image": image.contiguous(), "mask": mask.contiguous(), "valid": valid.contiguous()}


def _crop_offset(rng: np.random.Generator, full: int, crop: int, centre: int) -> int:
    """Random crop start in [0, full - crop] such that ``centre`` lies inside the crop."""
    low = max(0, centre - crop + 1)
    high = min(full - crop, centre)
    return int(rng.integers(low, high + 1)) if high >= low else 0
