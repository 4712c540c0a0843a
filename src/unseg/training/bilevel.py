"""Bilevel min-min optimisation of the generator against a surrogate (UnSeg, arXiv:2410.09909).

Surrogate step:  min_θs  L(f_s(x + δ.detach(), p_s), y)   [+ min_θc  L(f_c(x + δ.detach()), y)]
Generator step:  min_θg  L(f_s(x + δ_g(x, p_g), p_s), target)   (surrogates frozen)
                 [+ w_c · L(f_c(x + δ_g(x, p_g)), target)]
                 + w · L(generator mask logits, y)                (keeps its promptable mask usable)

With ``loss.objective = "adversarial"`` (an amortised adversarial poison, Fowl et al. 2021 /
GAP, Poursaeed et al. 2018) both phases change sign and input:

Surrogate step:  min_θs  L(f_s(x, p_s), y)   [+ min_θc  L(f_c(x), y)]        (clean images)
Generator step:  min_θg  −L(f_s(x + δ_g(x, p_g), p_s), y)  [− w_c · L(f_c(x + δ_g), y)]  + w · mask loss

f_c is the optional semantic surrogate (``model.semantic_surrogate``): a convolutional segmenter
with no prompt that sees x + δ resized to ``model.semantic_size``.

with δ = scale_noise(resize(noise), y, ε_train, ε_bg_train) on the valid (non-padding) area,
x + δ clamped to [0, 1], resized to the surrogate input and (``data.surrogate_rescale_min`` < 1)
shrunk by a random factor and resized back, so only noise that survives downscaling helps. A share
of surrogate samples (``prompts.surrogate_unprompted``) gets no prompt p_s at all. All randomness
of a step (prompt types, points, box jitter, noisy masks, rescale factor) comes from generators
seeded by (seed, step, rank), so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unseg.budget import Budget
from unseg.data.transforms import Letterbox
from unseg.devices import mixed_precision
from unseg.models import NoiseGenerator, PromptBatch
from unseg.models.semantic import build_named
from unseg.protection import perturb as noise_to_pixels
from unseg.training.config import TrainConfig
from unseg.models.losses import bce_dice_loss, mask_iou
from unseg.training.prompts import (
    generator_prompt_types,
    prompt_batch,
    rescale_prompts,
    surrogate_prompts,
)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
Batch = dict[str, torch.Tensor]


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") else model


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    """CPU random generator determined by (seed, step, rank, stream) only."""
    state = np.random.SeedSequence([seed, step, rank, stream]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


@dataclass
class StepPrompts:
    """Prompts of one step: generator prompts (input size S) and surrogate prompts (surrogate size)."""

    generator: PromptBatch
    surrogate: PromptBatch


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square images to side ``size`` (bilinear, antialiased when shrinking)."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def rescale_through(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Shrink square images by ``factor`` (antialiased) and resize them back: the detail a victim
    that trains on downscaled images still sees."""
    size = images.shape[-1]
    small = max(8, int(round(size * factor)))
    if small >= size:
        return images
    return F.interpolate(resize_images(images, small), size=(size, size), mode="bilinear", align_corners=False)


def input_noise(noise: torch.Tensor, size: int) -> torch.Tensor:
    """``B x 3 x N x N`` generator noise at the square input's side ``size``, mapped as protection
    maps it (:func:`unseg.protection.perturb.map_to_native` of an unpadded square letterbox)."""
    if noise.shape[-1] == size:
        return noise
    return noise_to_pixels.map_to_native(noise, Letterbox(size, size, size))


def saturated(noise: torch.Tensor, masks: torch.Tensor, straight_through: bool = False,
              flat_region: bool = False) -> torch.Tensor:
    """``B x 3 x S x S`` noise through :func:`unseg.protection.perturb.saturate`, as protection applies
    it (per image: channel means on / off ``masks > 0.5`` removed, then the sign);
    ``straight_through``: with the identity gradient, for generator steps; ``flat_region``: keep
    the means on the masks (a generator with flat codes, as ``NativeNoise.flat_objects``)."""
    channels_last = noise.permute(0, 2, 3, 1)
    region = masks[:, 0] > 0.5
    means = None
    if flat_region:
        sums = noise_to_pixels.segment_channel_sums(channels_last.detach(), region)
        means = noise_to_pixels.off_region_means(noise_to_pixels.segment_channel_means(*sums))
    return noise_to_pixels.saturate(channels_last, region, means, straight_through=straight_through).permute(0, 3, 1, 2)


