"""Tiny generated data and tiny network configs for the training tests (test_training, test_ddp).

Networks are SAM-layout ViTs of width 32 and depth 1 at 32 px, so a training step takes a few
milliseconds on CPU; the data is a camvid-like folder of 48x64 images with two coloured blobs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from unseg.training.config import TrainConfig, config_from_mapping

VOID = 11
TINY_SAM = {"img_size": 32, "patch_size": 8, "encoder_dim": 32, "encoder_depth": 1, "encoder_heads": 2,
            "global_attn_indexes": [0], "window_size": 2, "prompt_dim": 32, "decoder_depth": 1,
            "decoder_mlp_dim": 64, "decoder_heads": 2, "mask_in_chans": 4}
COLOURS = {0: (40, 90, 40), 1: (220, 60, 50), 2: (50, 70, 210), VOID: (0, 0, 0)}


def write_png(path: Path, array: np.ndarray) -> Path:
    """Save ``array`` (uint8) as a PNG, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def blob_labels(rng: np.random.Generator, height: int = 48, width: int = 64) -> np.ndarray:
    """Class-index mask: background 0, a rectangle of class 1, an ellipse of class 2, a void strip."""
    labels = np.zeros((height, width), np.uint8)
    top, left = rng.integers(2, height // 2), rng.integers(2, width // 3)
    labels[top:top + rng.integers(10, height // 2), left:left + rng.integers(10, width // 3)] = 1
    ys, xs = np.mgrid[:height, :width]
    cy, cx = rng.integers(height // 3, 2 * height // 3), rng.integers(width // 2, width - 12)
    ry, rx = rng.integers(6, 12), rng.integers(6, 12)
    labels[((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1] = 2
    labels[-3:, :] = VOID
    return labels


def labels_to_image(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB picture whose colour follows the class (plus mild noise), so objects are learnable."""
    image = np.zeros((*labels.shape, 3), np.float64)
    for class_id, colour in COLOURS.items():
        image[labels == class_id] = colour
    image += rng.normal(0, 12, image.shape)
    return image.clip(0, 255).astype(np.uint8)


def make_blob_dataset(root: Path, count: int = 8, val: int = 2, seed: int = 0) -> Path:
    """camvid-like folder (images/*.png, masks/*.png, splits/{train,val}.txt) of ``count`` images."""
    rng = np.random.default_rng(seed)
    stems = [f"img{i:02d}" for i in range(count)]
    for stem in stems:
        labels = blob_labels(rng)
        write_png(root / "masks" / f"{stem}.png", labels)
        write_png(root / "images" / f"{stem}.png", labels_to_image(labels, rng))
    (root / "splits").mkdir(parents=True, exist_ok=True)
    (root / "splits" / "train.txt").write_text("\n".join(stems[:count - val]) + "\n")
    (root / "splits" / "val.txt").write_text("\n".join(stems[count - val:]) + "\n")
    return root


def write_tiny_model_configs(folder: Path) -> tuple[Path, Path]:
    """JSON files (GeneratorConfig / SurrogateConfig fields) of the tiny networks."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = folder / "tiny_generator.json"
    surrogate = folder / "tiny_surrogate.json"
    generator.write_text(json.dumps({"sam": TINY_SAM, "noise_dim": 8, "noise_upscale": 1}))
    surrogate.write_text(json.dumps({"sam": TINY_SAM}))
    return generator, surrogate


def tiny_config(tmp_path: Path, **sections: dict) -> TrainConfig:
    """Training config over a generated blob folder with the tiny networks; ``sections`` override."""
    data = tmp_path / "data"
    if not data.is_dir():
        make_blob_dataset(data)
    generator, surrogate = write_tiny_model_configs(tmp_path / "models")
    mapping = {
        "data": {"root": str(data), "min_area": 0.01, "val_objects": 4},
        "model": {"generator": str(generator), "surrogate": str(surrogate), "semantic_surrogate": ""},
        "schedule": {"rounds": 4, "surrogate_steps": 1, "generator_steps": 1, "batch_size": 4,
                     "eval_every": 2, "checkpoint_every": 2},
        "runtime": {"device": "cpu", "seed": 3},
        "output": {"dir": str(tmp_path / "run"), "progress": False},
    }
    for name, values in sections.items():
        mapping.setdefault(name, {}).update(values)
    return config_from_mapping(mapping)
