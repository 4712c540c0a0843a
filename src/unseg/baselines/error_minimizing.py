"""Per-sample error-minimising noise (Huang et al., "Unlearnable Examples", ICLR 2021).

Min-min optimisation: alternately (1) train a surrogate segmenter for a few steps on the
perturbed images and (2) run PGD that *minimises* the surrogate's loss with respect to each
image's own noise, until the surrogate fits the perturbed data (pixel accuracy above a
threshold) or the rounds run out. The surrogate is a small U-Net from
segmentation-models-pytorch trained from scratch (no pretrained weights).

Cost: unlike UnSeg's single forward pass, this needs an optimisation over the whole training
set — the protocol times it in seconds per image. The noise is optimised at a fixed working
size and resized to each image (bilinear), then bounded exactly by ``apply_budget``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from unseg.baselines.sample import NoiseSample, class_index_map
from unseg.budget import DEFAULT_BUDGET, Budget


@dataclass(frozen=True)
class MinMinSchedule:
    """Schedule of the min-min optimisation (defaults sized for CPU; raise them on a GPU)."""

    work_size: tuple[int, int] = (96, 128)
    encoder: str = "resnet18"
    rounds: int = 10
    train_steps: int = 10
    pgd_steps: int = 10
    unit_step: float = 0.1  # PGD step in units of the per-pixel budget (ε/10, as in the paper)
    batch_size: int = 8
    lr: float = 1e-3
    stop_accuracy: float = 0.99


@dataclass
class ErrorMinimizingNoise:
    """Sample-wise error-minimising noise maker (see the module docstring)."""

    num_classes: int
    seed: int = 0
    budget: Budget = DEFAULT_BUDGET
    schedule: MinMinSchedule = MinMinSchedule()
    device: str = "cpu"

    def __call__(self, samples: list[NoiseSample]) -> list[np.ndarray]:
        if not samples:
            return []
        torch.manual_seed(self.seed)
        images, labels, budget = self._stack(samples)
        unit = torch.zeros_like(images)
        surrogate = smp.Unet(self.schedule.encoder, encoder_weights=None, classes=self.num_classes).to(self.device)
        optimizer = torch.optim.Adam(surrogate.parameters(), lr=self.schedule.lr)
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.schedule.rounds):
            self._train_surrogate(surrogate, optimizer, images, labels, unit * budget, generator)
            unit = self._minimise_noise(surrogate, images, labels, budget, unit)
            if self._accuracy(surrogate, images, labels, unit * budget) >= self.schedule.stop_accuracy:
                break
        return [self._to_image(unit[i : i + 1], sample) for i, sample in enumerate(samples)]

    def _stack(self, samples: list[NoiseSample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = self.schedule.work_size
        images, labels, budget = [], [], []
        for sample in samples:
            image = torch.from_numpy(sample.pixels).permute(2, 0, 1)[None].float() / 255
            images.append(F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True))
            label = torch.from_numpy(class_index_map(sample.mask, self.num_classes))[None, None].float()
            labels.append(F.interpolate(label, size=size, mode="nearest")[:, 0].long())
            region = torch.from_numpy(sample.region)[None, None].float()
            region = F.interpolate(region, size=size, mode="nearest")
            budget.append(region * self.budget.fraction + (1 - region) * self.budget.fraction_bg)
        to = lambda parts: torch.cat(parts).to(self.device)  # noqa: E731
        return to(images), to(labels), to(budget)

    def _loss(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(images), labels, ignore_index=self.num_classes)

    def _train_surrogate(self, model, optimizer, images, labels, delta, generator) -> None:
        model.train()
        for _ in range(self.schedule.train_steps):
            index = torch.randperm(len(images), generator=generator)[: self.schedule.batch_size].to(self.device)
            optimizer.zero_grad(set_to_none=True)
            self._loss(model, (images[index] + delta[index]).clamp(0, 1), labels[index]).backward()
            optimizer.step()

    def _minimise_noise(self, model, images, labels, budget, unit) -> torch.Tensor:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        updated = []
        for start in range(0, len(images), self.schedule.batch_size):
            part = slice(start, start + self.schedule.batch_size)
            noise = unit[part].clone()
            for _ in range(self.schedule.pgd_steps):
                noise.requires_grad_(True)
                perturbed = (images[part] + noise * budget[part]).clamp(0, 1)
                (grad,) = torch.autograd.grad(self._loss(model, perturbed, labels[part]), noise)
                noise = (noise.detach() - self.schedule.unit_step * grad.sign()).clamp(-1, 1)
            updated.append(noise.detach())
        for p in model.parameters():
            p.requires_grad_(True)
        return torch.cat(updated)

    @torch.no_grad()
    def _accuracy(self, model, images, labels, delta) -> float:
        model.eval()
        correct = total = 0
        for start in range(0, len(images), self.schedule.batch_size):
            part = slice(start, start + self.schedule.batch_size)
            pred = model((images[part] + delta[part]).clamp(0, 1)).argmax(1)
            valid = labels[part] != self.num_classes
            correct += int((pred == labels[part])[valid].sum())
            total += int(valid.sum())
        return correct / max(total, 1)

    def _to_image(self, unit: torch.Tensor, sample: NoiseSample) -> np.ndarray:
        height, width = sample.pixels.shape[:2]
        full = F.interpolate(unit.cpu(), size=(height, width), mode="bilinear", align_corners=False)
        return full[0].permute(1, 2, 0).clamp(-1, 1).numpy().astype(np.float32)