def perturb(generator: nn.Module, images: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor,
            prompts: PromptBatch, budget: Budget, saturate: bool = False):
    """(x + δ clamped to [0, 1], generator output) with δ bounded by ε on ``masks``, ε_bg elsewhere.

    The noise goes through the protection path (:mod:`unseg.protection.perturb`): mapped from the
    generator's noise map to the input size (``map_to_native`` of the square input) and, with
    ``saturate``, saturated as protection saturates it (straight-through gradient when the
    generator is being trained, see ``epsilon.saturate``)."""
    output = generator(images, prompts)
    noise = input_noise(output.noise.float(), images.shape[-1])
    if saturate:
        noise = saturated(noise, masks, straight_through=torch.is_grad_enabled())
    delta = noise_to_pixels.scale_noise(noise, masks, budget) * valid
    return (images + delta).clamp(0, 1), output


def semantic_network(config: TrainConfig, device: torch.device, classes: int = 1) -> torch.nn.Module:
    """A freshly initialised semantic surrogate (``model.semantic_surrogate``) on ``device``, in
    channels-last layout with ``runtime.channels_last``; ``classes`` outputs (1: the object; a
    keyed generator's code reader: one per code)."""
    network = build_named(config.model.semantic_surrogate, classes=classes).to(device)
    return network.to(memory_format=torch.channels_last) if config.runtime.channels_last else network


@contextlib.contextmanager
def frozen(*models: nn.Module):
    """No parameter gradients and unchanged buffers (batch-norm statistics) inside the block."""
    buffers = [{name: value.clone() for name, value in model.named_buffers()} for model in models]
    for model in models:
        model.requires_grad_(False)
    try:
        yield
    finally:
        for model, saved in zip(models, buffers):
            model.requires_grad_(True)
            with torch.no_grad():
                for name, value in model.named_buffers():
                    value.copy_(saved[name])


