"""Protect-time refinement: part of each pixel's budget moved against a frozen interactive segmenter.

The one-pass generator's noise is a shortcut: semantic victims learn it instead of the content,
but a box-prompted interactive victim (``sam``) trained on it falls back to "fill the box", and
box-fill is a good answer on most objects (``benchmarks/results/noise_structure_probe_kvasir_seg_sam.md``).
What lowered that victim below its box in this project's measurements is *misleading* noise
(Fowl et al., "Adversarial Examples Make Strong Poisons", NeurIPS 2021): a perturbation that
raises the loss of a model that already segments clean images, so that a victim trained on it
learns features that point the wrong way on clean images. Measured on Kvasir-SEG at 128 px (CPU,
one seed; ``benchmarks/results/adversarial_poison_probe.md``, stop 26), with a ``sam`` segmenter
trained on CamVid only: the generator's noise on half of every pixel's budget plus such noise on
the other half took the ``sam`` victim to 0.26 of its clean IoU, below box-fill, while a UNet on
the same images stayed at 2.6 IoU.

:class:`Refiner` does this per image at protection time, after the generator: the image with the
generator's noise on ``1 - share`` of the budget is letterboxed into a work grid, then ``steps``
signed-gradient steps (``step_size`` x the remaining per-pixel bound each) raise the segmenter's
BCE + Dice loss on a box prompt of every object (targets: the object masks; for box prompts without
masks, the segmenter's own prediction), averaged over the views (:data:`VIEWS`) a victim may resize the
image to. The sign of the result is the :class:`~unseg.protection.perturb.Refinement` that
:class:`~unseg.protection.perturb.NativeNoise` mixes in at native size, so the bound stays exact. It
costs ``steps`` forward/backward passes of the segmenter per view and image; it is an option, not the
default.

**Status: experimental.** As a product it has not protected yet: the ``sam`` victim trained on
refined Kvasir-SEG images scored 69.4 (two views; 73.2 letterbox only) against clean 72.6, CamVid
47.4 against 45.3 (``benchmarks/results/evaluate_protection_refined_cpu/``). The resize is not the
cause: the refinement reaches the victim's view about as well as an attack made on it
(``benchmarks/refine_transfer_probe.py``), and the probe's poison works as well on a 4x coarser grid.
The cause is the generator's half: made at the victim size it helps the poison (two seeds), made on
the native image — as this class must — it stops the victim from learning the poison (two seeds;
``benchmarks/results/adversarial_poison_probe.md``, stop 28). With ``share=1`` (no generator noise)
the refinement reached 62.1 through both views, 49.1 — below box-fill — through the victim's own
(square) view alone, and 70.9 / 70.4 on a coarse grid (``grid`` 0.5 / 0.25) through both views.
Since the generator's noise alone protects that victim once it trains 20 epochs (18.8 with the
square fit, 19.8 letterboxed; ``benchmarks/results/evaluate_protection_square_fit_cpu/``), the
refinement is not needed there, and taking half the budget from the generator makes it worse
(38.1 with the square fit and the square view). Kept as an experiment for victims the generator
does not reach (CamVid's ``sam``).

The shipped segmenter (``weights/refiner_surrogate.safetensors``) is the evaluation's ``sam`` victim
trained on CamVid's clean training split (``benchmarks/clean_surrogate.py``, command in
``weights/README.md``): it has seen neither Kvasir-SEG nor any data the generator is judged on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import unseg
from unseg.budget import Budget
from unseg.data.prompts import ImagePrompt
from unseg.data.transforms import INPUT_FITS, InputFit, Letterbox, image_to_model_input
from unseg.devices import resolve_device
from unseg.models import InteractiveSegmenter, PromptBatch, load_model
from unseg.models.losses import bce_dice_loss
from unseg.models.prompts import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, boxes_to_masks
from unseg.protection.perturb import SATURATE_DEAD_ZONE, NativeNoise, Refinement, epsilon_map

DEFAULT_SURROGATE = Path(unseg.__file__).parent / "weights" / "refiner_surrogate.safetensors"


@dataclass(frozen=True)
class RefineSchedule:
    """How much of the budget the refinement takes, where it lives and how it is found.

    Attributes:
        steps: signed-gradient steps per image (each one forward and backward pass of the segmenter
            per view).
        share: fraction of every pixel's budget given to the refinement; the generator's noise keeps
            ``1 - share`` (1: the refinement takes the whole budget and the generator only names the
            objects). 0.5, 10 steps of 0.2: the sample-wise probe's setting (module docstring).
        step_size: each step's size in units of the refinement's per-pixel bound (10 x 0.2 covers
            twice the distance to the bound).
        views: names in :data:`VIEWS` of the resizes the perturbation is made through (mean loss).
        grid: side of the grid the perturbation lives on, in units of the segmenter's input side (at
            most the image's work grid, :attr:`Refiner.IMAGE_GRID`); below 1 it is coarser than any view
            of it and bilinearly upsampled to the image (a poison on a 4x coarser grid still poisoned,
            ``benchmarks/results/adversarial_poison_probe.md``, stop 28).
    """

    steps: int = 10
    share: float = 0.5
    step_size: float = 0.2
    views: tuple[str, ...] = ("letterbox", "square")
    grid: float = 4.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"refinement steps must be at least 1, got {self.steps}")
        if not 0 < self.share <= 1:
            raise ValueError(f"refinement share must be in (0, 1], got {self.share}")
        if self.step_size <= 0:
            raise ValueError(f"refinement step size must be positive, got {self.step_size}")
        if not self.views or len(set(self.views)) != len(self.views) or any(v not in VIEWS for v in self.views):
            raise ValueError(f"refinement views must be distinct names from {', '.join(VIEWS)}, got {self.views}")
        if self.grid <= 0:
            raise ValueError(f"refinement grid must be positive, got {self.grid}")

    def base_budget(self, budget: Budget) -> Budget:
        """The budget the generator's noise keeps: ``1 - share`` of ``budget``."""
        return Budget(budget.epsilon * (1 - self.share), budget.epsilon_bg * (1 - self.share))

    @property
    def tag(self) -> str:
        """The schedule in one line (part of an evaluation method's identity): ``steps x step@share:views``,
        ``:grid G`` when the grid is not the default."""
        grid = "" if self.grid == RefineSchedule.grid else f":grid{self.grid:g}"
        return f"{self.steps}x{self.step_size:g}@{self.share:g}:{'+'.join(self.views)}{grid}"


