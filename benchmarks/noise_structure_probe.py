"""Which noise structure can a victim learn as a shortcut? Hand-made noises through the benchmark protocol.

Each row protects the same training images with one fixed, hand-made noise (exact budget: ε on the
object, ε_bg elsewhere, as every method in ``unseg.evaluation``), trains the same victim with the
``benchmark`` preset's schedule (victims train on images resized to ``image_height``, as on a
2-core CPU), and scores it on the clean test split. Noises:

- ``flat``: a constant colour shift (+, −, +) on the object, the opposite on the background;
- ``checker-P``: a ±1 checkerboard of period P native pixels, colour (+, −, +), opposite phase on
  the background;
- ``unseg``: a trained generator (``--generator``, default: the shipped weights).

This is what chose the generator's ``noise_highpass`` (no flat shifts) and the training's
``surrogate_rescale_min`` (noise must survive downscaling): see ``src/unseg/weights/README.md``.

Usage (from the repository root; ~25 s per row on 2 CPU cores):
    python benchmarks/noise_structure_probe.py
    python benchmarks/noise_structure_probe.py --dataset camvid --victim fpn --periods 16 64
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from unseg.baselines import NoiseSample
from unseg.baselines.pattern import COLOUR, checkerboard
from unseg.budget import Budget
from unseg.data.segmentation import SegmentationFolder, victim_size
from unseg.evaluation import preset_config
from unseg.evaluation.methods import MethodOptions, unseg_noise_maker
from unseg.evaluation.protocol import load_split, pick_stems
from unseg.evaluation.training import train_victim
from unseg.evaluation.victims import parse_victim
from unseg.protection.budget import apply_budget

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--dataset", default="kvasir_seg")
    parser.add_argument("--victim", default="unet")
    parser.add_argument("--periods", type=int, nargs="+", default=[8, 16, 32, 64], help="checkerboard periods, native px")
    parser.add_argument("--generator", default="default", help="what the unseg row loads ('none': skip the row)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown results [benchmarks/results/noise_structure_probe_<dataset>_<victim>.md]")
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS / f"noise_structure_probe_{args.dataset}_{args.victim}.md"
    return args


def fixed_noise(kind: str, region: np.ndarray) -> np.ndarray:
    """Unit ``H x W x 3`` noise of a hand-made kind, sign flipped off the object."""
    height, width = region.shape
    pattern = np.ones((height, width), np.float32) if kind == "flat" else checkerboard(height, width, int(kind.split("-")[1]))
    sign = np.where(region, 1.0, -1.0).astype(np.float32)
    return (pattern * sign)[..., None] * COLOUR


def generator_noises(source: str, pixels: list[np.ndarray], masks: list[np.ndarray], regions: list[np.ndarray],
                     budget: Budget) -> list[np.ndarray]:
    """Unit noise of an UnSeg generator, made exactly as the benchmark's ``unseg`` method makes it."""
    options = MethodOptions(budget=budget)
    make, _ = unseg_noise_maker(source, options)
    samples = [NoiseSample(pixels=p, mask=m, region=r, seed=0) for p, m, r in zip(pixels, masks, regions)]
    step = options.batch_size
    return [noise for start in range(0, len(samples), step) for noise in make(samples[start : start + step], [])]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    config = preset_config("benchmark", data_root=str(args.data_root))
    folder = SegmentationFolder(args.data_root / args.dataset)
    spec = folder.spec
    size = victim_size(spec, config.image_height)
    train_stems = pick_stems(folder.stems(spec.train_split), config.train_images, config.seed)
    test_stems = pick_stems(folder.stems(spec.test_split), config.test_images, config.seed)
    test = load_split([folder.read_image(s).rgb8() for s in test_stems], [folder.read_mask(s) for s in test_stems], size)
    pixels = [folder.read_image(s).rgb8() for s in train_stems]
    masks = [folder.read_mask(s) for s in train_stems]
    regions = [spec.object_region(m) for m in masks]
    victim = parse_victim(args.victim)
    metric = spec.primary_metric

    kinds = ["clean", "flat"] + [f"checker-{p}" for p in args.periods] + ([] if args.generator == "none" else ["unseg"])
    rows = []
    for kind in kinds:
        if kind == "clean":
            images = pixels
        else:
            noises = (generator_noises(args.generator, pixels, masks, regions, config.budget)
                      if kind == "unseg" else [fixed_noise(kind, r) for r in regions])
            images = [apply_budget(p, n, r, config.budget) for p, n, r in zip(pixels, noises, regions)]
        began = time.perf_counter()
        result = train_victim(victim, spec, load_split(images, masks, size), test, config.schedule(),
                              torch.device("cpu"), config.seed, progress=None)
        rows.append((kind, result.final[metric], time.perf_counter() - began))  # already 0-100
        print(f"{kind:12s} {metric} {rows[-1][1]:.1f}  ({rows[-1][2]:.0f} s)", flush=True)
    write_results(args, config, spec, rows, size)


def write_results(args, config, spec, rows, size) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    clean = rows[0][1]
    lines = [
        "# Noise-structure probe: which hand-made noise does a victim learn as a shortcut?", "",
        "- Command: `" + " ".join(["python", f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]) + "`",
        f"- Data: {spec.name}, {config.train_images} training images, {config.test_images} clean test images; "
        f"victim `{args.victim}` trained {config.epochs} epochs at {size[0]}x{size[1]} px (benchmark preset schedule, bf16)",
        f"- Budget: ε = {config.budget.epsilon:g}/255 on the object, ε_bg = {config.budget.epsilon_bg:g}/255 elsewhere; "
        f"noise applied at native resolution, victims see the images downscaled",
        f"- Generator (unseg row): `{args.generator}`",
        f"- Machine: small CPU run, {args.threads} threads, {platform.machine()}; code {commit}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; one seed",
        "", f"| noise | {spec.primary_metric} (%) | change vs clean | seconds |", "|---|---|---|---|",
    ]
    lines += [f"| {kind} | {value:.1f} | {value - clean:+.1f} | {seconds:.0f} |" for kind, value, seconds in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
