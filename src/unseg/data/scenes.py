"""Whole-scene training samples (image + class-index map) for training a keyed generator.

A keyed generator gives every object of an image its own noise code (see
``unseg.models.config.GeneratorConfig.num_codes``); it is trained on whole scenes so that the
codes of all objects of an image are made and read together, as a multi-class victim reads them.
Items are letterboxed to the generator input (``unseg.data.transforms.Letterbox``) with the same
flip and scale jitter as :class:`unseg.data.interactive.InteractiveDataset`, and the same
reproducibility: an item depends on ``(seed, epoch, index)`` only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from unseg.data.folders import MaskFolder, check_pair_size
from unseg.data.images import read_image, read_mask
from unseg.data.interactive import NO_AUGMENTATION, Augmentation, _crop_offset
from unseg.data.transforms import Letterbox

IGNORE = -1  # label of void pixels and of the letterbox padding


class SceneDataset(Dataset):
    """Letterboxed scenes: ``image`` (3xSxS float [0, 1]), ``labels`` (SxS long class ids,
    ``IGNORE`` on void and padding) and ``valid`` (1xSxS float, 1 on image content)."""

    def __init__(self, pairs: list[tuple[Path, Path]], size: int, ignore_index: int | None = None,
                 augmentation: Augmentation = NO_AUGMENTATION, seed: int = 0, description: str = "") -> None:
        if not pairs:
            raise ValueError(f"no scenes found ({description})")
        self.pairs = pairs
        self.size = size
        self.ignore_index = ignore_index
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0
        self.description = description
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_folder(cls, images_dir: str | Path, masks_dir: str | Path, size: int, split_file: str | Path | None = None,
                    ignore_index: int | None = None, augmentation: Augmentation = NO_AUGMENTATION,
                    seed: int = 0) -> "SceneDataset":
        """Scenes of a folder of images + class-index masks matched by stem (optional split file), read
        by :class:`unseg.data.folders.MaskFolder` as every other reader of that layout."""
        pairs = MaskFolder(images_dir, masks_dir).split_pairs(split_file)
        description = f"scenes {images_dir} ({len(pairs)} images, split {split_file or 'all'})"
        return cls(pairs, size, ignore_index, augmentation, seed, description)

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of ``epoch``."""
        self.epoch = epoch

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded ``H x W x 3`` uint8 image and ``H x W`` int64 labels (``IGNORE`` on void), cached."""
        if index not in self._cache:
            image_path, mask_path = self.pairs[index]
            pixels = read_image(image_path).rgb8()
            labels = read_mask(mask_path).astype(np.int64)
            check_pair_size(pixels.shape[:2], labels, str(image_path))
            if self.ignore_index is not None:
                labels[labels == self.ignore_index] = IGNORE
            self._cache[index] = (pixels, labels)
        return self._cache[index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pixels, labels = self.scene(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        label = torch.from_numpy(labels)[None, None].float()
        if rng.random() < self.augmentation.flip_probability:
            image, label = image.flip(-1), label.flip(-1)
        scale = rng.uniform(self.augmentation.scale_min, self.augmentation.scale_max)
        scaled = max(8, int(round(self.size * scale)))
        box = Letterbox(image.shape[-2], image.shape[-1], scaled)
        image = box.image_to_input(image)[0]
        label = box.image_to_input(label + 1, mode="nearest")[0, 0].long() - 1  # padding -> IGNORE
        valid = F.pad(torch.ones(1, *box.resized), (0, scaled - box.resized[1], 0, scaled - box.resized[0]))
        if scaled > self.size:
            top = _crop_offset(rng, scaled, self.size, int(rng.integers(scaled)))
            left = _crop_offset(rng, scaled, self.size, int(rng.integers(scaled)))
            rows, cols = slice(top, top + self.size), slice(left, left + self.size)
            image, label, valid = image[:, rows, cols], label[rows, cols], valid[:, rows, cols]
        elif scaled < self.size:
            pad = (0, self.size - scaled, 0, self.size - scaled)
            image, valid = F.pad(image, pad), F.pad(valid, pad)
            label = F.pad(label, pad, value=IGNORE)
        return {"image": image.contiguous(), "labels": label.contiguous(), "valid": valid.contiguous()}
