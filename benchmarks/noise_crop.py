"""What the protection looks like at 1:1: a zoomed crop of a smooth area, clean | protected | change.

Protects scikit-image's ``coffee`` photo (bundled, no download) with the shipped generator and the
demo's box around the cup (``unseg demo`` uses the same), cuts a crop from the cup's smooth
porcelain and the saucer and writes it enlarged (nearest neighbour, so every pixel stays a visible
square) next to the clean crop and the change ×10 (+128 grey). Also writes the command, commit,
date and the image's PSNR / SSIM in a text file beside it.

Usage: python benchmarks/noise_crop.py [--out benchmarks/results/noise_crop.png]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from unseg.data.images import write_image
from unseg.protection import Protector

BOX = [165, 5, 425, 255]  # the cup, as in `unseg demo`
CROP = (20, 190, 96, 96)  # top, left, height, width: the cup's white rim and inner wall (smooth), some coffee
ZOOM = 3
AMPLIFY = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/noise_crop.png"))
    args = parser.parse_args()
    image = skimage.data.coffee()
    result = Protector.load("default").protect(image, box=BOX)
    top, left, height, width = CROP
    window = (slice(top, top + height), slice(left, left + width))
    clean, protected = image[window], result.pixels[window]
    change = np.clip((protected.astype(np.int32) - clean) * AMPLIFY + 128, 0, 255).astype(np.uint8)
    gap = np.full((height, 2, 3), 255, np.uint8)
    panel = np.concatenate([clean, gap, protected, gap, change], axis=1)
    panel = np.repeat(np.repeat(panel, ZOOM, axis=0), ZOOM, axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_image(args.out, panel)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    facts = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": commit or "unknown",
        "date": datetime.date.today().isoformat(),
        "image": "skimage.data.coffee() 600x400, box " + str(BOX),
        "crop": f"rows {top}:{top + height}, cols {left}:{left + width}, enlarged x{ZOOM} (nearest)",
        "panels": f"clean | protected | change x{AMPLIFY} + 128",
        "psnr_db": round(result.stats["psnr"], 2),
        "ssim": round(result.stats["ssim"], 4),
        "linf_inside_outside": [result.stats["linf_inside"], result.stats["linf_outside"]],
        "png_bytes": args.out.stat().st_size,
    }
    args.out.with_suffix(".txt").write_text(json.dumps(facts, indent=2) + "\n")
    print(json.dumps(facts, indent=2))
    Image.open(args.out).verify()


if __name__ == "__main__":
    main()
