"""Bilevel min-min for a *keyed* generator, on whole scenes (beyond the paper; see README).

Every labelled object of a scene (each class region) is decoded with its own mask prompt and its
class id as key, so each gets the noise code of its key (key 0: the null code, no noise); the
object noises go through the protection path (:mod:`unseg.protection.perturb`: mapped to the input
size, saturated per object as protection does it — sign after removing the object's channel means,
straight-through: sign forward, identity backward) and are composed into one map.

Surrogate step:  min_θc  CE(f_c(x + δ.detach()), code(y))
Generator step:  min_θg  CE(f_c(x + δ_g(x, y)), code(y))  (f_c frozen, batch statistics)
                 + w · L(generator mask logits, object masks)

f_c is a multi-class smp segmenter (``model.semantic_surrogate``, random init, no prompt) that
reads x + δ resized to ``model.semantic_size`` (randomly shrunk, ``data.surrogate_rescale_min``)
and predicts each pixel's *code* — not the dataset's class — so what it learns is the noise, and
the codes stay meaningful on any other dataset. Every ``schedule.surrogate_reset_every`` rounds
f_c starts again from a fresh initialisation: the codes must be what a *young* network picks up
first (victims train from scratch), not only what a converged surrogate can read.
Single process only (the generator runs outside any DDP wrapper). As in
:class:`~unseg.training.bilevel.BilevelTrainer`, a step's losses stay 0-d device tensors, and a
batch's objects and code map are made from its CPU labels, so a step has no host sync.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unseg.data.scenes import IGNORE
from unseg.models import PromptBatch
from unseg.models.config import code_index
from unseg.protection import perturb as noise_to_pixels
from unseg.training.bilevel import (
    BilevelTrainer,
    frozen,
    input_noise,
    rescale_through,
    resize_images,
    saturated,
    semantic_network,
    step_generator,
)
from unseg.models.losses import bce_dice_loss

Batch = dict[str, torch.Tensor]


def scene_objects(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every labelled class region of a ``B x S x S`` label batch: ``(rows, keys, masks)`` with
    ``K`` image indices, ``K`` class ids and ``K x 1 x S x S`` float masks (IGNORE is no object)."""
    rows, keys, masks = [], [], []
    for row, image_labels in enumerate(labels):
        for key in torch.unique(image_labels).tolist():
            if key == IGNORE:
                continue
            rows.append(row)
            keys.append(key)
            masks.append((image_labels == key).float())
    if not rows:
        raise ValueError("a training batch has no labelled pixel")
    return torch.tensor(rows), torch.tensor(keys), torch.stack(masks)[:, None]


def mask_prompts(masks: torch.Tensor) -> PromptBatch:
    """Mask-only prompts (no points or boxes) for ``K x 1 x S x S`` masks."""
    count = masks.shape[0]
    return PromptBatch(coords=torch.zeros(count, 0, 2, device=masks.device),
                       labels=torch.zeros(count, 0, dtype=torch.long, device=masks.device),
                       masks=masks, has_mask=torch.ones(count, dtype=torch.bool, device=masks.device))


