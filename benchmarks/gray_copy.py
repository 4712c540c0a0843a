"""A grayscale copy of a segmentation folder: the stand-in for gray data (X-ray, CT, microscopy).

Each image becomes an 8-bit one-channel PNG (PIL's ITU-R 601 luma), masks are linked, splits
copied, and a ``dataset.json`` carries the source set's spec under the new name, so
``unseg evaluate --data-root OUT_PARENT --datasets NAME`` treats it as a set of its own. Why:
``unseg protect`` writes a gray image back as gray, so a colour noise code reaches a victim only
through its channel mean (``unseg.protection.perturb.to_gray``); an RGB set cannot show that.
Usage:

    python benchmarks/gray_copy.py ../shared/data/kvasir_seg runs/gray/kvasir_gray
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from unseg.data.segmentation import SegmentationFolder


def gray_copy(source: Path, out: Path) -> int:
    """Write the gray copy of ``source`` to ``out`` (a new folder); returns the number of images."""
    folder = SegmentationFolder(source)
    (out / "images").mkdir(parents=True)
    (out / "masks").symlink_to((source / "masks").resolve())
    shutil.copytree(source / "splits", out / "splits")
    spec = dataclasses.asdict(dataclasses.replace(folder.spec, name=out.name))
    (out / "dataset.json").write_text(json.dumps(spec, indent=1) + "\n")
    stems = sorted({stem for split in ("train", "val", "test") if (source / "splits" / f"{split}.txt").is_file()
                    for stem in folder.stems(split)})
    for stem in tqdm(stems, desc=f"gray {out.name}"):
        Image.open(folder.files.image_path(stem)).convert("L").save(out / "images" / f"{stem}.png")
    return len(stems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a segmentation folder (images/, masks/, splits/)")
    parser.add_argument("out", type=Path, help="the new folder; its name is the new set's name")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists")
    print(f"{gray_copy(args.source, args.out)} images -> {args.out}")


if __name__ == "__main__":
    main()
