"""Can learned 8/255 noise (error-minimising, or adversarial against a clean model) protect the box-prompted ``sam`` victim? (a probe, not a method)

No hand-made 8/255 noise protects the interactive victim
(``benchmarks/results/noise_structure_probe_kvasir_seg_sam.md``: textures are not learned, a flat
shift is learned but the victim falls back to box-fill). This asks whether a *learned,
content-dependent* noise can, from the strongest position a noise maker can be in: sample-wise
error-minimising noise (Huang et al., "Unlearnable Examples", ICLR 2021) made against a surrogate of
the victim's own architecture (``sam``, from scratch), with the victim's own prompts and loss
(:func:`unseg.evaluation.interactive.interactive_loss`), at the victim's own resolution (the noise
lives on the images the victim trains on, ``image_height`` px, so no resize weakens it). If even
this leaves the victim at clean, a generator trained against a ``sam`` surrogate will not do
better; if it works, that training is the route for the shipped generator.

With ``--victim unet`` (or any semantic victim) the probe asks the same of a multi-class scene:
the surrogate is that victim's architecture from scratch with its cross-entropy on the class maps,
every labelled pixel gets ε and void ε_bg. ``--class-wise`` learns one code per class instead of one
δ per image (the same min-min; a learned counterpart of the keyed generator's designed codes);
``--native`` puts the noise on the native images and lets the surrogate see them resized to the
victim size, as a protector's noise is applied and a victim reads it; ``--tile-divisor D`` makes each
class code a square tile (1/D of the longer side) repeated over the image, translation-invariant like
the generator's code bank, so a victim's crops and a new image size leave it the same code; ``--height``
sets the victim size; ``--reliance`` also raises the surrogate's loss when each class carries the next
class's code, so the codes decide its prediction. On CamVid it tells whether
any 8/255 noise can do what the hand-made codes of ``keyed_codes_probe.py`` cannot: stop sky,
building and car being learned from content.

Min-min, one pass per batch of objects (the surrogate and the noise learn together, as in the
paper's sample-wise version): one Adam step of the surrogate on x + δ, then ``--pgd-steps`` signed
steps of ``--unit-step`` x the per-pixel budget that *lower* its loss on that batch, δ kept within
ε on the object and ε_bg elsewhere and x + δ within [0, 1]. Then δ is rounded to whole levels
(the bound stays exact) and a fresh victim (another initialisation) trains on the protected images
with the preset's schedule and is scored on the clean test objects, as ``unseg evaluate`` scores it.

``--objective adversarial`` asks the opposite question (Fowl et al., "Adversarial Examples Make Strong
Poisons", NeurIPS 2021): the surrogate is first trained on the *clean* images (``--surrogate-epochs``),
then frozen, and the noise is a targeted adversarial perturbation against it — each labelled pixel
pushed towards the next class (c -> c + 1 mod C; for ``sam`` the object towards background and the
rest towards object), or with ``--untargeted`` away from its true label. A victim trained on such
images learns the wrong target's features as its label's; on clean images those features point at
the wrong answer. That is *misleading* noise, not a shortcut: what a box-prompted victim needs to
fall below its box (``benchmarks/results/adversarial_poison_probe.md``). ``--surrogate ARCH`` makes
the noise against another architecture than the first ``--victim``; every ``--victim`` listed
trains on the same protected images.

Usage (from the repository root; Kvasir-SEG at 128 px, one CPU thread beside two other runs on the
2-core CPU: ~5 min per pass over the 880 images with 3 PGD steps, then ~1.6 min per victim epoch):

    python benchmarks/sam_error_min_probe.py --passes 5 --pgd-steps 3 --epochs 10 --no-amp --threads 1
    python benchmarks/sam_error_min_probe.py --victim unet --dataset camvid --passes 5 --pgd-steps 3 --epochs 8 \
        --no-amp --out benchmarks/results/semantic_error_min_probe.md
    python benchmarks/sam_error_min_probe.py --objective adversarial --surrogate-epochs 10 --passes 1 \
        --pgd-steps 10 --unit-step 0.2 --epochs 20 --no-amp --threads 1 --out runs/adv_sam.md
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from clean_surrogate import CleanSurrogate, add_run_arguments, run_config
from noise_structure_probe import generator_noises, iter_generator_noises
from provenance import commit as code_commit
from provenance import machine
from unseg.baselines.sample import class_index_map
from unseg.budget import Budget
from unseg.data.segmentation import SegmentationFolder, victim_size
from unseg.data.transforms import Letterbox
from unseg.evaluation.interactive import interactive_loss, object_classes, object_samples
from unseg.evaluation.protocol import load_split, pick_stems
from unseg.evaluation.training import SplitTensors, segmentation_loss, train_victim
from unseg.evaluation.victims import build_victim, parse_victim
from unseg.models.generator import flat_code
from unseg.protection.budget import apply_budget

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "sam_error_min_probe.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--dataset", default="kvasir_seg",
                        help="for sam a set with one object per image (foreground rule); any set for a semantic victim")
    parser.add_argument("--victim", dest="victims", nargs="+", default=["sam"],
                        help="the victims (sam, unet, ...), each trained on the same protected images; the first is "
                             "also the surrogate's architecture unless --surrogate names another")
    parser.add_argument("--surrogate", default=None,
                        help="another architecture for the surrogate (transfer: noise made against it)")
    parser.add_argument("--preset", default="strong_cpu", help="evaluation preset giving data sizes and schedule")
    parser.add_argument("--objective", choices=("error-min", "adversarial"), default="error-min",
                        help="error-min: min-min against a surrogate learning on x + δ; adversarial: targeted "
                             "PGD against a surrogate trained on the clean images, then frozen")
    parser.add_argument("--untargeted", action="store_true",
                        help="--objective adversarial: raise the loss of the true labels instead of lowering the wrong "
                             "target's (error-maximising noise)")
    parser.add_argument("--surrogate-epochs", type=int, default=8,
                        help="--objective adversarial: clean epochs of the surrogate before the noise")
    parser.add_argument("--surrogate-dataset", default=None,
                        help="--objective adversarial with an interactive surrogate: train it on this set's clean "
                             "training split (the evaluation's own loop, unseg.evaluation.training.train_victim) "
                             "instead of the protected set's — does noise made against a model of other data poison "
                             "this set? (a generator trained on one set and used on another meets exactly that)")
    parser.add_argument("--surrogate-weights", type=Path, default=None,
                        help="like --surrogate-dataset, with the frozen surrogate read from a file "
                             "benchmarks/clean_surrogate.py wrote (its data and epochs from the file)")
    parser.add_argument("--objects-per-image", type=int, default=1,
                        help="sam surrogate: objects of each image whose loss the noise moves (the victim samples 3 "
                             "of all an epoch; CamVid images hold ~8)")
    parser.add_argument("--base", default=None,
                        help="a generator whose noise (made as the benchmark's unseg method makes it, at the victim size: "
                             "'default' = the shipped one) takes --base-share of every pixel's budget; the learned noise "
                             "gets the rest (how a generator could share the budget between its codes and this noise)")
    parser.add_argument("--base-share", type=float, default=0.5, help="with --base: its share of the budget")
    parser.add_argument("--base-native", action="store_true",
                        help="with --base: make the generator's noise on the native images (as `unseg protect` does) "
                             "and take what the victim's resize leaves of it, instead of making it at the victim size")
    parser.add_argument("--base-at", type=int, default=None, metavar="HEIGHT",
                        help="like --base-native, with the 'native' images first resized to this height at the victim's "
                             "aspect: the generator's half is made and saturated on that grid and the victim downsizes "
                             "it; the victim's own height is the victim-size case, a larger one separates resampling "
                             "(crispness) from the aspect the native images add")
    parser.add_argument("--passes", type=int, default=4, help="min-min passes over the training objects")
    parser.add_argument("--pgd-steps", type=int, default=3, help="noise steps per batch and pass")
    parser.add_argument("--unit-step", type=float, default=0.25, help="noise step in units of the per-pixel budget")
    parser.add_argument("--class-wise", action="store_true",
                        help="one learned code per class, shared by every image (semantic victims), not one δ per image")
    parser.add_argument("--coarse", type=int, default=1,
                        help="sample-wise noise on a grid this many times coarser than the images, bilinearly upsampled "
                             "(then clipped to the budget): does a low-frequency poison, one that would survive a "
                             "victim's resize, still poison?")
    parser.add_argument("--native", action="store_true",
                        help="semantic victims: the noise lives on the native images (all one size) and the surrogate "
                             "sees them resized to the victim size, as the victim does")
    parser.add_argument("--tile-divisor", type=float, default=None, metavar="D",
                        help="with --class-wise: each code a square tile of side (the noised images' longer side / D), "
                             "repeated over the image (translation-invariant, as the generator's code bank) instead "
                             "of one full-size map")
    parser.add_argument("--reliance", type=float, default=0.0, metavar="LAMBDA",
                        help="with --class-wise error-min: also raise the surrogate's loss when each class carries the "
                             "next class's code (x LAMBDA), so the codes decide its prediction rather than the content")
    parser.add_argument("--height", type=int, default=None, help="victim height in px [the preset's]")
    parser.add_argument("--init-flat", action="store_true",
                        help="with --class-wise: start every class from its flat colour code instead of zero")
    parser.add_argument("--save-codes", type=Path, default=None,
                        help="with --class-wise: write the learned codes (safetensors, 'codes': K x 3 x H x W in [-1, 1]; "
                             "with --tile-divisor the K x 3 x side x side tiles)")
    parser.add_argument("--epochs", type=int, default=10, help="victim epochs on the protected images")
    parser.add_argument("--seed", type=int, default=None, help="surrogate and victim initialisation [the preset's]")
    add_run_arguments(parser)
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown results, a section appended per run")
    args = parser.parse_args(argv)
    args.surrogate = args.surrogate or args.victims[0]
    interactive = any(parse_victim(name).interactive for name in [args.surrogate, *args.victims])
    if interactive and (args.native or args.class_wise):
        parser.error("--native and --class-wise are for semantic victims and surrogates")
    if (args.surrogate_dataset or args.surrogate_weights) and (
            args.objective != "adversarial" or not parse_victim(args.surrogate).interactive):
        parser.error("--surrogate-dataset / --surrogate-weights are for --objective adversarial with an interactive "
                     "surrogate")
    if args.surrogate_dataset and args.surrogate_weights:
        parser.error("give --surrogate-dataset or --surrogate-weights, not both")
    if args.coarse < 1 or (args.coarse > 1 and (args.class_wise or args.passes != 1 or args.objective != "adversarial")):
        parser.error("--coarse is a factor >= 1 for a sample-wise adversarial poison made in one pass")
    if args.reliance and (not args.class_wise or args.objective != "error-min" or args.reliance < 0):
        parser.error("--reliance is a weight >= 0 for --class-wise error-min codes")
    if args.tile_divisor is not None and (not args.class_wise or args.tile_divisor < 1):
        parser.error("--tile-divisor is a divisor >= 1 for --class-wise codes")
    if (args.base_native or args.base_at) and not args.base:
        parser.error("--base-native and --base-at need --base")
    if args.base_native and args.base_at:
        parser.error("give --base-native or --base-at, not both")
    if args.base and (args.native or args.class_wise or not 0 < args.base_share < 1):
        parser.error("--base needs noise at the victim size (no --native, --class-wise) and 0 < --base-share < 1")
    return args


def pixel_arrays(images: torch.Tensor) -> list[np.ndarray]:
    """``N x 3 x H x W`` uint8 images -> ``N`` arrays ``H x W x 3``, as image files read."""
    return list(images.permute(0, 2, 3, 1).numpy())


def budget_map(split: SplitTensors, spec, budget: Budget) -> torch.Tensor:
    """``N x 1 x H x W`` per-pixel bound in [0, 1] units: ε on the object region, ε_bg elsewhere."""
    regions = torch.stack([torch.from_numpy(spec.object_region(m.numpy())) for m in split.masks])[:, None]
    return torch.where(regions, budget.fraction, budget.fraction_bg).float()


def surrogate_loss(split: SplitTensors, spec, victim, config, generator: torch.Generator,
                   targets: SplitTensors | None = None, trained: torch.nn.Module | None = None,
                   objects_per_image: int = 1):
    """A from-scratch surrogate of ``victim``'s architecture (another initialisation than the victim's),
    its Adam optimiser at the victim's learning rate, and ``loss(x, index)``: the victim's own training
    loss on images ``x`` (``B x 3 x H x W`` in [0, 1], the training images ``index``) — for ``sam`` with
    its box prompts (``objects_per_image`` random objects of each image, the loss their mean), for a
    semantic victim the cross-entropy on the class maps;
    ``loss(x, index, flip=True)`` scores the adversarial target instead (each class as the next one,
    or for ``sam`` the object mask inverted).
    ``targets``: the split at the victim size when ``split`` holds larger (native) images — a semantic
    surrogate then sees x resized (bilinear, antialiased) to the victim size, as the victim will.
    ``trained``: an already trained surrogate to use instead of a fresh one."""
    torch.manual_seed(config.seed + 100)
    surrogate = trained if trained is not None else build_victim(victim, spec.num_classes)
    lr = config.schedule().lr
    if not victim.interactive:
        targets = targets or split
        size = tuple(targets.masks.shape[1:])

        def semantic(x: torch.Tensor, index: torch.Tensor, flip: bool = False) -> torch.Tensor:
            if tuple(x.shape[2:]) != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            masks = targets.masks[index]
            if flip:  # every class towards the next one; void / ignore labels stay as they are
                masks = torch.where(masks < spec.num_classes, (masks + 1) % spec.num_classes, masks)
            return segmentation_loss(surrogate(x), masks, spec)

        return surrogate, torch.optim.Adam(surrogate.parameters(), lr=lr), semantic
    size = surrogate.config.sam.img_size
    box = Letterbox(split.images.shape[2], split.images.shape[3], size)
    per_image = torch.tensor([min(objects_per_image, len(object_classes(m, spec))) for m in split.masks])
    if bool((per_image == 0).any()):
        raise ValueError(f"{spec.name}: the sam probe needs an object in every training image")
    objects = object_samples(split, spec, size, max_objects=objects_per_image, generator=generator)
    owner = torch.repeat_interleave(torch.arange(len(split)), per_image)  # object -> its image (object_samples' order)

    def loss(x: torch.Tensor, index: torch.Tensor, flip: bool = False) -> torch.Tensor:
        picked = torch.nonzero(torch.isin(owner, index)).flatten()  # every object of those images
        row = torch.full((len(split),), -1, dtype=torch.long)
        row[index] = torch.arange(len(index))
        batch = objects.subset(picked)
        target = 1 - batch.targets if flip else batch.targets  # flip: object -> background and back
        return interactive_loss(surrogate(box.image_to_input(x[row[owner[picked]]]), batch.prompts).float(), target)

    return surrogate, torch.optim.Adam(surrogate.parameters(), lr=lr * 0.5), loss  # lr as interactive_loop


def class_slots(split: SplitTensors, spec) -> torch.Tensor:
    """``N x K x H x W`` one-hot class maps, K = classes + 1: the last slot holds every label outside the
    classes (void / ignore), as in :func:`unseg.baselines.sample.class_index_map`."""
    labels = torch.from_numpy(class_index_map(split.masks.numpy(), spec.num_classes))
    return F.one_hot(labels, spec.num_classes + 1).permute(0, 3, 1, 2).float()


def learned_noise(split: SplitTensors, spec, bound: torch.Tensor, args, config, targets: SplitTensors | None = None,
                  base: torch.Tensor | None = None, trained: torch.nn.Module | None = None
                  ) -> tuple[torch.Tensor, list[float], torch.Tensor | None]:
    """``N x 3 x H x W`` noise (in [0, 1] units) that lowers a from-scratch surrogate's loss (the
    victim's architecture, :func:`surrogate_loss`) — or with ``--objective adversarial`` a frozen
    clean-trained surrogate's loss towards the wrong target (or, ``--untargeted``, raises it on the
    true labels); also per pass the surrogate's mean training loss on x + δ (before each step's noise
    update), or the adversarial objective after each batch's steps; and with ``--class-wise`` the learned ``K x 3 x H x W`` codes in
    units of their bound (within [-1, 1]), else None.

    Sample-wise: one δ per image. ``--class-wise``: one ``3 x H x W`` code per class (void: its own,
    within ε_bg), the same in every image and placed on that class's pixels — a learned counterpart
    of the generator's designed class codes. ``base`` (``N x 3 x H x W``, in [0, 1] units, within
    ``bound`` x --base-share): fixed noise under the learned one, which then lives in the rest of the
    budget; the returned noise is their sum. ``trained``: a frozen surrogate trained elsewhere
    (:class:`clean_surrogate.CleanSurrogate`) instead of the clean warm-up on ``split``."""
    generator = torch.Generator().manual_seed(config.seed + 100)
    adversarial = args.objective == "adversarial"  # the surrogate learns the clean images first, then stays fixed
    surrogate, optimiser, loss_of = surrogate_loss(split, spec, parse_victim(args.surrogate), config, generator, targets,
                                                   trained, args.objects_per_image)
    clean = pixels = split.images.float() / 255
    if base is not None:  # the learned noise moves the images with the base noise on them, in the budget left
        pixels, bound = (clean + base).clamp(0, 1), bound * (1 - args.base_share)
    delta = torch.zeros_like(pixels)
    if args.class_wise:
        slots = class_slots(split, spec)
        code_limit = torch.full((spec.num_classes + 1, 1, 1, 1), config.budget.fraction)
        code_limit[-1] = config.budget.fraction_bg
        height, width = pixels.shape[2:]
        side = int(round(max(height, width) / args.tile_divisor)) if args.tile_divisor else None
        codes = torch.zeros(spec.num_classes + 1, 3, *((side, side) if side else (height, width)))
        if args.init_flat:  # start from the keyed generator's flat colours (class k: flat_code k; void: none)
            codes[:-1] = torch.stack([flat_code(k, 1) for k in range(spec.num_classes)]) * code_limit[:-1]

        def full(values: torch.Tensor) -> torch.Tensor:  # K x 3 x h x w codes -> K x 3 x H x W maps
            if not side:
                return values
            return values.repeat(1, 1, -(-height // side), -(-width // side))[..., :height, :width]

        place = lambda index, values: torch.einsum("nkhw,kchw->nchw", slots[index], full(values))  # noqa: E731
        next_code = torch.tensor([*range(1, spec.num_classes), 0, spec.num_classes])  # --reliance: class k gets k + 1's code
    for epoch in range(args.surrogate_epochs if adversarial and trained is None else 0):
        surrogate.train()
        order, epoch_losses = torch.randperm(len(split), generator=generator), []
        for index in order.split(config.batch_size):
            if len(index) < 2:
                continue
            loss = loss_of(clean[index], index)  # the clean images: not the base noise either
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            epoch_losses.append(float(loss.detach()))
        print(f"clean surrogate epoch {epoch + 1}: loss {np.mean(epoch_losses):.3f}", flush=True)

    def objective(x_noised: torch.Tensor, index: torch.Tensor) -> torch.Tensor:  # what δ lowers
        if not adversarial:
            return loss_of(x_noised, index)
        return -loss_of(x_noised, index) if args.untargeted else loss_of(x_noised, index, flip=True)

    losses = []  # error-min: the surrogate's loss on x + δ per pass; adversarial: the objective after each batch's steps
    for _ in range(args.passes):
        order, pass_losses = torch.randperm(len(split), generator=generator), []
        for start in range(0, len(split), config.batch_size):
            index = order[start : start + config.batch_size]
            if len(index) < 2:
                continue  # batch norm needs two samples
            x, limit = pixels[index], bound[index]
            if not adversarial:
                surrogate.train()
                noise = place(index, codes) if args.class_wise else delta[index]
                loss = loss_of((x + noise).clamp(0, 1), index)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                pass_losses.append(float(loss.detach()))
            surrogate.eval()  # no dropout / batch-norm updates while the noise moves
            if args.class_wise:
                for _ in range(args.pgd_steps):
                    codes.requires_grad_(True)
                    target = objective((x + place(index, codes)).clamp(0, 1), index)
                    if args.reliance:  # each class with the next class's code (void keeps its own): loss up
                        swapped = codes[next_code]
                        target = target - args.reliance * loss_of((x + place(index, swapped)).clamp(0, 1), index)
                    (gradient,) = torch.autograd.grad(target, codes)
                    codes = codes.detach() - args.unit_step * code_limit * gradient.sign()
                    codes = torch.maximum(torch.minimum(codes, code_limit), -code_limit)
                if adversarial:
                    with torch.no_grad():
                        pass_losses.append(float(objective((x + place(index, codes)).clamp(0, 1), index)))
                continue
            if args.coarse > 1:  # δ on the coarse grid, each step through the upsampling
                grid = (x.shape[-2] // args.coarse, x.shape[-1] // args.coarse)
                coarse_limit = F.interpolate(limit, size=grid, mode="area")
                fine = lambda c: torch.maximum(torch.minimum(  # noqa: E731
                    F.interpolate(c, size=x.shape[-2:], mode="bilinear", align_corners=False), limit), -limit)
                coarse = torch.zeros(len(index), x.shape[1], *grid)
                for _ in range(args.pgd_steps):
                    coarse.requires_grad_(True)
                    (gradient,) = torch.autograd.grad(objective((x + fine(coarse)).clamp(0, 1), index), coarse)
                    coarse = coarse.detach() - args.unit_step * coarse_limit * gradient.sign()
                    coarse = torch.maximum(torch.minimum(coarse, coarse_limit), -coarse_limit)
                noise = (x + fine(coarse.detach())).clamp(0, 1) - x
            else:
                noise = delta[index].clone()
                for _ in range(args.pgd_steps):
                    noise.requires_grad_(True)
                    (gradient,) = torch.autograd.grad(objective((x + noise).clamp(0, 1), index), noise)
                    noise = noise.detach() - args.unit_step * limit * gradient.sign()
                    noise = torch.maximum(torch.minimum(noise, limit), -limit)
                    noise = (x + noise).clamp(0, 1) - x
            delta[index] = noise.detach()
            if adversarial:
                with torch.no_grad():
                    pass_losses.append(float(objective((x + noise).clamp(0, 1), index)))
        losses.append(float(np.mean(pass_losses)))
        print(f"pass {len(losses)}: surrogate loss {losses[-1]:.3f}", flush=True)
    if not args.class_wise:
        return delta if base is None else (pixels + delta) - clean, losses, None
    delta = torch.cat([place(index, codes) for index in torch.arange(len(split)).split(32)])
    return (pixels + delta).clamp(0, 1) - pixels, losses, codes / code_limit.clamp_min(1e-12)  # ε_bg may be 0


def protected_split(split: SplitTensors, delta: torch.Tensor, bound: torch.Tensor) -> tuple[SplitTensors, int, int]:
    """uint8 images + δ rounded to whole levels (clipped to the budget, so it stays exact); also the
    measured L∞ change in levels on / off the objects."""
    levels = torch.round(delta * 255)
    limit = torch.round(bound * 255)
    levels = torch.maximum(torch.minimum(levels, limit), -limit)
    images = (split.images.float() + levels).clamp(0, 255)
    change = (images - split.images.float()).abs()
    on = bound.expand_as(change) == bound.max()
    inside = int(change[on].max()) if on.any() else 0
    outside = int(change[~on].max()) if (~on).any() else 0
    return SplitTensors(images.to(torch.uint8), split.masks), inside, outside


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = run_config(args)
    if args.height:
        config = replace(config, image_height=args.height)
    folder = SegmentationFolder(args.data_root / args.dataset)
    spec = folder.spec
    size = victim_size(spec, config.image_height)
    train_stems = pick_stems(folder.stems(spec.train_split), config.train_images, config.seed)
    test_stems = pick_stems(folder.stems(spec.test_split), config.test_images, config.seed)
    train_pixels = [folder.read_image(s).rgb8() for s in train_stems]  # read once: --native needs them twice
    train_masks = [folder.read_mask(s) for s in train_stems]
    train = load_split(train_pixels, train_masks, size)
    test = load_split([folder.read_image(s).rgb8() for s in test_stems], [folder.read_mask(s) for s in test_stems], size)
    # where the noise lives: the victim size, or with --native the images' own size
    noised = load_split(train_pixels, train_masks, train_pixels[0].shape[:2]) if args.native else train
    bound = budget_map(noised, spec, config.budget)
    base = None
    if args.base:  # the generator's unit noise on the victim-size images, at its share of the budget
        if args.base_native or args.base_at:  # protect the native (or --base-at) images at the base's share,
            sources, source_masks = train_pixels, train_masks  # then resize them as the victim does
            if args.base_at:
                resized = load_split(train_pixels, train_masks, victim_size(spec, args.base_at))
                sources, source_masks = pixel_arrays(resized.images), list(resized.masks.numpy())
            regions = [spec.object_region(m) for m in source_masks]
            share = Budget(config.budget.epsilon * args.base_share, config.budget.epsilon_bg * args.base_share)
            units = iter_generator_noises(args.base, sources, source_masks, regions, config.budget)
            protected_native = [apply_budget(p, u, r, share) for p, u, r in zip(sources, units, regions)]
            seen = load_split(protected_native, source_masks, size).images.float() / 255
            limit = bound * args.base_share
            base = torch.maximum(torch.minimum(seen - noised.images.float() / 255, limit), -limit)
        else:
            images = pixel_arrays(noised.images)
            labels = list(noised.masks.numpy())
            units = generator_noises(args.base, images, labels, [spec.object_region(m) for m in labels], config.budget)
            base = torch.from_numpy(np.stack(units)).permute(0, 3, 1, 2).float().clamp(-1, 1) * bound * args.base_share
    began = time.perf_counter()  # the noise's time includes a --surrogate-dataset surrogate's training
    other = (CleanSurrogate.load(args.surrogate_weights) if args.surrogate_weights
             else CleanSurrogate.trained(args.data_root, args.surrogate_dataset, args.surrogate_epochs, config)
             if args.surrogate_dataset else None)
    delta, surrogate_losses, codes = learned_noise(noised, spec, bound, args, config, targets=train, base=base,
                                                   trained=None if other is None else other.model)
    if codes is not None and args.save_codes:
        args.save_codes.parent.mkdir(parents=True, exist_ok=True)
        save_file({"codes": codes.contiguous()}, str(args.save_codes))  # keyed_codes_probe.py --kinds codes:PATH
    noise_seconds = time.perf_counter() - began
    protected, inside, outside = protected_split(noised, delta, bound)
    psnr = 10 * np.log10(255.0**2 / float(((protected.images.float() - noised.images.float()) ** 2).mean()))
    if args.native:  # the victim downsizes the protected native images, as it would any dataset
        protected = load_split(pixel_arrays(protected.images), train_masks, size)
    adversarial = args.objective == "adversarial"
    rows, victim_seconds = [], 0.0
    for name in args.victims:  # every victim trains on the same protected images
        victim = parse_victim(name)
        result = train_victim(victim, spec, protected, test, replace(config, epochs=args.epochs).schedule(),
                              torch.device("cpu"), config.seed, progress=None)
        victim_seconds += result.seconds
        metric = "iou" if victim.interactive else spec.primary_metric
        history = [round(epoch[metric], 1) for epoch in result.history]
        losses = [round(epoch["loss"], 3) for epoch in result.history]
        print(f"victim {name} {metric} {result.final[metric]:.1f} history {history}", flush=True)
        label = "victim" if len(args.victims) == 1 else f"victim {name}"
        rows += [f"| {label} test {metric}, last epoch | **{result.final[metric]:.1f}** |",
                 f"| {label} test {metric} per epoch | {history} |",
                 f"| {label} training loss per epoch | {losses} |"]
        if victim.interactive:
            rows.append(f"| box-fill / ellipse IoU of the same test objects | {result.final['box_fill_iou']:.1f} / "
                        f"{result.final['ellipse_iou']:.1f} |")
        else:
            per_class = [None if v is None else round(v) for v in result.final["per_class_iou"]]
            rows.append(f"| {label} per-class test IoU ({', '.join(spec.class_names)}) | {per_class} |")
    kind = f", on {args.base}'s noise at {args.base_share:g} of the budget" if args.base else ""
    kind += " (made on the native images)" if args.base_native else ""
    kind += f" (made at height {args.base_at}, the victim's aspect)" if args.base_at else ""
    kind += f", on a {args.coarse}x coarser grid" if args.coarse > 1 else ""
    kind += (", class-wise codes" + (" from flat colours" if args.init_flat else "")
             + (f", tiles of 1/{args.tile_divisor:g} of the side" if args.tile_divisor else "")
             + (f", reliance {args.reliance:g}" if args.reliance else "")) if args.class_wise else ""
    if adversarial:
        trained_on = f" on {other.dataset}" if other is not None else ""
        epochs = other.epochs if other is not None else args.surrogate_epochs
        kind += (f", adversarial (clean surrogate{trained_on} {epochs} epochs, "
                 + ("away from the true labels)" if args.untargeted
                    else "towards the inverted object mask)" if parse_victim(args.surrogate).interactive
                    else "towards the next class)"))
    lines = [
        f"\n## {', '.join(args.victims)}{kind}, surrogate {args.surrogate}: {args.passes} passes x {args.pgd_steps} PGD "
        f"steps (step {args.unit_step:g} x budget), victim {args.epochs} epochs",
        "",
        "- Command: `python benchmarks/sam_error_min_probe.py "
        + " ".join(argv if argv is not None else __import__("sys").argv[1:]) + "`",
        f"- Data: {spec.name}, {len(train)} training images protected at "
        + (f"their native {noised.images.shape[2]}x{noised.images.shape[3]}, victim at {size[0]}x{size[1]}, " if args.native
           else f"the victim size {size[0]}x{size[1]}, ")
        + f"{len(test)} clean test images; {args.preset} schedule ({'bf16' if config.amp else 'fp32'}); seed {config.seed}",
        f"- Budget: ε {config.budget.epsilon:g}/255, ε_bg {config.budget.epsilon_bg:g}/255; measured L∞ "
        f"{inside} / {outside} levels on / off the objects; PSNR {psnr:.1f} dB",
        f"- Machine: {machine('cpu', args.threads)}; code {code_commit()}; noise {noise_seconds / 60:.0f} min, "
        f"victims {victim_seconds / 60:.0f} min",
        "",
        "| | value |", "|---|---|",
        (f"| frozen surrogate's loss {'of the true labels, negated' if args.untargeted else 'towards the wrong target'} per pass (x + δ) | {[round(v, 3) for v in surrogate_losses]} |"
         if adversarial else f"| surrogate training loss per pass (x + δ) | {[round(v, 3) for v in surrogate_losses]} |"),
        *rows,
    ]
    if other is not None:
        lines.append(f"| surrogate's clean {other.dataset} test IoU / box-fill there | "
                     f"{other.final['iou']:.1f} / {other.final['box_fill_iou']:.1f} |")
    why = __doc__.split("\n\n")[1 if parse_victim(args.victims[0]).interactive else 2]  # the sam question, or the semantic one
    title = f"# Error-minimising noise against the `{args.victims[0]}` victim (probe)\n\n{why}\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = args.out.read_text() if args.out.is_file() else title
    args.out.write_text(previous + "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