@dataclass(frozen=True)
class View:
    """One way a victim may see the image: scaled by ``sy`` x ``sx`` into the top-left of a square
    ``size`` input (rest zero). ``letterbox`` keeps the aspect (SAM's resize-longest-side); ``square``
    stretches the image onto the whole square (a fixed-size resize, as many training pipelines do)."""

    height: int
    width: int
    size: int
    sy: float
    sx: float

    @classmethod
    def of(cls, fit: InputFit) -> "View":
        """The view of an image fitted as ``fit`` fits it (:data:`unseg.data.transforms.INPUT_FITS`)."""
        return cls(fit.height, fit.width, fit.size, *fit.scales)

    def content(self, side: int) -> tuple[int, int]:
        """(rows, cols) the image covers in a ``side`` x ``side`` map of this view."""
        ratio = side / self.size
        return (max(1, min(side, round(self.height * self.sy * ratio))),
                max(1, min(side, round(self.width * self.sx * ratio))))

    def place(self, image: torch.Tensor) -> torch.Tensor:
        """``B x C x h x w`` image content -> ``B x C x size x size`` input of this view
        (bilinear, antialiased; differentiable)."""
        rows, cols = self.content(self.size)
        resized = F.interpolate(image, size=(rows, cols), mode="bilinear", align_corners=False, antialias=True)
        return F.pad(resized, (0, self.size - cols, 0, self.size - rows))

    def shrink(self, mask: np.ndarray, side: int) -> torch.Tensor:
        """``1 x 1 x side x side`` share of each cell that ``mask`` (``H x W`` bool) covers (box filter,
        from one byte per native pixel; 0 off the content)."""
        rows, cols = self.content(side)
        small = Image.fromarray(mask.astype(np.uint8) * 255).resize((cols, rows), Image.Resampling.BOX)
        grid = torch.zeros(1, 1, side, side)
        grid[..., :rows, :cols] = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255)
        return grid


VIEWS = INPUT_FITS  # how victims commonly resize an image: the protector's fits (letterbox, square)


@dataclass
class RefineTargets:
    """What the refinement attacks in one view of one image: ``K`` box prompts over the segmenter's
    input and their ``K x 1 x M x M`` target masks at its logit resolution (None: the segmenter's own
    prediction is the target), with the ``1 x 1 x M x M`` content area (padding excluded from the loss)."""

    view: View
    corners: torch.Tensor
    targets: torch.Tensor | None
    valid: torch.Tensor

    def prompts(self) -> PromptBatch:
        """Each box as corner tokens and as its filled mask (as the ``sam`` victim is prompted,
        :class:`unseg.evaluation.interactive.ObjectSamples`)."""
        size, count, device = self.view.size, len(self.corners), self.corners.device
        labels = torch.tensor([[BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]], device=device).repeat(count, 1)
        return PromptBatch(self.corners, labels, masks=boxes_to_masks(self.corners, size, size),
                           has_mask=torch.ones(count, dtype=torch.bool, device=device))


