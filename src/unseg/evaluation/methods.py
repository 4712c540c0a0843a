"""Protecting a dataset's training split with one method (UnSeg or a baseline), cached on disk.

Every method ends the same way: unit noise ``H x W x 3`` in [-1, 1] at native resolution (for
UnSeg :meth:`unseg.protection.Protector.noise_batch`: the protector's noise, without its budget or
quality statistics), bounded exactly once by :func:`unseg.protection.budget.apply_budget` (ε on
the object region of the set's ``objects`` rule, ε_bg elsewhere) and written as lossless PNG. Protected images of
(method, dataset, ε, ε_bg) live in one folder with a ``protection.json`` holding the timing, so
a rerun reuses them. Timings cover noise generation + budget (not file reading or writing).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from unseg.baselines import BASELINES, NoiseSample, build_baseline
from unseg.baselines.error_minimizing import MinMinSchedule
from unseg.budget import DEFAULT_BUDGET, Budget
from unseg.data.images import atomic_write, read_image, write_image
from unseg.data.segmentation import SegmentationFolder
from unseg.data.transforms import DEFAULT_FIT
from unseg.protection.budget import apply_budget, measured_linf
from unseg.protection.perturb import is_gray, to_gray
from unseg.protection.quality import psnr

if TYPE_CHECKING:
    from unseg.protection.refine import RefineSchedule

CLEAN = "clean"
UNSEG = "unseg"
UNSEG_REFINED = "unseg_refined"  # the shipped generator + protect-time refinement (unseg.protection.refine)
UNSEG_REFINED_FULL = "unseg_refined_full"  # the refinement on the whole budget (the generator only names objects)
PROTECTION_FILE = "protection.json"


UNMARKED_FIT = "letterbox"  # the fit of every run before fits existed: identities name only the others


@dataclass(frozen=True)
class UnsegVariant:
    """How an UnSeg method makes its noise from the generator (``MethodOptions.generator``, or the
    checkpoint of ``unseg:PATH``): the fit of images into its input and an optional refinement.

    Attributes:
        fit: how each image enters the generator's input (:data:`unseg.data.transforms.INPUT_FITS`);
            plain ``unseg`` follows the protector's default (:data:`~unseg.data.transforms.DEFAULT_FIT`).
        refine: the fields of its :class:`unseg.protection.refine.RefineSchedule` (``{}``: the
            defaults), or None for no refinement.
    """

    fit: str = DEFAULT_FIT
    refine: dict[str, Any] | None = field(default=None, hash=False)


VARIANTS: dict[str, UnsegVariant] = {  # method -> how it differs from plain "unseg"
    UNSEG_REFINED: UnsegVariant(fit="letterbox", refine={}),  # the fit these were measured with
    UNSEG_REFINED_FULL: UnsegVariant(fit="letterbox", refine={"share": 1.0}),
    "unseg_letterbox": UnsegVariant(fit="letterbox"),  # the default fit before the square one
    "unseg_square": UnsegVariant(fit="square"),  # pinned: stays square if the default changes
    "unseg_refined_square": UnsegVariant(fit="square", refine={"views": ("square",)}),
}


@dataclass(frozen=True)
class MethodOptions:
    """Settings shared by all protection methods in one evaluation."""

    budget: Budget = DEFAULT_BUDGET
    seed: int = 0
    device: str = "cpu"
    generator: str = "default"  # what plain "unseg" loads: "default", a preset, or a checkpoint path
    batch_size: int = 4
    em_schedule: MinMinSchedule = MinMinSchedule()


def check_method(name: str, need_file: bool = True) -> None:
    """Raise ValueError for a method name that is not clean, unseg, a :data:`VARIANTS` name, unseg:PATH or a
    baseline; with ``need_file``, also for an unseg:PATH whose checkpoint is missing (what protecting needs, and
    reading a finished run's recorded methods does not)."""
    if name in (CLEAN, UNSEG) or name in VARIANTS or name in BASELINES:
        return
    if name.startswith(UNSEG + ":"):
        if need_file and not Path(name.split(":", 1)[1]).is_file():
            raise ValueError(f"generator checkpoint not found: {name.split(':', 1)[1]}")
        return
    raise ValueError(f"unknown method {name!r}; use clean, unseg, {', '.join(VARIANTS)}, unseg:PATH or one of "
                     f"{sorted(BASELINES)}")


def method_slug(name: str) -> str:
    """A folder-safe name: ``unseg:/a/b/gen.safetensors`` -> ``unseg-gen-<8 hex of the path>``."""
    if name.startswith(UNSEG + ":"):
        path = name.split(":", 1)[1]
        digest = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:8]
        return f"unseg-{Path(path).stem}-{digest}"
    return name


