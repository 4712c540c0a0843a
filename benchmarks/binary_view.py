"""A one-class binary view of a multi-class dataset folder, for ``unseg evaluate``.

Writes ``OUT/<dataset>_<class>/``: ``images/`` and ``splits/`` linked to the source folder, ``masks/``
with the chosen class as 1, every other class 0 and the source's ignore label as 255 (ignored), and a
``dataset.json`` (binary, ``objects = "foreground"``: the class gets ε, the rest ε_bg, as a user
protecting one kind of object would). It asks how the binary protection transfers to objects unlike
Kvasir-SEG's polyps — large, regular ones (CamVid road: where the image-free layout prior is already
close to a clean victim) or many small ones (CamVid car) — without data this project does not have.

Usage (from the repository root):
    python benchmarks/binary_view.py --dataset camvid --class road --out runs/derived
    unseg evaluate --data-root runs/derived --datasets camvid_road --victims unet \
        --methods clean,unseg,pattern --preset strong_cpu --no-amp --out runs/probe_road
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from unseg.data.segmentation import SegmentationFolder

REPO = Path(__file__).resolve().parents[1]
IGNORE = 255  # the view's ignore label (the source's ignore label and anything outside its classes)


def binary_mask(mask: np.ndarray, label: int, ignore_index: int | None, num_classes: int) -> np.ndarray:
    """``H x W`` uint8: 1 where ``mask == label``, 255 on the source's ignore label and on values that
    are no class of it, 0 elsewhere."""
    ignored = (mask < 0) | (mask >= num_classes)
    if ignore_index is not None:
        ignored |= mask == ignore_index
    return np.where(ignored, IGNORE, (mask == label).astype(np.uint8)).astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--dataset", default="camvid")
    parser.add_argument("--class", dest="name", required=True, help="the class that becomes the object (a name)")
    parser.add_argument("--out", type=Path, required=True, help="folder that gets <dataset>_<class>/")
    args = parser.parse_args(argv)

    source = SegmentationFolder(args.data_root / args.dataset)
    spec = source.spec
    if args.name not in spec.class_names:
        parser.error(f"{args.dataset} has no class {args.name!r}; its classes: {', '.join(spec.class_names)}")
    label = spec.class_names.index(args.name)
    view = replace(spec, name=f"{spec.name}_{args.name}", num_classes=2, ignore_index=IGNORE,
                   class_names=("rest", args.name), objects="foreground", primary_metric="iou")
    root = args.out / view.name
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for part in ("images", "splits"):
        link = root / part
        if not link.exists():
            link.symlink_to((source.root / part).resolve(), target_is_directory=True)
    stems = sorted(set(source.stems(spec.train_split)) | set(source.stems(spec.test_split)))
    for stem in tqdm(stems, desc=view.name):
        mask = binary_mask(source.read_mask(stem), label, spec.ignore_index, spec.num_classes)
        Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    fields = {k: v for k, v in asdict(view).items() if k != "name"}
    (root / "dataset.json").write_text(json.dumps(fields, indent=1) + "\n")
    print(f"{root}: {len(stems)} masks, class {args.name!r} (label {label}) -> 1")


if __name__ == "__main__":
    main()