class Refiner:
    """Moves ``schedule.share`` of the budget against a frozen interactive segmenter (module docstring).

    Build with :meth:`load`; a :class:`~unseg.protection.Protector` given one refines every image
    after its generator pass.
    """

    IMAGE_GRID = 4  # the image is attacked on a grid of up to 4 x the segmenter's input side

    def __init__(self, surrogate: InteractiveSegmenter, schedule: RefineSchedule = RefineSchedule(), *,
                 name: str = "", metadata: dict[str, Any] | None = None, device: str | torch.device = "cpu") -> None:
        self.device = resolve_device(device)
        self.surrogate = surrogate.to(self.device).eval().requires_grad_(False)
        self.schedule = schedule
        self.name = name
        self.metadata = metadata or {}

    @classmethod
    def load(cls, path: str | Path = "default", schedule: RefineSchedule = RefineSchedule(),
             device: str | torch.device = "cpu") -> "Refiner":
        """The shipped segmenter ("default") or an unseg ``surrogate`` checkpoint (e.g. one
        ``benchmarks/clean_surrogate.py`` wrote)."""
        source = DEFAULT_SURROGATE if str(path) == "default" else Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"refinement segmenter not found: {source}")
        model, metadata = load_model(source, kind="surrogate")
        return cls(model.float(), schedule, name=str(path), metadata=metadata, device=device)

    @property
    def input_size(self) -> int:
        return self.surrogate.config.sam.img_size

    @property
    def logit_size(self) -> int:
        """Side of the segmenter's mask logits (4 x its embedding grid)."""
        sam = self.surrogate.config.sam
        return 4 * (sam.img_size // sam.patch_size)

    def describe(self) -> dict[str, Any]:
        """Facts for a manifest or a results file."""
        return {"surrogate": self.name, "trained_on": self.metadata.get("trained_on"), "steps": self.schedule.steps,
                "share": self.schedule.share, "step_size": self.schedule.step_size, "views": list(self.schedule.views),
                "grid": self.schedule.grid}

    def views(self, height: int, width: int) -> list[View]:
        """The views the perturbation must work through (``schedule.views``)."""
        return [View.of(VIEWS[name](height, width, self.input_size)) for name in self.schedule.views]

    def refine(self, pixels: np.ndarray, prompt: ImagePrompt, native: NativeNoise, budget: Budget) -> NativeNoise:
        """``native`` (the generator's noise of ``pixels``, ``H x W x C`` integer) with a refinement
        mixed in; unchanged when the prompt names no object (nothing to attack). Objects the
        generator gave no noise (a keyed generator's null code, key 0) get none from the
        refinement either, and are not attacked.

        The image is letterboxed into a work grid (up to :attr:`IMAGE_GRID` x the segmenter's input, at
        most the native size); the perturbation lives on a grid of ``schedule.grid`` x the input (at
        most the work grid) and is optimised through every view of ``schedule.views`` at once (the
        mean loss): a victim resizes the protected image its own way,
        and a perturbation made on one grid alone does not survive another (a letterbox-only one
        moved a squash-resizing victim's view by < 1 %, ``benchmarks/results/evaluate_protection_refined_cpu/``).
        """
        height, width = native.box.height, native.box.width
        silent = [not bool(grid.any()) for _, grid in native.objects]  # objects the generator left alone (keyed 0)
        goals = [goal for view in self.views(height, width)
                 if (goal := self.targets(prompt, native.region, view, skip=silent)) is not None]
        if not goals:  # nothing visible to attack in any view
            return native
        box = Letterbox(height, width, min(max(height, width), self.IMAGE_GRID * self.input_size))
        cells = Letterbox(height, width, min(box.size, max(1, round(self.schedule.grid * self.input_size))))
        on_cells = View.of(cells)
        base, _ = native.protect(pixels, self.schedule.base_budget(budget))
        image = image_to_model_input(box, base, self.device)
        limit = self.schedule.share * epsilon_map(on_cells.shrink(native.region, cells.size).to(self.device), budget)
        untouched = (np.logical_or.reduce([mask for (mask, _), quiet in zip(native.objects, silent) if quiet])
                     if any(silent) else None)
        if untouched is not None:
            limit = limit * (on_cells.shrink(untouched, cells.size).to(self.device) == 0)
        delta = self._attack(image, box, cells, limit, goals)
        grid = torch.where(delta.abs() <= SATURATE_DEAD_ZONE * limit, 0.0, torch.sign(delta))[0]
        return replace(native, refinement=Refinement(grid, cells, self.schedule.share, untouched))

    def targets(self, prompt: ImagePrompt, region: np.ndarray, view: View,
                skip: list[bool] | None = None) -> RefineTargets | None:
        """Box prompts and targets of the objects to attack in ``view``: each object mask (but those
        ``skip`` marks; or the mask; for a points-only prompt, the protected region) with its tight
        box; box prompts without masks with no target (the segmenter's own prediction is used).
        None when there is none."""
        side = self.logit_size
        rows, cols = view.content(side)
        valid = torch.zeros(1, 1, side, side, device=self.device)
        valid[..., :rows, :cols] = 1
        scale = np.array([view.sx, view.sy], dtype=np.float32)
        masks = prompt.objects or ([prompt.mask] if prompt.mask is not None else None)
        if prompt.objects and skip:
            masks = [mask for mask, skipped in zip(prompt.objects, skip) if not skipped]
        if masks is None and prompt.boxes is not None:
            corners = torch.from_numpy(prompt.boxes.reshape(-1, 2, 2).astype(np.float32) * scale)
            return RefineTargets(view, corners.to(self.device), None, valid)
        if masks is None:
            masks = [region] if region.any() else []
        corners, targets = [], []
        for mask in masks:
            target = view.shrink(mask, side) > 0.5
            if not target.any():
                continue  # too small to see at the segmenter's resolution
            ys, xs = np.nonzero(mask)
            corners.append(torch.from_numpy(np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]],
                                                     dtype=np.float32) * scale))
            targets.append(target[0].float())
        if not corners:
            return None
        return RefineTargets(view, torch.stack(corners).to(self.device), torch.stack(targets).to(self.device), valid)

    @torch.enable_grad()
    def _attack(self, image: torch.Tensor, box: Letterbox, cells: Letterbox, limit: torch.Tensor,
                goals: list[RefineTargets]) -> torch.Tensor:
        """``1 x 3 x S x S`` perturbation over the ``cells`` grid (``S = cells.size``) within ``limit``
        (``1 x 1 x S x S``), bilinearly upsampled onto the ``1 x 3 x N x N`` work-grid ``image``
        (``box``: the picture's rows and columns in it), that raises the segmenter's mean loss over
        ``goals`` (one per view): ``steps`` signed-gradient steps from zero (gradients on even when the
        caller runs under ``torch.no_grad``). On the image's own grid ``image + δ`` also stays in [0, 1]."""
        rows, cols = box.resized
        fine = cells.size == box.size
        cell_rows, cell_cols = cells.resized

        def lift(delta: torch.Tensor) -> torch.Tensor:
            """The cells' perturbation on the image's grid."""
            if fine:
                return delta
            up = F.interpolate(delta[..., :cell_rows, :cell_cols], size=(rows, cols), mode="bilinear",
                               align_corners=False)
            return F.pad(up, (0, box.size - cols, 0, box.size - rows))

        def losses(x: torch.Tensor, goal: RefineTargets, targets: torch.Tensor | None) -> torch.Tensor:
            embedding, _ = self.surrogate.embed_images(goal.view.place(x[..., :rows, :cols]))
            count = len(goal.corners)
            logits = self.surrogate.decode_masks(embedding.expand(count, -1, -1, -1), goal.prompts()).masks.float()
            if targets is None:
                return logits
            return bce_dice_loss(logits, targets, goal.valid.expand(count, -1, -1, -1))

        with torch.no_grad():  # box prompts without masks: the segmenter's own prediction is the target
            targets = [goal.targets if goal.targets is not None else (losses(image, goal, None) > 0).float()
                       for goal in goals]
        delta = torch.zeros(1, image.shape[1], cells.size, cells.size, device=image.device)
        for _ in range(self.schedule.steps):
            delta.requires_grad_(True)
            x = (image + lift(delta)).clamp(0, 1)
            loss = sum(losses(x, goal, target) for goal, target in zip(goals, targets)) / len(goals)
            (gradient,) = torch.autograd.grad(loss, delta)
            delta = delta.detach() + self.schedule.step_size * limit * gradient.sign()
            delta = torch.maximum(torch.minimum(delta, limit), -limit)
            if fine:
                delta = (image + delta).clamp(0, 1) - image
        return delta.detach()