def generator_identity(method: str, generator: str) -> str | None:
    """What an UnSeg method's noise comes from (``generator``: what plain ``unseg`` loads):
    ``sha1:<12 hex>`` of the checkpoint file's bytes, or ``preset:<name>`` for a randomly
    initialised preset, plus ``+saturated`` (the protector's default noise saturation), its fit
    (``+fit:square``; nothing for :data:`UNMARKED_FIT`) and for a refined :data:`VARIANTS` method the
    refinement's segmenter (``sha1``), schedule and views; None for other methods. A run folder
    records it so that resuming after the weights or the noise post-processing changed (e.g. new
    shipped weights, another default fit) is refused."""
    if method == UNSEG or method in VARIANTS:
        source = generator
    elif method.startswith(UNSEG + ":"):
        source = method.split(":", 1)[1]
    else:
        return None
    from unseg.protection.protector import resolve_generator_source

    resolved = resolve_generator_source(source)
    weights = (f"preset:{resolved}" if not Path(resolved).is_file()
               else file_digest(Path(resolved)))
    variant = variant_of(method)
    identity = weights + "+saturated" + ("" if variant.fit == UNMARKED_FIT else f"+fit:{variant.fit}")
    schedule = refine_schedule(method)
    if schedule is None:
        return identity
    from unseg.protection.refine import DEFAULT_SURROGATE

    surrogate = file_digest(DEFAULT_SURROGATE) if DEFAULT_SURROGATE.is_file() else "missing"
    return f"{identity}+refined:{surrogate}:{schedule.tag}"


def variant_of(method: str) -> UnsegVariant:
    """How an UnSeg method makes its noise: its :data:`VARIANTS` entry; plain ``unseg`` and
    ``unseg:PATH``: the default fit, no refinement."""
    return VARIANTS.get(method, UnsegVariant())


def refine_schedule(method: str) -> RefineSchedule | None:
    """The :class:`unseg.protection.refine.RefineSchedule` of a :data:`VARIANTS` method (None: not refined)."""
    from unseg.protection.refine import RefineSchedule

    variant = variant_of(method)
    return None if variant.refine is None else RefineSchedule(**variant.refine)


def file_digest(path: Path) -> str:
    """``sha1:<12 hex>`` of a file's bytes (weights that identify a method's noise)."""
    return "sha1:" + hashlib.sha1(path.read_bytes()).hexdigest()[:12]


def protected_folder(cache: Path, method: str, dataset: str, options: MethodOptions) -> Path:
    """Cache folder of (method, dataset, ε, ε_bg)."""
    levels = "eps{}-{}".format(*options.budget.levels())
    return Path(cache) / f"{method_slug(method)}_{dataset}_{levels}"


