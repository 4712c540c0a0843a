"""What `unseg demo` does to its three photos: PSNR, SSIM, L∞ and the mean change per channel.

Runs ``unseg demo`` into a temporary folder (the shipped generator, default budget, box prompts)
and writes, per photo, the manifest's PSNR / SSIM / L∞ and the mean signed change per channel on
the boxed region and off it, in levels. Saturation removes each channel's mean before taking the
sign, so there is no large colour cast; what is left comes from an unequal number of + and - signs
(a skewed noise distribution) and from clipping at 0 / 255.

Usage: python benchmarks/demo_stats.py [--out benchmarks/results/demo_stats.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from provenance import commit

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "demo_stats.json")
    args = parser.parse_args()
    from unseg.cli.demo import SAMPLES
    from unseg.data.images import read_image
    from unseg.protection.pipeline import MANIFEST_NAME, read_manifest

    with tempfile.TemporaryDirectory() as folder:
        demo = Path(folder) / "demo"
        subprocess.run([sys.executable, "-m", "unseg", "demo", str(demo)], check=True, capture_output=True)
        records = {record["source"]: record for record in read_manifest(demo / "protected" / MANIFEST_NAME)}
        photos = {}
        for name, (_, (x0, y0, x1, y1)) in SAMPLES.items():
            clean = read_image(demo / "input" / f"{name}.png").pixels.astype(np.int64)
            protected = read_image(demo / "protected" / f"{name}.png").pixels.astype(np.int64)
            change = protected - clean
            region = np.zeros(clean.shape[:2], bool)
            region[y0:y1, x0:x1] = True
            record = records[f"{name}.png"]
            photos[name] = {
                "size": list(clean.shape[:2]), "box": [x0, y0, x1, y1],
                "psnr_db": round(record["psnr"], 2), "ssim": round(record["ssim"], 4),
                "linf_inside_outside": [record["linf_inside"], record["linf_outside"]],
                "mean_change_per_channel_in_box": [round(float(v), 2) for v in change[region].mean(axis=0)],
                "mean_change_per_channel_outside": [round(float(v), 2) for v in change[~region].mean(axis=0)],
            }
    result = {"command": f"python benchmarks/{Path(__file__).name} {shlex.join(sys.argv[1:])}".rstrip(),
              "commit": commit(), "date": f"{datetime.now(timezone.utc):%Y-%m-%d}",
              "generator": "default (shipped), budget 8/255, bg 2/255, saturated noise, box prompts", "photos": photos}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
