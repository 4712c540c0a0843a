"""Which noise structure can a victim learn as a shortcut? Hand-made noises through the benchmark protocol.

Each row protects the same training images with one fixed, hand-made noise (exact budget: ε on the
object, ε_bg elsewhere, as every method in ``unseg.evaluation``), trains the same victim with the
``benchmark`` preset's schedule (victims train on images resized to ``image_height``, as on a
2-core CPU), and scores it on the clean test split. Noises:

- ``flat``: a constant colour shift (+, −, +) on the object, the opposite on the background;
- ``checker-P``: a ±1 checkerboard of period P native pixels, colour (+, −, +), opposite phase on
  the background; ``checker-1/D``: period 1/D of the image's longer side (images of any size);
- ``hybrid-1/D``: red and blue shifted flat (+), green a ``checker-1/D`` — a colour shift and a
  texture at once, each channel still at ±1; ``hybridr-1/D``: green (−) and blue (+) flat, red the
  checker (keeps the shift along Kvasir's colour direction of least variance, mostly green−blue);
- ``classflat`` / ``boxedge-1/D``: keyed by class (multi-class sets): a flat colour per class, and with
  ``boxedge`` each class region's box outline drawn in its colour (:func:`class_noise`;
  ``benchmarks/results/noise_structure_probe_camvid_sam.md``);
- ``unseg``: a trained generator (``--generator``, default: the shipped weights).

This is what chose the generator's ``noise_highpass`` (no flat shifts) and the training's
``surrogate_rescale_min`` (noise must survive downscaling): see ``src/unseg/weights/README.md``.
With ``--victim sam`` it asks the same of the box-prompted interactive victim (a ViT: it reads flat
shifts, CNNs read textures; ``benchmarks/results/noise_structure_probe_kvasir_seg_sam.md``).

Usage (from the repository root; ~25 s per row on 2 CPU cores with the benchmark preset):
    python benchmarks/noise_structure_probe.py
    python benchmarks/noise_structure_probe.py --dataset camvid --victim fpn --periods 16 64
    python benchmarks/noise_structure_probe.py --victim sam --preset strong_cpu --epochs 5 --no-amp \
        --epsilon-bg 0 --kinds flat checker-1/24 hybrid-1/24 --generator none --append   # ~8 min a row, 1 thread
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
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
from unseg.models.generator import flat_code
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
    parser.add_argument("--kinds", nargs="*", default=None,
                        help="noises to try instead of flat + checker-<periods> (clean runs first unless --append; "
                             "none given: only the generator's row)")
    parser.add_argument("--generator", default="default", help="what the unseg row loads ('none': skip the row)")
    parser.add_argument("--add-generator", default=None,
                        help="a second generator whose noise the unseg row adds at --add-share of the budget "
                             "(the first then gets the rest; each saturated on its own share)")
    parser.add_argument("--add-share", type=float, default=0.5, help="with --add-generator: its share of the budget")
    parser.add_argument("--preset", default="benchmark", help="evaluation preset giving data sizes and schedule")
    parser.add_argument("--epochs", type=int, default=None, help="victim epochs [the preset's]")
    parser.add_argument("--image-height", type=int, default=None, help="victim height in px [the preset's]")
    parser.add_argument("--epsilon", type=float, default=None,
                        help="object budget in 1/255 [the preset's]; above 8 only to ask whether a noise works at all")
    parser.add_argument("--epsilon-bg", type=float, default=None, help="background budget in 1/255 [the preset's]")
    parser.add_argument("--no-amp", action="store_true", help="fp32 victims (CPUs without bf16 kernels)")
    parser.add_argument("--seed", type=int, default=None, help="victim initialisation and image picks [the preset's]")
    parser.add_argument("--append", action="store_true", help="add rows to --out instead of rewriting it")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown results [benchmarks/results/noise_structure_probe_<dataset>_<victim>.md]")
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS / f"noise_structure_probe_{args.dataset}_{args.victim}.md"
    return args


TEXTURED_CHANNEL = {"hybrid": 1, "hybridr": 0}  # kind -> the channel that carries the checker


def texture_period(spec: str, height: int, width: int) -> int:
    """``"64"`` -> 64 native px; ``"1/24"`` -> 1/24 of the longer side (at least 2 px)."""
    if spec.startswith("1/"):
        return max(2, round(max(height, width) / float(spec[2:])))
    return int(spec)


def fixed_noise(kind: str, region: np.ndarray) -> np.ndarray:
    """Unit ``H x W x 3`` noise of a hand-made kind (module docstring), sign flipped off the object."""
    height, width = region.shape
    sign = np.where(region, 1.0, -1.0).astype(np.float32)[..., None]
    if kind == "flat":
        return sign * COLOUR
    name, _, period = kind.partition("-")
    checker = checkerboard(height, width, texture_period(period, height, width))
    if name == "checker":
        return sign * checker[..., None] * COLOUR
    if name in TEXTURED_CHANNEL:  # the flat colour (+, −, +) with one channel a checker instead
        noise = np.broadcast_to(COLOUR, (height, width, 3)).copy()
        noise[..., TEXTURED_CHANNEL[name]] = checker
        return sign * noise
    raise ValueError(f"unknown noise kind {kind!r}")


def class_noise(kind: str, mask: np.ndarray, spec) -> np.ndarray:
    """Unit ``H x W x 3`` noise keyed by class (``classflat``, ``boxedge-1/D``): every labelled class c
    gets the generator's flat colour of key c + 2 (no null code, no texture) on its pixels; ``boxedge``
    also draws the outline of each class region's tight box (1/D of the longer side thick, inside the
    box, larger boxes first) in that region's colour, so a box-prompted victim can read which region
    a box means from the colour at the box's own edges."""
    height, width = mask.shape
    noise = np.zeros((height, width, 3), np.float32)
    boxes = []
    for c in range(spec.num_classes):
        ys, xs = np.nonzero(mask == c)
        if c == spec.ignore_index or not len(ys):
            continue
        colour = flat_code(c + 2, 1)[:, 0, 0].numpy()
        noise[ys, xs] = colour
        boxes.append(((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1), ys.min(), ys.max() + 1, xs.min(), xs.max() + 1, colour))
    name, _, period = kind.partition("-")
    if name == "boxedge":
        thickness = texture_period(period, height, width)
        for _, y1, y2, x1, x2, colour in sorted(boxes, key=lambda b: -b[0]):
            t = min(thickness, (y2 - y1 + 1) // 2, (x2 - x1 + 1) // 2) or 1
            for rows, cols in ((slice(y1, y1 + t), slice(x1, x2)), (slice(y2 - t, y2), slice(x1, x2)),
                               (slice(y1, y2), slice(x1, x1 + t)), (slice(y1, y2), slice(x2 - t, x2))):
                noise[rows, cols] = colour
    elif name != "classflat":
        raise ValueError(f"unknown noise kind {kind!r}")
    return noise


def iter_generator_noises(source: str, pixels: list[np.ndarray], masks: list[np.ndarray], regions: list[np.ndarray],
                          budget: Budget) -> Iterator[np.ndarray]:
    """Unit noise of an UnSeg generator per image, in order, made exactly as the benchmark's ``unseg``
    method makes it: the generator is loaded once, and only one batch of noise is made ahead (880
    unit noises of 512-px images held at once filled 14 GB)."""
    options = MethodOptions(budget=budget)
    make, _ = unseg_noise_maker(source, options)
    step = options.batch_size
    for start in range(0, len(pixels), step):
        part = slice(start, start + step)
        yield from make([NoiseSample(pixels=p, mask=m, region=r, seed=0)
                         for p, m, r in zip(pixels[part], masks[part], regions[part])], [])


def generator_noises(source: str, pixels: list[np.ndarray], masks: list[np.ndarray], regions: list[np.ndarray],
                     budget: Budget) -> list[np.ndarray]:
    """All of :func:`iter_generator_noises` at once."""
    return list(iter_generator_noises(source, pixels, masks, regions, budget))


def unseg_noises(args, pixels: list[np.ndarray], masks: list[np.ndarray], regions: list[np.ndarray],
                 budget: Budget) -> list[np.ndarray]:
    """The unseg row's unit noise: ``--generator``'s, or with ``--add-generator`` the two generators'
    saturated unit noises at their shares of the budget (1 - s and s), so the sum stays within it."""
    first = generator_noises(args.generator, pixels, masks, regions, budget)
    if not args.add_generator:
        return first
    second = generator_noises(args.add_generator, pixels, masks, regions, budget)
    share = args.add_share
    return [(1 - share) * a + share * b for a, b in zip(first, second)]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    config = preset_config(args.preset, data_root=str(args.data_root), epochs=args.epochs, image_height=args.image_height,
                           amp=False if args.no_amp else None, seed=args.seed)
    if args.epsilon is not None or args.epsilon_bg is not None:
        budget = config.budget
        config = replace(config, budget=Budget(budget.epsilon if args.epsilon is None else args.epsilon,
                                                budget.epsilon_bg if args.epsilon_bg is None else args.epsilon_bg))
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
    metric = "iou" if victim.interactive else spec.primary_metric  # sam: pooled object IoU on every dataset

    kinds = args.kinds if args.kinds is not None else ["flat"] + [f"checker-{p}" for p in args.periods]
    kinds = ([] if args.append or "clean" in kinds else ["clean"]) + kinds + ([] if args.generator == "none" else ["unseg"])
    rows, prompt_only = [], {}
    for kind in kinds:
        if kind == "clean":
            images = pixels
        else:
            noises = (unseg_noises(args, pixels, masks, regions, config.budget) if kind == "unseg"
                      else [class_noise(kind, m, spec) for m in masks] if kind.startswith(("classflat", "boxedge"))
                      else [fixed_noise(kind, r) for r in regions])
            images = [apply_budget(p, n, r, config.budget) for p, n, r in zip(pixels, noises, regions)]
        began = time.perf_counter()
        result = train_victim(victim, spec, load_split(images, masks, size), test, config.schedule(),
                              torch.device("cpu"), config.seed, progress=None)
        history = [round(epoch[metric], 1) for epoch in result.history]  # already 0-100
        prompt_only = {k: result.final[k] for k in ("box_fill_iou", "ellipse_iou") if k in result.final}  # sam only
        rows.append((kind, result.final[metric], history, time.perf_counter() - began))
        print(f"{kind:12s} {metric} {rows[-1][1]:.1f}  history {history}  ({rows[-1][3]:.0f} s)", flush=True)
    write_results(args, config, spec, metric, rows, size, (len(train_stems), len(test_stems)), prompt_only)


def write_results(args, config, spec, metric: str, rows, size, counts, prompt_only: dict) -> None:
    """One section per invocation: how it ran, then a row per noise (``--append`` adds a section);
    ``prompt_only``: the interactive victim's image-free baselines on the same test objects."""
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    title = "# Noise-structure probe: which hand-made noise does a victim learn as a shortcut?\n\n"
    lines = [
        "- Command: `" + " ".join(["python", f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]) + "`",
        f"- Data: {spec.name}, {counts[0]} training images, {counts[1]} clean test images; "
        f"victim `{args.victim}` trained {config.epochs} epochs at {size[0]}x{size[1]} px "
        f"({args.preset} preset schedule, {'bf16' if config.amp else 'fp32'})",
        f"- Budget: ε = {config.budget.epsilon:g}/255 on the object, ε_bg = {config.budget.epsilon_bg:g}/255 elsewhere; "
        f"noise applied at native resolution, victims see the images downscaled",
        f"- Generator (unseg row): `{args.generator}`" + (
            f" at {1 - args.add_share:g} of the budget + `{args.add_generator}` at {args.add_share:g}" if args.add_generator else ""),
        f"- Machine: small CPU run, {args.threads} threads, {platform.machine()}; code {commit}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; seed {config.seed}",
        *([f"- Image-free baselines of the same test objects: box-fill {prompt_only['box_fill_iou']:.1f}, "
           f"ellipse {prompt_only['ellipse_iou']:.1f} IoU"] if prompt_only else []),
        "", f"| noise | {metric} (%) | per epoch | seconds |", "|---|---|---|---|",
    ]
    lines += [f"| {kind} | {value:.1f} | {history} | {seconds:.0f} |" for kind, value, history, seconds in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = args.out.read_text() + "\n" if args.append and args.out.is_file() else title
    args.out.write_text(previous + "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
