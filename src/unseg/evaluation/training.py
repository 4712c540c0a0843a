"""Training a victim on a (protected) training set and scoring it on the clean test set each epoch.

Same seed, data order and schedule for clean and protected training, so the only difference
between two runs is the training images. Optional training-time defences: standard
augmentation (flip, scale-crop, cutout) and PGD adversarial training (Madry et al. 2018).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from unseg.data.segmentation import DatasetSpec
from unseg.devices import flush_denormals, mixed_precision
from unseg.evaluation.interactive import ObjectSamples, interactive_loss, object_samples, prompt_only_ious, score_interactive
from unseg.evaluation.metrics import SegmentationScore
from unseg.evaluation.resume import EpochCheckpoint
from unseg.evaluation.victims import VictimSpec, build_victim


@dataclass(frozen=True)
class TrainSchedule:
    """How a victim is trained.

    Attributes:
        epochs, batch_size, lr: Adam with cosine decay to 1 % over ``epochs``.
        augment: random horizontal flip, scale-crop (zoom 1–1.5) and one cutout square per image.
        adversarial_epsilon: > 0 turns on PGD adversarial training with this L∞ radius
            (``adversarial_steps`` steps of size ε/2 from a random start).
        amp: bf16 autocast (CPU and CUDA); measured ~1.5–2x faster on the 2-core CPU.
        max_objects: interactive victim only — objects sampled per image and epoch.
        channels_last: CNN victims and their batches in channels-last memory layout (faster
            convolutions on a GPU, especially with bf16; the same results up to float rounding).
    """

    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    augment: bool = False
    adversarial_epsilon: float = 0.0
    adversarial_steps: int = 3
    amp: bool = False
    max_objects: int = 3
    channels_last: bool = False


@dataclass
class SplitTensors:
    """A split held in memory at victim size: ``N x 3 x H x W`` uint8 images, ``N x H x W`` long masks."""

    images: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class VictimResult:
    """Metric history (one entry per epoch), final test summary, wall time, sample predictions and the
    trained victim itself (in eval mode: e.g. a frozen clean-trained surrogate for adversarial noise)."""

    history: list[dict[str, float]]
    final: dict
    seconds: float
    predictions: np.ndarray | None = field(default=None, repr=False)
    model: nn.Module | None = field(default=None, repr=False)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """Cross-entropy (ignore label skipped); binary sets add the soft Dice loss of the foreground."""
    ignore = spec.ignore_index if spec.ignore_index is not None else -100
    loss = F.cross_entropy(logits.float(), masks, ignore_index=ignore)
    if spec.binary:
        probability = logits.float().softmax(1)[:, 1]
        target = (masks == 1).float()
        dice = 1 - (2 * (probability * target).sum() + 1) / (probability.sum() + target.sum() + 1)
        loss = loss + dice
    return loss


def augment_batch(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator, ignore: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flip, zoom-in crop (scale 1–1.5) and one cutout square (1/4 side; image only) per sample."""
    batch, _, height, width = images.shape
    images, masks = images.clone(), masks.clone()
    for i in range(batch):
        if torch.rand(1, generator=generator) < 0.5:
            images[i], masks[i] = images[i].flip(-1), masks[i].flip(-1)
        zoom = 1 + 0.5 * float(torch.rand(1, generator=generator))
        crop_h, crop_w = int(height / zoom), int(width / zoom)
        top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
        patch = images[i : i + 1, :, top : top + crop_h, left : left + crop_w]
        images[i] = F.interpolate(patch, size=(height, width), mode="bilinear", align_corners=False)[0]
        label = masks[i : i + 1, None, top : top + crop_h, left : left + crop_w].float()
        masks[i] = F.interpolate(label, size=(height, width), mode="nearest")[0, 0].long()
        side_h, side_w = height // 4, width // 4
        y = int(torch.randint(0, height - side_h + 1, (1,), generator=generator))
        x = int(torch.randint(0, width - side_w + 1, (1,), generator=generator))
        images[i, :, y : y + side_h, x : x + side_w] = 0.5
    return images, masks