def unseg_noise_maker(source: str, options: MethodOptions, refine: RefineSchedule | None = None,
                      fit: str = DEFAULT_FIT
                      ) -> tuple[Callable[[list[NoiseSample], list[np.ndarray]], list[np.ndarray]], dict]:
    """(noise maker, info) for the UnSeg generator ``source``: the maker gives each sample's unit
    noise, with each labelled class region of the object region as its own mask prompt (as
    ``unseg protect --masks`` does for class-index masks); info names the generator. ``refine``:
    with the shipped refinement (:class:`unseg.protection.refine.Refiner`) on this schedule;
    ``fit``: how images enter the generator's input (:class:`unseg.protection.Protector`)."""
    from unseg.data.images import LoadedImage
    from unseg.data.prompts import ImagePrompt
    from unseg.protection.protector import Protector
    from unseg.protection.refine import Refiner

    refiner = None if refine is None else Refiner.load(schedule=refine, device=options.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        protector = Protector.load(source, device=options.device, budget=options.budget, seed=options.seed,
                                   batch_size=options.batch_size, refiner=refiner, fit=fit)
    info = {"generator": protector.name, "trained": protector.trained, "fit": fit,
            "warnings": [str(w.message) for w in caught]}
    if refiner is not None:
        info["refine"] = refiner.describe()

    def make(samples: list[NoiseSample], _: list[np.ndarray]) -> list[np.ndarray]:
        images = [LoadedImage(sample.pixels) for sample in samples]
        prompts = [ImagePrompt(objects=masks, keys=keys)
                   for masks, keys in (class_regions(sample.mask, sample.region) for sample in samples)]
        return [native.full() for native in protector.noise_batch(images, prompts)]  # the budget: once, below

    return make, info


def class_regions(labels: np.ndarray, region: np.ndarray) -> tuple[list[np.ndarray], list[int]]:
    """One mask per class label present inside ``region``, and the labels (the objects' keys, as
    ``unseg protect --masks`` keys class-index masks)."""
    present = np.unique(labels[region]).tolist()
    return [(labels == label) & region for label in present], [int(label) for label in present]


def _baseline_maker(name: str, num_classes: int, options: MethodOptions):
    maker = build_baseline(name, num_classes, seed=options.seed, budget=options.budget, device=options.device,
                           em_schedule=options.em_schedule)
    return (lambda samples, _: maker(samples)), {}


def protect_split(method: str, folder: SegmentationFolder, stems: list[str], cache: Path, options: MethodOptions,
                  progress: bool = True) -> tuple[Path, dict]:
    """Protect ``stems`` of ``folder`` with ``method`` into the cache; returns (folder, protection info).

    Already written images are reused. ``em`` optimises over all missing images at once (its
    noise depends on the whole set); the other methods work in batches of ``options.batch_size``.
    """
    check_method(method)
    if method == CLEAN:
        raise ValueError("the clean method needs no protection")
    target = protected_folder(cache, method, folder.spec.name, options)
    info_path = target / PROTECTION_FILE
    missing = [stem for stem in stems if not (target / f"{stem}.png").is_file()]
    if not missing and info_path.is_file():
        return target, json.loads(info_path.read_text())
    source = (options.generator if method == UNSEG or method in VARIANTS
              else method.split(":", 1)[1] if method.startswith(UNSEG + ":") else None)
    fit = variant_of(method).fit
    make, info = (unseg_noise_maker(source, options, refine=refine_schedule(method), fit=fit) if source is not None
                  else _baseline_maker(method, folder.spec.num_classes, options))
    chunk = len(missing) if method == "em" else options.batch_size
    seconds, worst, psnr_sum = 0.0, [0, 0], 0.0
    for start in tqdm(range(0, len(missing), chunk), desc=f"protect {method} {folder.spec.name}", leave=False, disable=not progress):
        part = missing[start : start + chunk]
        samples, natives = zip(*(_sample(folder, stem, options.seed) for stem in part))
        begun = time.perf_counter()
        noises = make(list(samples), [])
        protected = [apply_budget(native, _noise_for(native, n), s.region, options.budget)
                     for s, native, n in zip(samples, natives, noises)]
        seconds += time.perf_counter() - begun
        for stem, sample, native, pixels in zip(part, samples, natives, protected):
            inside, outside = measured_linf(native, pixels, sample.region)
            worst = [max(worst[0], inside), max(worst[1], outside)]
            psnr_sum += psnr(native, pixels) or 99.0  # identical images: count as 99 dB
            write_image(target / f"{stem}.png", pixels)
    previous = json.loads(info_path.read_text()) if info_path.is_file() else {}
    generated = previous.get("generated", 0) + len(missing)
    total_seconds = previous.get("seconds", 0.0) + seconds
    mean_psnr = (previous.get("mean_psnr", 0.0) * previous.get("generated", 0) + psnr_sum) / max(generated, 1)
    info.update({
        "method": method, "dataset": folder.spec.name, "images": len(stems), "generated": generated,
        "seconds": total_seconds, "seconds_per_image": total_seconds / max(generated, 1), "mean_psnr": mean_psnr,
        "epsilon_levels": options.budget.levels()[0], "epsilon_bg_levels": options.budget.levels()[1],
        "max_linf_inside": max(worst[0], previous.get("max_linf_inside", 0)),
        "max_linf_outside": max(worst[1], previous.get("max_linf_outside", 0)),
    })
    atomic_write(info_path, lambda tmp: tmp.write_text(json.dumps(info, indent=2)))
    return target, info


def _sample(folder: SegmentationFolder, stem: str, seed: int) -> tuple[NoiseSample, np.ndarray]:
    """The noise makers' sample of ``stem`` (its 8-bit RGB view) and the image's own pixels
    (``H x W x C``, its bit depth), which get the noise, as ``unseg protect`` writes them."""
    image, mask = folder.read_pair(stem)
    per_image_seed = int.from_bytes(hashlib.sha1(f"{seed}:{stem}".encode()).digest()[:4], "little")
    sample = NoiseSample(pixels=image.rgb8(), mask=mask, region=folder.spec.object_region(mask), seed=per_image_seed)
    return sample, image.pixels


def _noise_for(native: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``H x W x 3`` unit noise for the image ``native``: unchanged for colour; for a gray image
    (:func:`unseg.protection.perturb.is_gray`: one channel or three equal ones)
    :func:`~unseg.protection.perturb.to_gray`, saturated (the whole budget kept) when the noise
    already is — every value in {-1, 0, 1} —, as ``unseg protect`` does."""
    if not is_gray(native):
        return noise
    saturated = bool(np.isin(noise, (-1.0, 0.0, 1.0)).all())
    return to_gray(torch.from_numpy(np.ascontiguousarray(noise)), saturated).numpy()


def read_protected(target: Path, stem: str) -> np.ndarray:
    """A cached protected image, bit-exact (``H x W x 3`` uint8)."""
    return read_image(target / f"{stem}.png").rgb8()
