"""Does the trained generator protect? Train a fresh surrogate on protected images and compare.

A fresh surrogate (same preset, random init) learns for ``steps`` steps from validation objects
protected at the *protection* budget (ε = 8/255, ε_bg = 2/255 by default) with the noise saturated
as ``Protector`` applies it (the noise carries no gradient). If the noise is a learnable shortcut, the surrogate scores high on protected images
and low on clean versions of the same images. A run with a semantic surrogate also trains a fresh
one of those (no prompt, victim-like) on the same protected images.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from unseg.models import build_surrogate
from unseg.training.bilevel import (
    Batch,
    BilevelTrainer,
    perturb,
    resize_images,
    semantic_network,
    step_generator,
)


def protection_check(trainer: BilevelTrainer, train_batches: Iterable[Batch], eval_batches: list[Batch],
                     steps: int) -> dict[str, float]:
    """Train a fresh surrogate ``steps`` steps on protected ``train_batches``; report IoUs on ``eval_batches``.

    Returns ``{"check_iou_protected", "check_iou_clean", "check_steps", "check_final_loss"}``, plus
    ``check_semantic_iou_protected`` / ``check_semantic_iou_clean`` with a semantic surrogate (the
    final loss is then the sum of both networks' losses).
    """
    if steps <= 0:
        raise ValueError("protection_check needs steps > 0")
    config = trainer.config
    seed = config.runtime.seed
    torch.manual_seed(seed + 7919)  # the fresh surrogate's initialisation, reproducible
    surrogate = build_surrogate(trainer.surrogate_module.config).to(trainer.device)
    networks = [surrogate]
    semantic = None
    if trainer.semantic_module is not None:
        semantic = semantic_network(config, trainer.device)
        networks.append(semantic)
    optimiser = torch.optim.Adam([p for n in networks for p in n.parameters()], lr=config.optimiser.surrogate_lr)
    scaler = torch.amp.GradScaler(trainer.device.type, enabled=config.runtime.amp == "fp16")
    budget = config.epsilon.protect_budget
    loss_value = float("nan")
    done = 0
    for step, batch in zip(range(steps), train_batches):
        rng = step_generator(seed, step, trainer.rank, stream=2)
        prompts = trainer.measurement_prompts(batch["mask"], rng)
        images, masks, valid = (batch[k].to(trainer.device) for k in ("image", "mask", "valid"))
        with torch.no_grad(), trainer.autocast():
            adv, _ = perturb(trainer.generator_module, images, masks, valid, prompts.generator, budget, saturate=True)
        adv = adv.float()
        for network in networks:
            network.train()
        with trainer.autocast():
            loss = trainer.loss(surrogate(resize_images(adv, trainer.surrogate_size), prompts.surrogate), masks, valid)
            if semantic is not None:  # separate parameters: the sum trains each on its own loss
                loss = loss + trainer.loss(trainer.semantic_logits(semantic, adv), masks, valid)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()
        loss_value = loss.item()
        done = step + 1
    ious = trainer.surrogate_iou(surrogate, eval_batches, budget, seed, semantic, saturate=True)
    return {**{f"check_{key}": value for key, value in ious.items()}, "check_steps": done,
            "check_final_loss": loss_value}