def pgd_attack(model: nn.Module, forward, images: torch.Tensor, loss_fn, epsilon: float, steps: int,
               generator: torch.Generator | None, step: float | None = None) -> torch.Tensor:
    """L∞ PGD that maximises ``loss_fn(forward(x))`` within ``epsilon`` of ``images``: signed steps of
    ``step`` (default ``epsilon / 2``) from a uniform random start drawn with ``generator`` (None:
    from the images themselves).

    ``model`` is put in eval mode during the attack (batch-norm statistics untouched).
    """
    adversarial = images
    if generator is not None:
        start = (torch.rand(images.shape, generator=generator) * 2 - 1).to(images.device) * epsilon
        adversarial = (images + start).clamp(0, 1)
    step = epsilon / 2 if step is None else step
    was_training = model.training
    model.eval()
    for _ in range(steps):
        adversarial.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(forward(adversarial)), adversarial)
        adversarial = adversarial.detach() + step * grad.sign()
        adversarial = torch.min(torch.max(adversarial, images - epsilon), images + epsilon).clamp(0, 1)
    model.train(was_training)
    return adversarial.detach()


@torch.no_grad()
def evaluate_semantic(model: nn.Module, test: SplitTensors, spec: DatasetSpec, device: torch.device, batch_size: int, amp: bool) -> tuple[dict, torch.Tensor]:
    """Metrics of ``model`` on the clean test split, and its predictions (``N x H x W`` uint8)."""
    model.eval()
    score = SegmentationScore(spec.num_classes, spec.ignore_index)
    predictions = []
    for start in range(0, len(test), batch_size):
        images = test.images[start : start + batch_size].to(device).float() / 255
        with mixed_precision(device, amp):
            pred = model(images).float().argmax(1).cpu()
        score.update(pred, test.masks[start : start + batch_size])
        predictions.append(pred.to(torch.uint8))
    return score.summary(), torch.cat(predictions)


@dataclass
class VictimLoop:
    """What one kind of victim does differently inside the shared training loop of :func:`train_victim`.

    Attributes:
        lr: Adam learning rate.
        cosine: cosine decay to 1 % over the run (else a constant rate).
        epoch_batches: one epoch of batches on the device, drawn with the run's generator.
        loss: the training loss of a batch (run under autocast).
        attack: the batch with PGD-perturbed images (adversarial training).
        evaluate: (metrics, sample predictions or None) on the clean test split.
        metric: the metric of each epoch's history entry.
    """

    lr: float
    cosine: bool
    epoch_batches: Callable[[torch.Generator], Iterator[Any]]
    loss: Callable[[Any], torch.Tensor]
    attack: Callable[[Any, torch.Generator], Any]
    evaluate: Callable[[], tuple[dict, np.ndarray | None]]
    metric: str


def semantic_loop(model: nn.Module, spec: DatasetSpec, train: SplitTensors, test: SplitTensors,
                  schedule: TrainSchedule, device: torch.device) -> VictimLoop:
    """An smp victim: (image) -> class logits on ``train``; scored on ``test`` (``spec.primary_metric``)."""
    ignore = spec.ignore_index if spec.ignore_index is not None else -100

    def batches(generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), schedule.batch_size):
            index = order[start : start + schedule.batch_size]
            if len(index) < 2 and len(train) >= 2:
                continue  # batch norm needs two samples
            images, masks = train.images[index], train.masks[index]
            if schedule.augment:  # on the CPU, with the run's generator
                images, masks = augment_batch(images.float() / 255, masks, generator, ignore)
                images = images.to(device, non_blocking=True)
            else:  # only the 8-bit images travel
                images = images.to(device, non_blocking=True).float() / 255
            if schedule.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, masks.to(device, non_blocking=True)

    def attack(batch, generator):
        images, masks = batch
        return pgd_attack(model, model, images, lambda logits: segmentation_loss(logits, masks, spec),
                          schedule.adversarial_epsilon, schedule.adversarial_steps, generator), masks

    def evaluate():
        summary, predictions = evaluate_semantic(model, test, spec, device, schedule.batch_size * 2, schedule.amp)
        return summary, predictions[:4].numpy()

    return VictimLoop(lr=schedule.lr, cosine=True, epoch_batches=batches,
                      loss=lambda batch: segmentation_loss(model(batch[0]), batch[1], spec), attack=attack,
                      evaluate=evaluate, metric=spec.primary_metric)