def code_labels(labels: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Per-pixel code index of ``labels`` (class ids; IGNORE stays IGNORE)."""
    table = {key: code_index(key, num_codes) for key in torch.unique(labels).tolist() if key != IGNORE}
    out = torch.full_like(labels, IGNORE)
    for key, code in table.items():
        out[labels == key] = code
    return out


@dataclass
class SceneBatch:
    """A scene batch on the device: ``B x 3 x S x S`` images, ``B x 1 x S x S`` valid (non-padding)
    area, its ``K`` objects (``rows``: image index, ``codes``: code index of the object's key,
    ``masks``: ``K x 1 x S x S`` float) and the ``B x S x S`` per-pixel code map (IGNORE on void)."""

    images: torch.Tensor
    valid: torch.Tensor
    rows: torch.Tensor
    codes: torch.Tensor
    masks: torch.Tensor
    target: torch.Tensor


class KeyedTrainer(BilevelTrainer):
    """Min-min of a keyed generator against a multi-class semantic surrogate on whole scenes.

    Shares the optimisers, learning-rate schedule, mixed precision and checkpoint layout of
    :class:`BilevelTrainer` (the interactive surrogate is kept in the checkpoint but not trained:
    ``surrogate`` is a placeholder there); ``semantic`` is required and has ``num_codes`` outputs.
    """

    def __init__(self, generator: nn.Module, surrogate: nn.Module, config, device: torch.device, rank: int = 0,
                 semantic: nn.Module | None = None) -> None:
        if semantic is None:
            raise ValueError("keyed training needs model.semantic_surrogate (the multi-class code reader)")
        super().__init__(generator, surrogate, config, device, rank, semantic)
        self.num_codes = self.generator_module.config.num_codes
        codes = [self.generator_module.noise_codes]
        rest = [p for p in self.generator_module.parameters() if p.requires_grad and p is not codes[0]]
        opt = config.optimiser
        self.generator_optimiser = torch.optim.Adam(
            [{"params": rest, "lr": opt.generator_lr}, {"params": codes, "lr": opt.code_lr}],
            weight_decay=opt.weight_decay)

    def set_learning_rates(self, factor: float) -> None:
        super().set_learning_rates(factor)
        self.generator_optimiser.param_groups[1]["lr"] = self.config.optimiser.code_lr * factor

    def reset_semantic(self, round_index: int) -> None:
        """A fresh semantic surrogate (seeded by the round) and a fresh optimiser for it."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.runtime.seed * 100003 + round_index)
            fresh = semantic_network(self.config, self.device, classes=self.num_codes)
        self.semantic_module.load_state_dict(fresh.state_dict())
        self.semantic_optimiser = torch.optim.Adam(self.semantic_module.parameters(), lr=self.config.optimiser.surrogate_lr,
                                                   weight_decay=self.config.optimiser.weight_decay)

    # --- noise -------------------------------------------------------------------------------
    def scene_batch(self, batch: Batch) -> SceneBatch:
        """The batch on the device, its objects and code map made from the CPU labels first."""
        labels = batch["labels"].cpu()
        rows, keys, masks = scene_objects(labels)
        codes = torch.tensor([code_index(k, self.num_codes) for k in keys.tolist()], dtype=torch.long)
        images, valid = (batch[k].to(self.device, non_blocking=True) for k in ("image", "valid"))
        return SceneBatch(images, valid, rows.to(self.device), codes.to(self.device), masks.to(self.device),
                          code_labels(labels, self.num_codes).to(self.device))

    def scene_noise(self, scene: SceneBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(x + δ clamped to [0, 1], generator mask logits of the objects).

        δ: each object's saturated noise at ε on its pixels, composed; on void pixels the noise of
        the union prompt without a code at ε_bg (as protection treats the background); nothing on
        padding."""
        images, masks, rows = scene.images, scene.masks, scene.rows
        size = images.shape[-1]
        straight_through = torch.is_grad_enabled()
        features = self.generator_module.encode(images)
        out = self.generator_module.decode(features.select(rows), mask_prompts(masks), scene.codes)
        noise = saturated(input_noise(out.noise.float(), size), masks, straight_through,
                          flat_region=self.generator_module.config.flat_codes)
        composed = torch.zeros_like(images).index_add_(0, rows, noise * masks)
        # background (void): the union prompt's noise without a code, at ε_bg, as protection makes it
        union = torch.zeros(images.shape[0], 1, size, size, device=self.device).index_add_(0, rows, masks).clamp(max=1)
        back = self.generator_module.decode(features, mask_prompts(union)).noise.float()
        back = saturated(input_noise(back, size), 1 - union, straight_through)
        delta = noise_to_pixels.scale_noise(composed + back * (1 - union), union, self.config.epsilon.train_budget)
        return (images + delta * scene.valid).clamp(0, 1), out.mask_logits

    def semantic_input(self, images: torch.Tensor, step: int) -> torch.Tensor:
        """x + δ at the semantic surrogate's size, randomly shrunk (``data.surrogate_rescale_min``)."""
        images = resize_images(images, self.config.model.semantic_size)
        low = self.config.data.surrogate_rescale_min
        if low >= 1:
            return images
        rng = step_generator(self.config.runtime.seed, step, self.rank, stream=2)
        return rescale_through(images, low + (1 - low) * torch.rand((), generator=rng).item())

    def code_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``B x codes x s x s`` logits against the code map (nearest-resized)."""
        target = F.interpolate(target[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()
        return F.cross_entropy(logits.float(), target, ignore_index=IGNORE)

    # --- the two phases ----------------------------------------------------------------------
    def surrogate_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """One update of the semantic surrogate on x + δ.detach() against the code map; returns the
        loss as a 0-d tensor on the device."""
        scene = self.scene_batch(batch)
        with torch.no_grad(), self.autocast():
            adv, _ = self.scene_noise(scene)
        self.semantic.train()
        with self.autocast():
            loss = self.code_loss(self.semantic_logits(self.semantic, self.semantic_input(adv.float(), step)),
                                  scene.target)
        self._optimise(loss, self.semantic_optimiser, self.semantic)
        return {"semantic_loss": loss.detach()}

    def generator_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """One generator update through the frozen semantic surrogate (batch statistics); returns the
        losses as 0-d tensors on the device."""
        scene = self.scene_batch(batch)
        semantic = self.semantic_module
        with frozen(semantic):
            self.generator.train()
            semantic.train()
            with self.autocast():
                adv, mask_logits = self.scene_noise(scene)
                loss = self.code_loss(self.semantic_logits(semantic, self.semantic_input(adv, step)), scene.target)
                total = self.config.loss.semantic_weight * loss
                mask_loss = torch.zeros((), device=self.device)
                if self.train_generator_mask:
                    mask_loss = bce_dice_loss(mask_logits, scene.masks, torch.ones_like(scene.masks))
                    total = total + self.config.loss.generator_mask_weight * mask_loss
            self._optimise(total, self.generator_optimiser, self.generator)
        return {"generator_semantic_loss": loss.detach(), "generator_mask_loss": mask_loss.detach()}

    # --- measurement -------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, batches: list[Batch]) -> dict[str, float]:
        """Pixel accuracy of the current semantic surrogate's code predictions on protected vs clean
        validation scenes (a surrogate that learned the codes is right on protected, wrong on clean)."""
        semantic = self.semantic_module
        semantic.eval()
        hits = {"protected": [0, 0], "clean": [0, 0]}
        for batch in batches:
            scene = self.scene_batch(batch)
            with self.autocast():
                adv, _ = self.scene_noise(scene)
            target = scene.target
            keep = target != IGNORE
            for name, source in (("protected", adv.float()), ("clean", scene.images)):
                with self.autocast():
                    logits = self.semantic_logits(semantic, source).float()
                logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
                hits[name][0] += int((logits.argmax(1)[keep] == target[keep]).sum())
                hits[name][1] += int(keep.sum())
        semantic.train()
        return {f"code_accuracy_{name}": hit / max(total, 1) for name, (hit, total) in hits.items()}
