"""A quick learnability probe for ``unseg verify --probe``: does a small victim learn less from
the protected copies than from the originals?

The verified images are split (seeded) into a training part and a held-out part. One victim
trains on the *clean* training part, a second one — same seed, data order and schedule — on the
*protected* training part; both are scored on the clean held-out part. The task is the
protected region (the union of the mask's objects, as ``unseg protect --masks`` selects it)
against the rest, scored by foreground IoU (0–100). The drop clean → protected is the
expected effect of the protection on a scraper's model, as far as a few CPU minutes can tell.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from unseg.evaluation.training import TrainSchedule
from unseg.protection.verify import REGION_MASKS, VerifyReport

PROBE_SPEC_NAME = "probe"
UNUSABLE = ("missing", "unreadable", "size", "mode", "mask")  # violations that rule an image out
MIN_MEANINGFUL_TRAIN = 64
WEAK_CLEAN_IOU = 20.0


PROBE_SCHEDULE = TrainSchedule(epochs=30, amp=True)  # 30 epochs: 8 left the clean victim too weak on Kvasir


@dataclass(frozen=True)
class ProbeSettings:
    """How the probe trains its two victims (defaults: ~5 minutes on one CPU core for 128 images).

    Attributes:
        victim: a victim name of :mod:`unseg.evaluation.victims` (``unet``, ``fpn@resnet18``, ...).
        schedule: the victim schedule (epochs, batch size, lr, bf16), as the evaluation's.
        image_height: victim input height (multiple of 32); width from the images' median aspect.
        holdout: fraction of the images held out for testing (at least one).
        max_images: use at most this many images (seeded pick).
        seed, device: run settings.
    """

    victim: str = "unet"
    schedule: TrainSchedule = PROBE_SCHEDULE
    image_height: int = 96
    holdout: float = 0.25
    max_images: int = 128
    seed: int = 0
    device: str = "cpu"


@dataclass
class ProbeResult:
    """Clean-trained vs protected-trained victim on the clean held-out images.

    Attributes:
        clean, protected: foreground IoU (0–100) of the two victims.
        train_images, test_images: images in the training and held-out parts.
        size: victim input (height, width).
        seconds: wall time of both trainings.
        caveats: what limits the reading of the numbers, one line each.
    """

    clean: float
    protected: float
    train_images: int
    test_images: int
    size: tuple[int, int]
    seconds: float
    settings: ProbeSettings
    caveats: list[str] = field(default_factory=list)

    @property
    def drop(self) -> float:
        """IoU points lost by training on the protected copies."""
        return self.clean - self.protected

    def to_dict(self) -> dict:
        return {**asdict(self), "drop": self.drop}


def probe_learnability(
    report: VerifyReport,
    masks: str | Path,
    settings: ProbeSettings = ProbeSettings(),
    *,
    classes: Sequence[str | int] | None = None,
    class_names: dict[str, int] | None = None,
    ignore_index: Iterable[int] = (),
    progress: bool = False,
) -> ProbeResult:
    """Train the two victims of the module docstring on the images of a verified folder.

    ``report`` comes from :func:`unseg.protection.verify.verify_protected` run with the same
    ``masks`` (and class options); images whose protected copy is missing, unreadable, of
    another size or mode, or without a mask are left out. Raises ValueError with fewer than
    three usable images.
    """
    from unseg.data.images import read_image
    from unseg.data.segmentation import DatasetSpec, victim_size
    from unseg.data.sources import folder_source
    from unseg.evaluation.protocol import load_split, pick_stems
    from unseg.evaluation.training import train_victim
    from unseg.devices import resolve_device
    from unseg.evaluation.victims import parse_victim

    masks = Path(masks)
    victim = parse_victim(settings.victim)
    if victim.interactive:
        raise ValueError("the probe trains semantic victims (unet, fpn, ...), not the interactive sam victim")
    usable = [check for check in report.checks if check.region == REGION_MASKS
              and not any(violation.kind in UNUSABLE for violation in check.violations)]
    by_source = {check.source: check for check in usable}
    chosen = pick_stems(sorted(by_source), settings.max_images, settings.seed)
    if len(chosen) < 3:
        raise ValueError(f"the probe needs at least 3 images with masks and a usable protected copy, found {len(chosen)}")
    items = {item.description: item for item in folder_source(report.originals, masks, classes=classes,
                                                               class_names=class_names, ignore_index=ignore_index,
                                                               exclude=[report.protected, masks])}
    order = np.random.default_rng(settings.seed).permutation(len(chosen))
    held = max(1, int(round(settings.holdout * len(chosen))))
    test_names = [chosen[i] for i in sorted(order[:held])]
    train_names = [chosen[i] for i in sorted(order[held:])]

    clean, protected, labels, aspects = {}, {}, {}, []
    for name in chosen:
        original = read_image(report.originals / name)
        clean[name] = original.rgb8()
        protected[name] = read_image(report.protected / by_source[name].output).rgb8()
        prompt = items[name].prompt(original.size)
        labels[name] = (np.zeros(original.size, np.int64) if prompt.mask is None else prompt.mask.astype(np.int64))
        aspects.append(original.size[1] / original.size[0])
    spec = DatasetSpec(name=PROBE_SPEC_NAME, num_classes=2, ignore_index=None, class_names=("rest", "protected region"),
                       objects="foreground", aspect=float(np.median(aspects)), primary_metric="iou")
    size = victim_size(spec, settings.image_height)
    test = load_split([clean[n] for n in test_names], [labels[n] for n in test_names], size)
    schedule = settings.schedule
    device = resolve_device(settings.device)
    started = time.perf_counter()
    scores = {}
    for kind, images in (("clean", clean), ("protected", protected)):
        train = load_split([images[n] for n in train_names], [labels[n] for n in train_names], size)
        result = train_victim(victim, spec, train, test, schedule, device, settings.seed,
                              progress=f"probe {kind}" if progress else None)
        scores[kind] = float(result.final["iou"])
    result = ProbeResult(clean=scores["clean"], protected=scores["protected"], train_images=len(train_names),
                         test_images=len(test_names), size=size, seconds=time.perf_counter() - started,
                         settings=settings)
    result.caveats = probe_caveats(result)
    return result


def probe_caveats(result: ProbeResult) -> list[str]:
    """What limits the reading of a probe's numbers."""
    settings = result.settings
    height, width = result.size
    caveats = [
        f"small CPU run: one {settings.victim} trained from scratch for {settings.schedule.epochs} epochs at {width}x{height} "
        f"px, one seed; a scraper with more data, time or a pretrained model may learn more from the protected copies",
        "task: the protected region vs the rest (binary), scored on the clean held-out images",
    ]
    if result.train_images < MIN_MEANINGFUL_TRAIN:
        caveats.append(f"only {result.train_images} training / {result.test_images} held-out images: both numbers "
                       f"move by chance alone; use ≥ {MIN_MEANINGFUL_TRAIN} images for a drop worth reading")
    if not np.isfinite(result.clean) or result.clean < WEAK_CLEAN_IOU:
        caveats.append(f"the clean-trained victim itself reached only {result.clean:.1f} IoU: it learned too little for "
                       "the drop to mean anything (more images or --probe-epochs)")
    return caveats
