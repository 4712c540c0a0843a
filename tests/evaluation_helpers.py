"""Tiny generated segmentation folders for the evaluation tests (the tiny generator checkpoint is
the ``tiny_generator_path`` fixture of ``conftest.py``).

A folder has the layout of ``../shared/data/camvid``: ``images/<stem>.png``, ``masks/<stem>.png``
(class ids, ``VOID`` = ignore) and ``splits/{train,test}.txt``, plus a ``dataset.json`` (the
spec of a set that is not one of the known ones). Images are odd-sized, with one coloured
rectangle per class on a noisy background, so every class and the void label occur.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


VOID = 255
NUM_CLASSES = 3
TOY_SPEC = {"num_classes": NUM_CLASSES, "ignore_index": VOID, "class_names": ["bg", "red", "blue"],
            "train_split": "train", "test_split": "test", "objects": "all_labelled", "aspect": 1.5}


def toy_pair(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 RGB image and its class mask: class 1 and 2 rectangles, a void strip at the bottom."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(60, 120, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    top, left = rng.integers(0, height // 3), rng.integers(0, width // 3)
    mask[top : top + height // 3, left : left + width // 3] = 1
    mask[height // 2 : height - 3, width // 2 :] = 2
    mask[height - 3 :] = VOID
    pixels[mask == 1] = (230, 40, 40)
    pixels[mask == 2] = (40, 40, 230)
    pixels[mask == VOID] = 0
    return pixels, mask


def write_toy_folder(root: Path, name: str = "toy", train: int = 4, test: int = 2,
                     sizes: tuple[tuple[int, int], ...] = ((37, 47), (41, 53)), spec: dict | None = TOY_SPEC) -> Path:
    """Write ``root/name`` with ``train`` + ``test`` images (sizes cycled); returns the folder."""
    folder = Path(root) / name
    for sub in ("images", "masks", "splits"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    stems = [f"{name}_{i:03d}" for i in range(train + test)]
    for i, stem in enumerate(stems):
        pixels, mask = toy_pair(*sizes[i % len(sizes)], seed=i)
        Image.fromarray(pixels).save(folder / "images" / f"{stem}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")
    (folder / "splits" / "train.txt").write_text("\n".join(stems[:train]) + "\n")
    (folder / "splits" / "test.txt").write_text("\n".join(stems[train:]) + "\n")
    if spec is not None:
        (folder / "dataset.json").write_text(json.dumps(spec))
    return folder