class BilevelTrainer:
    """Holds both networks, their Adam optimisers and the loss; runs one step of either phase.

    ``generator`` / ``surrogate`` may be DDP-wrapped: the network being trained runs through
    its wrapper (gradients are averaged across processes), the other one through the plain module.
    """

    def __init__(self, generator: nn.Module, surrogate: nn.Module, config: TrainConfig,
                 device: torch.device, rank: int = 0, semantic: nn.Module | None = None) -> None:
        self.generator = generator
        self.surrogate = surrogate
        self.semantic = semantic
        self.config = config
        self.device = device
        self.rank = rank
        opt = config.optimiser
        trainable = [p for p in unwrap(generator).parameters() if p.requires_grad]
        self.generator_optimiser = torch.optim.Adam(trainable, lr=opt.generator_lr, weight_decay=opt.weight_decay)
        self.surrogate_optimiser = torch.optim.Adam(unwrap(surrogate).parameters(), lr=opt.surrogate_lr,
                                                    weight_decay=opt.weight_decay)
        self.semantic_optimiser = None
        if semantic is not None:
            self.semantic_optimiser = torch.optim.Adam(unwrap(semantic).parameters(), lr=opt.surrogate_lr,
                                                       weight_decay=opt.weight_decay)
        self.amp_dtype = AMP_DTYPES.get(config.runtime.amp)
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.runtime.amp == "fp16")
        self.sampling = config.prompts
        sam_params = unwrap(generator).sam_parameters()
        self.train_generator_mask = config.loss.generator_mask_weight > 0 and any(p.requires_grad for p in sam_params)

    # --- helpers ----------------------------------------------------------------------------
    @property
    def generator_module(self) -> NoiseGenerator:
        return unwrap(self.generator)

    @property
    def surrogate_module(self) -> nn.Module:
        return unwrap(self.surrogate)

    @property
    def semantic_module(self) -> nn.Module | None:
        return None if self.semantic is None else unwrap(self.semantic)

    @property
    def surrogate_size(self) -> int:
        return self.surrogate_module.config.sam.img_size

    def autocast(self):
        """Mixed-precision context for forward passes (no-op when amp is "none")."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return mixed_precision(self.device, dtype=self.amp_dtype)

    def sample_prompts(self, masks: torch.Tensor, rng: torch.Generator) -> StepPrompts:
        """Generator prompts (random non-empty subset) and surrogate prompts (one type or none,
        :func:`unseg.training.prompts.surrogate_prompts`), from CPU masks."""
        batch = masks.shape[0]
        size = masks.shape[-1]
        gen = prompt_batch(masks, generator_prompt_types(batch, rng), self.sampling, rng)
        sur = rescale_prompts(surrogate_prompts(masks, self.sampling, rng), size, self.surrogate_size)
        return StepPrompts(gen.to(self.device), sur.to(self.device))

    def measurement_prompts(self, masks: torch.Tensor, rng: torch.Generator) -> StepPrompts:
        """Prompts for measuring protection, from CPU masks: the generator gets box + points + mask
        (all information, as when protecting), the surrogate one type per object (random, or the
        box with ``prompts.surrogate_prompt = "box"``)."""
        every = torch.ones(masks.shape[0], 3, dtype=torch.bool)
        gen = prompt_batch(masks, every, self.sampling, rng)
        sur = surrogate_prompts(masks, replace(self.sampling, surrogate_unprompted=0.0), rng)
        sur = rescale_prompts(sur, masks.shape[-1], self.surrogate_size)
        return StepPrompts(gen.to(self.device), sur.to(self.device))

    def surrogate_input(self, images: torch.Tensor, step: int) -> torch.Tensor:
        """Images at the surrogate's size, randomly rescaled (``data.surrogate_rescale_min``);
        the factor depends on (seed, step, rank) only."""
        images = resize_images(images, self.surrogate_size)
        low = self.config.data.surrogate_rescale_min
        if low >= 1:
            return images
        rng = step_generator(self.config.runtime.seed, step, self.rank, stream=2)
        factor = low + (1 - low) * torch.rand((), generator=rng).item()
        return rescale_through(images, factor)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        weights = self.config.loss
        return bce_dice_loss(logits, target, valid, weights.bce_weight, weights.dice_weight)

    def _optimise(self, loss: torch.Tensor, optimiser: torch.optim.Optimizer, model: nn.Module) -> None:
        optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimiser)
        if self.config.optimiser.grad_clip > 0:
            params = [p for p in unwrap(model).parameters() if p.requires_grad]
            torch.nn.utils.clip_grad_norm_(params, self.config.optimiser.grad_clip)
        self.scaler.step(optimiser)
        self.scaler.update()

    def _to_device(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(batch[k].to(self.device, non_blocking=True) for k in ("image", "mask", "valid"))

    def semantic_logits(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Object logits of the semantic surrogate on images resized to ``model.semantic_size``
        (channels-last with ``runtime.channels_last``)."""
        images = resize_images(images, self.config.model.semantic_size)
        if self.config.runtime.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return model(images)

    def set_learning_rates(self, factor: float) -> None:
        """Learning rates = configured rates x ``factor`` (step decay is a pure function of the round)."""
        optimisers = [(self.generator_optimiser, self.config.optimiser.generator_lr),
                      (self.surrogate_optimiser, self.config.optimiser.surrogate_lr)]
        if self.semantic_optimiser is not None:
            optimisers.append((self.semantic_optimiser, self.config.optimiser.surrogate_lr))
        for optimiser, base in optimisers:
            for group in optimiser.param_groups:
                group["lr"] = base * factor

    # --- the two phases ---------------------------------------------------------------------
    @property
    def adversarial(self) -> bool:
        """``loss.objective == "adversarial"``: surrogates learn clean images, the generator raises their loss."""
        return self.config.loss.objective == "adversarial"

    def surrogate_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """One update of the surrogate(s) on x + δ.detach() against the true masks (on the clean x
        with the adversarial objective); returns the losses as 0-d tensors on the device (read them
        in bulk: no host sync per step)."""
        rng = step_generator(self.config.runtime.seed, step, self.rank)
        prompts = self.sample_prompts(batch["mask"], rng)
        images, masks, valid = self._to_device(batch)
        self.surrogate.train()
        if self.adversarial:
            adv = images
        else:
            with torch.no_grad(), self.autocast():
                adv, _ = perturb(self.generator_module, images, masks, valid, prompts.generator,
                                 self.config.epsilon.train_budget, self.config.epsilon.saturate)
            adv = adv.float()
        surrogate_input = self.surrogate_input(adv, step)
        with self.autocast():
            logits = self.surrogate(surrogate_input, prompts.surrogate)
            loss = self.loss(logits, masks, valid)
        self._optimise(loss, self.surrogate_optimiser, self.surrogate)
        values = {"surrogate_loss": loss.detach()}
        if self.semantic is not None:
            self.semantic.train()
            with self.autocast():
                semantic_loss = self.loss(self.semantic_logits(self.semantic, adv), masks, valid)
            self._optimise(semantic_loss, self.semantic_optimiser, self.semantic)
            values["semantic_loss"] = semantic_loss.detach()
        return values

    def generator_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """One generator update through the frozen surrogate(s): min-min lowers their loss towards
        the target (all-ones or the true mask), the adversarial objective raises it on the true mask
        (the loss then enters negated); returns the losses (as computed, not negated) as 0-d
        tensors on the device."""
        rng = step_generator(self.config.runtime.seed, step, self.rank)
        prompts = self.sample_prompts(batch["mask"], rng)
        images, masks, valid = self._to_device(batch)
        surrogate = self.surrogate_module
        semantic = self.semantic_module
        with frozen(surrogate, *([semantic] if semantic is not None else [])):
            self.generator.train()
            with self.autocast():
                adv, output = perturb(self.generator, images, masks, valid, prompts.generator,
                                      self.config.epsilon.train_budget, self.config.epsilon.saturate)
                logits = surrogate(self.surrogate_input(adv, step), prompts.surrogate)
                target = torch.ones_like(masks) if self.config.loss.target == "ones" else masks  # min-min only
                sign = -1.0 if self.adversarial else 1.0
                noise_loss = self.loss(logits, target, valid)
                loss = sign * noise_loss
                semantic_loss = torch.zeros((), device=self.device)
                if semantic is not None:  # train mode: batch statistics, as a victim in training sees
                    semantic.train()
                    semantic_loss = self.loss(self.semantic_logits(semantic, adv), target, valid)
                    loss = loss + sign * self.config.loss.semantic_weight * semantic_loss
                mask_loss = torch.zeros((), device=self.device)
                if self.train_generator_mask:
                    mask_loss = self.loss(output.mask_logits, masks, valid)
                    loss = loss + self.config.loss.generator_mask_weight * mask_loss
            self._optimise(loss, self.generator_optimiser, self.generator)
        values = {"generator_loss": noise_loss.detach(), "generator_mask_loss": mask_loss.detach()}
        if semantic is not None:
            values["generator_semantic_loss"] = semantic_loss.detach()
        return values

    # --- measurement ------------------------------------------------------------------------
    @torch.no_grad()
    def surrogate_iou(self, surrogate: nn.Module, batches: list[Batch], budget: Budget, seed: int,
                      semantic: nn.Module | None = None, saturate: bool = False) -> dict[str, float]:
        """Mean IoU of ``surrogate`` (and of a ``semantic`` surrogate, if given) on protected (ε;
        ``saturate``: noise as protection applies it) and clean versions of ``batches``.

        Generator prompts: box + points + mask (all information, as when protecting); surrogate
        prompts: one random type per object, fixed by ``seed``.
        """
        surrogate.eval()
        if semantic is not None:
            semantic.eval()
        ious: dict[str, list[torch.Tensor]] = {}
        for index, batch in enumerate(batches):
            rng = step_generator(seed, index, self.rank, stream=1)
            prompts = self.measurement_prompts(batch["mask"], rng)
            images, masks, valid = self._to_device(batch)
            with self.autocast():
                adv, _ = perturb(self.generator_module, images, masks, valid, prompts.generator, budget, saturate)
                for name, source in (("protected", adv.float()), ("clean", images)):
                    logits = surrogate(resize_images(source, self.surrogate_size), prompts.surrogate)
                    ious.setdefault(f"iou_{name}", []).append(mask_iou(logits.float(), masks, valid))
                    if semantic is not None:
                        logits = self.semantic_logits(semantic, source)
                        ious.setdefault(f"semantic_iou_{name}", []).append(mask_iou(logits.float(), masks, valid))
        return {key: torch.cat(values).mean().item() for key, values in ious.items()}

    def evaluate(self, batches: list[Batch]) -> dict[str, float]:
        """Current surrogate's (and semantic surrogate's) IoU on validation objects, protected at the
        training ε vs clean."""
        eps = self.config.epsilon
        result = self.surrogate_iou(self.surrogate_module, batches, eps.train_budget, self.config.runtime.seed,
                                    self.semantic_module, saturate=eps.saturate)
        self.surrogate.train()
        return result