def interactive_loop(model: nn.Module, spec: DatasetSpec, train: SplitTensors, test: SplitTensors,
                     schedule: TrainSchedule, device: torch.device, seed: int) -> VictimLoop:
    """The SAM-layout victim: (image, object box) -> object mask; scored by pooled IoU on clean test objects."""
    size = model.config.sam.img_size
    test_objects = object_samples(test, spec, size, max_objects=schedule.max_objects,
                                  generator=torch.Generator().manual_seed(seed + 1))
    baselines = prompt_only_ious(test_objects)  # image-free: the same every epoch

    def batches(generator: torch.Generator) -> Iterator[ObjectSamples]:
        objects = object_samples(train, spec, size, max_objects=schedule.max_objects, generator=generator)
        order = torch.randperm(len(objects), generator=generator)
        for start in range(0, len(objects), schedule.batch_size):
            yield objects.subset(order[start : start + schedule.batch_size]).to(device)

    def attack(batch, generator):
        batch.images = pgd_attack(model, lambda x: model(x, batch.prompts), batch.images,
                                  lambda logits: interactive_loss(logits.float(), batch.targets),
                                  schedule.adversarial_epsilon, schedule.adversarial_steps, generator)
        return batch

    def evaluate():
        return {**score_interactive(model, test_objects, device, schedule.batch_size * 2, schedule.amp), **baselines}, None

    return VictimLoop(lr=schedule.lr * 0.5, cosine=False, epoch_batches=batches,
                      loss=lambda batch: interactive_loss(model(batch.images, batch.prompts).float(), batch.targets),
                      attack=attack, evaluate=evaluate, metric="iou")


def train_victim(victim: VictimSpec, spec: DatasetSpec, train: SplitTensors, test: SplitTensors, schedule: TrainSchedule,
                 device: torch.device, seed: int, progress: str | None = "",
                 checkpoint: EpochCheckpoint | None = None) -> VictimResult:
    """Train ``victim`` from scratch on ``train`` and score it on the clean ``test`` split after every
    epoch: one loop for every victim (same seed, data order and schedule), the victim's own parts
    from :func:`semantic_loop` or :func:`interactive_loop`. With ``checkpoint``, training goes on from
    its saved state (if any) and saves its state between epochs (:mod:`unseg.evaluation.resume`).
    Subnormal floats count as zero (:func:`unseg.devices.flush_denormals`)."""
    flush_denormals()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_victim(victim, spec.num_classes).to(device)
    if schedule.channels_last and not victim.interactive:
        model = model.to(memory_format=torch.channels_last)
    loop = (interactive_loop(model, spec, train, test, schedule, device, seed) if victim.interactive
            else semantic_loop(model, spec, train, test, schedule, device))
    optimizer = torch.optim.Adam(model.parameters(), lr=loop.lr)
    scheduler = None
    if loop.cosine:
        steps = schedule.epochs * max(1, -(-len(train) // schedule.batch_size))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=schedule.lr * 0.01)
    history, spent = checkpoint.restore(model, optimizer, scheduler, generator) if checkpoint is not None else ([], 0.0)
    started = time.perf_counter()
    for epoch in tqdm(range(len(history), schedule.epochs), desc=progress or victim.name, leave=False,
                      disable=progress is None, initial=len(history), total=schedule.epochs):
        model.train()
        losses = []
        for batch in loop.epoch_batches(generator):
            if schedule.adversarial_epsilon > 0:
                batch = loop.attack(batch, generator)
            optimizer.zero_grad(set_to_none=True)
            with mixed_precision(device, schedule.amp):
                loss = loop.loss(batch)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(float(loss.detach()))
        summary, _ = loop.evaluate()
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                        loop.metric: summary[loop.metric]})
        if checkpoint is not None and epoch + 1 < schedule.epochs:
            checkpoint.save(model, optimizer, scheduler, generator, history, spent + time.perf_counter() - started)
    final, predictions = loop.evaluate()
    return VictimResult(history, final, spent + time.perf_counter() - started, predictions, model.eval())
