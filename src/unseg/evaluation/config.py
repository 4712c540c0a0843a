"""Typed configuration of an evaluation run and the named presets (``quick``, ``benchmark``, ``gpu``,
``gpu_full``)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from unseg.baselines.error_minimizing import MinMinSchedule
from unseg.budget import DEFAULT_BUDGET, Budget
from unseg.data.segmentation import VICTIM_FITS
from unseg.evaluation.defences import parse_defence
from unseg.evaluation.methods import MethodOptions, check_method
from unseg.evaluation.training import TrainSchedule
from unseg.evaluation.victims import parse_victim

# The grid's axes: runs that differ only in these hold different cells of one grid.
AXIS_FIELDS = ("datasets", "victims", "methods", "defences")
# How a run shows itself, not what it computes.
DISPLAY_FIELDS = ("progress",)
# Fields that may change between a run and its resumption (they add or remove cells, or move the
# run to another device); any other change makes finished cells incomparable, so resuming then is refused.
GRID_FIELDS = AXIS_FIELDS + ("device",) + DISPLAY_FIELDS
DATA_ENV = "UNSEG_DATA"  # environment variable naming the default data root
DEFAULT_DATA_ROOT = "../shared/data"  # relative to the working directory, when DATA_ENV is unset


def default_data_root() -> str:
    """The data root when none is given: ``$UNSEG_DATA`` if set, else ``../shared/data``."""
    return os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT


@dataclass(frozen=True)
class EvaluationConfig:
    """Everything that defines an evaluation run (recorded verbatim in results.json).

    Attributes:
        data_root: folder holding one sub-folder per dataset (default :func:`default_data_root`).
        datasets, victims, methods, defences: the grid (see ``unseg evaluate --help`` for names).
        epochs, batch_size, lr, amp, channels_last: victim schedule (same for every cell).
        image_height: victim training height in px (multiple of 32); width from the set's aspect.
        victim_fit: how victims bring each image to that size, ``stretch`` or ``letterbox``
            (:data:`unseg.data.segmentation.VICTIM_FITS`; stretch for every run before stop 31).
        train_images / test_images: use at most this many images of the split (seeded pick; None = all).
        train_fraction: use this fraction of the training split (applied before ``train_images``).
        budget: the protection budget (ε, ε_bg in levels per 255).
        generator: what the plain ``unseg`` method loads ("default", a preset or a checkpoint).
        em_rounds, em_height: error-minimising baseline schedule (rounds; working height, aspect kept).
        max_objects: interactive victim, objects per image.
        seed, device, progress: run settings.
    """

    data_root: str = field(default_factory=default_data_root)
    datasets: tuple[str, ...] = ("camvid", "kvasir_seg")
    victims: tuple[str, ...] = ("unet", "fpn", "deeplabv3plus")
    methods: tuple[str, ...] = ("clean", "unseg", "random", "synper", "ar", "cuda", "em")
    defences: tuple[str, ...] = ("none",)
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    amp: bool = False
    channels_last: bool = False
    image_height: int = 128
    victim_fit: str = "stretch"
    train_images: int | None = None
    train_fraction: float = 1.0
    test_images: int | None = None
    budget: Budget = DEFAULT_BUDGET
    generator: str = "default"
    em_rounds: int = 10
    em_height: int = 96
    max_objects: int = 3
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        for victim in self.victims:
            parse_victim(victim)
        for method in self.methods:
            check_method(method, need_file=False)  # the files: check_files, so that a finished run still reports
        for defence in self.defences:
            parse_defence(defence)
        if self.victim_fit not in VICTIM_FITS:
            raise ValueError(f"victim_fit must be one of {VICTIM_FITS}, got {self.victim_fit!r}")
        if self.image_height % 32:
            raise ValueError(f"image_height must be a multiple of 32, got {self.image_height}")
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.epochs < 1:
            raise ValueError("epochs must be at least 1")

    def check_files(self) -> None:
        """Raise ValueError for an ``unseg:PATH`` method whose checkpoint is missing. Run before any work
        (:class:`unseg.evaluation.protocol.ResultsStore` does), not on construction: a finished run's results.json
        is read back to report or merge it on machines where its generator files are gone."""
        for method in self.methods:
            check_method(method)

    def schedule(self, augment: bool = False, adversarial_epsilon: float = 0.0) -> TrainSchedule:
        """The victim schedule, with a defence's training-time switches."""
        return TrainSchedule(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, augment=augment,
                             adversarial_epsilon=adversarial_epsilon, amp=self.amp, max_objects=self.max_objects,
                             channels_last=self.channels_last)

    def method_options(self, aspect: float) -> MethodOptions:
        """Protection settings (the EM working size follows the dataset's aspect)."""
        width = max(32, int(round(self.em_height * aspect / 32)) * 32)
        em = MinMinSchedule(work_size=(self.em_height, width), rounds=self.em_rounds)
        return MethodOptions(budget=self.budget, seed=self.seed, device=self.device, generator=self.generator,
                             em_schedule=em)

    def train_limit(self, available: int) -> int:
        """How many training images a run uses out of ``available``."""
        limit = max(1, int(round(self.train_fraction * available)))
        return min(limit, self.train_images) if self.train_images is not None else limit

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EvaluationConfig":
        """Inverse of :meth:`to_dict` (lists become tuples). A results.json written before the
        budget was one value holds ``epsilon`` / ``epsilon_bg`` fractions instead of ``budget``."""
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        if "epsilon" in values:
            values["budget"] = Budget.from_fractions(values.pop("epsilon"), values.pop("epsilon_bg"))
        elif isinstance(values.get("budget"), dict):
            values["budget"] = Budget(**values["budget"])
        return cls(**values)

    def fingerprint(self) -> str:
        """JSON of the fields that must not change when resuming."""
        return json.dumps({k: v for k, v in self.to_dict().items() if k not in GRID_FIELDS}, sort_keys=True)

    def replace(self, **changes) -> "EvaluationConfig":
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, dict] = {
    # Demo / smoke test: a few minutes on 2 CPU cores.
    "quick": dict(
        datasets=("camvid",), victims=("unet",), methods=("clean", "unseg", "random", "synper"), defences=("none",),
        epochs=2, image_height=64, train_images=16, test_images=12, amp=True, em_rounds=2, em_height=64,
    ),
    # The CPU benchmark (sized for ~30-40 min on 2 cores; see benchmarks/evaluate_protection.py).
    "benchmark": dict(
        datasets=("camvid", "kvasir_seg"), victims=("unet", "fpn", "deeplabv3plus"),
        methods=("clean", "unseg", "random", "synper", "ar", "cuda", "em"), defences=("none",),
        epochs=8, image_height=96, train_images=96, test_images=64, amp=True, em_rounds=6, em_height=96,
    ),
    # Issue 9's grid with victims as strong as 2 CPU cores allow (about 7 hours for all 40 cells): full training
    # and test splits, 128 px, 8 epochs (clean CamVid UNet 35 mIoU, Kvasir UNet 45 IoU at 5 epochs),
    # the hand-made pattern beside UnSeg (benchmarks/results/evaluate_protection_strong_cpu/: what
    # was run, per dataset, and how long it took), and UnSeg with its protect-time refinement
    # (benchmarks/results/evaluate_protection_refined_cpu/).
    "strong_cpu": dict(
        datasets=("camvid", "kvasir_seg"), victims=("unet", "deeplabv3plus", "fpn", "sam"),
        methods=("clean", "unseg", "unseg_refined", "pattern", "synper", "random"), defences=("none",),
        epochs=8, image_height=128, batch_size=8, amp=True,
    ),
    # The main grid on one H100/H200-class GPU, sized for about 8 minutes: full splits at 256 px,
    # 16 cells. Sized from one measured cell (UNet, 880 Kvasir images at 256 px, 30 epochs: ~45 s
    # on an H200 in fp32, issue 10); to be confirmed by benchmarks/gpu_check.sh on a GPU.
    "gpu": dict(
        datasets=("camvid", "kvasir_seg"), victims=("unet", "deeplabv3plus"),
        methods=("clean", "unseg", "pattern", "random"), defences=("none",),
        epochs=24, image_height=256, batch_size=16, amp=True, channels_last=True, device="cuda",
    ),
    # The full grid on a GPU (hours): every victim, baseline and defence, larger images, longer schedule.
    "gpu_full": dict(
        datasets=("camvid", "kvasir_seg"), victims=("unet", "unetplusplus", "fpn", "deeplabv3plus", "sam"),
        methods=("clean", "unseg", "unseg_refined", "pattern", "random", "sign", "synper", "ar", "cuda", "em"),
        defences=("none", "jpeg75", "blur1", "bits3", "gray", "augment", "advtrain", "mix20", "mix60"),
        epochs=60, image_height=288, batch_size=16, amp=True, channels_last=True, em_rounds=20, em_height=192,
        device="cuda",
    ),
}


def preset_config(name: str, **overrides) -> EvaluationConfig:
    """A preset with overrides (None values are ignored)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    return EvaluationConfig(**values)
