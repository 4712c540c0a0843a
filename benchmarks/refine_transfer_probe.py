"""Does the protect-time refinement reach the victim's view? The refinement segmenter's loss on what an evaluation victim sees.

``unseg_refined`` makes its perturbation on the native image (``unseg.protection.refine``); a victim
reads the protected image resized its own way (``unseg evaluate`` squashes Kvasir-SEG to 128 x 128,
``unseg.data.segmentation.victim_size``). This measures, on the first ``--images`` training images, the
frozen refinement segmenter's BCE + Dice loss on the victim's view (the ``sam`` victim's objects and
box prompts, as :func:`unseg.evaluation.interactive.object_samples` makes them) of: the clean images,
v9's protection at the full and at half the budget, and the refined protection. ``--direct`` adds the
upper bound: the same attack made directly on the victim's view of the half-budget image (no resize
between attack and victim), within half and within the full budget on top of it, measured the same
way. A refinement the victim would feel raises the loss well above v9's.

Usage (from the repository root; ~3 min for 40 images on one CPU thread):

    python benchmarks/refine_transfer_probe.py --images 40 --direct
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from unseg.data.images import LoadedImage
from unseg.data.segmentation import SegmentationFolder, resize_mask, victim_size
from unseg.data.transforms import Letterbox, SquareResize, to_float_tensor
from unseg.evaluation.interactive import interactive_loss, object_samples
from unseg.evaluation.methods import class_regions
from unseg.evaluation.protocol import load_split
from unseg.protection import ImagePrompt, Protector
from unseg.protection.perturb import epsilon_map
from unseg.protection.refine import VIEWS, RefineSchedule, Refiner, View

REPO = Path(__file__).resolve().parents[1]


def victim_view_loss(refiner: Refiner, spec, images: list[np.ndarray], masks: list[np.ndarray], size) -> float:
    """The segmenter's loss on the ``sam`` victim's objects of ``images`` at the victim size."""
    split = load_split(images, masks, size)
    samples = object_samples(split, spec, refiner.input_size, 1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float(interactive_loss(refiner.surrogate(samples.images, samples.prompts).float(), samples.targets))


def direct_attack(refiner: Refiner, protector: Protector, pixels: np.ndarray, prompt: ImagePrompt,
                  share: float) -> np.ndarray:
    """The refinement's attack made on the victim's own view instead of the native image: the half-budget
    image squashed to the segmenter's square input (a Kvasir-SEG victim's 128 x 128 view), attacked there
    within ``share`` of the budget (on top of the half budget), as ``size x size x 3`` uint8 — no resize
    between attack and victim, the upper bound of what the refinement could reach."""
    native = protector.noise_batch([LoadedImage(pixels)], [prompt])[0]
    base, _ = native.protect(pixels, RefineSchedule().base_budget(protector.budget))
    height, width = pixels.shape[:2]
    square = View.of(SquareResize(height, width, refiner.input_size))
    image = square.place(to_float_tensor(base))
    goal = refiner.targets(prompt, native.region, square)
    goal = replace(goal, view=View(*image.shape[2:], refiner.input_size, 1.0, 1.0))  # the image is the view already
    limit = share * epsilon_map(square.shrink(native.region, refiner.input_size), protector.budget)
    whole = Letterbox(*image.shape[2:], refiner.input_size)  # the image fills the view: one grid for all
    delta = refiner._attack(image, whole, whole, limit, [goal])
    attacked = ((image + delta).clamp(0, 1) * 255).round().to(torch.uint8)
    return attacked[0].permute(1, 2, 0).numpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--dataset", default="kvasir_seg")
    parser.add_argument("--images", type=int, default=40, help="the first N training images")
    parser.add_argument("--direct", action="store_true", help="also the attack made on the victim's own view")
    parser.add_argument("--steps", type=int, default=RefineSchedule().steps, help="the refinement's steps")
    parser.add_argument("--step-size", type=float, default=RefineSchedule().step_size,
                        help="the refinement's step, in units of its per-pixel bound")
    parser.add_argument("--grid", type=float, default=RefineSchedule().grid,
                        help="the refinement's grid, in units of the segmenter's input side")
    parser.add_argument("--views", default=",".join(VIEWS), help=f"comma-separated views to attack through ({', '.join(VIEWS)})")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        schedule = RefineSchedule(steps=args.steps, step_size=args.step_size, views=tuple(args.views.split(",")),
                                  grid=args.grid)
    except ValueError as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # the shipped generator's load warnings are not news here
    folder = SegmentationFolder(args.data_root / args.dataset)
    spec = folder.spec
    size = victim_size(spec, 128)
    refiner = Refiner.load(schedule=schedule)
    plain = Protector.load("default")
    half = plain.with_budget(RefineSchedule().base_budget(plain.budget))
    refined = Protector.load("default", refiner=refiner)
    rows: dict[str, list[np.ndarray]] = {"clean": [], "v9": [], "v9, half budget": [], "refined": []}
    if args.direct and size != (refiner.input_size, refiner.input_size):
        parser.error(f"--direct needs a square victim view of the segmenter's input side, not {size}")
    masks, direct = [], {"direct, half budget": [], "direct, full budget": []}
    for stem in folder.stems(spec.train_split)[: args.images]:
        image, mask = folder.read_pair(stem)
        pixels = image.rgb8()
        objects, keys = class_regions(mask, spec.object_region(mask))
        prompt = ImagePrompt(objects=objects, keys=keys)
        masks.append(mask)
        rows["clean"].append(pixels)
        for name, protector in (("v9", plain), ("v9, half budget", half), ("refined", refined)):
            rows[name].append(protector.protect_batch([LoadedImage(pixels)], [prompt])[0].pixels)
        if args.direct:
            direct["direct, half budget"].append(direct_attack(refiner, plain, pixels, prompt, 0.5))
            direct["direct, full budget"].append(direct_attack(refiner, plain, pixels, prompt, 1.0))
    print(f"{args.dataset}, first {args.images} training images, victim view {size}, segmenter "
          f"{refiner.metadata['trained_on']}, {args.steps} steps of {args.step_size:g}, grid "
          f"{args.grid:g} x input, views {', '.join(schedule.views)}")
    print("| protection | segmenter loss on the victim's view |\n|---|---|")
    for name, images in rows.items():
        print(f"| {name} | {victim_view_loss(refiner, spec, images, masks, size):.4f} |")
    for name, images in direct.items():  # already at the victim size: load_split leaves them as they are
        if images:
            small = [resize_mask(mask, size).numpy() for mask in masks]
            print(f"| {name} | {victim_view_loss(refiner, spec, images, small, size):.4f} |")


if __name__ == "__main__":
    main()
