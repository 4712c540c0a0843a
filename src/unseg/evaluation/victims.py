"""Victim models trained on (protected) data: smp semantic segmenters and a SAM-layout interactive one.

smp victims (segmentation-models-pytorch, ``encoder_weights=None`` always: no downloads, and
training from scratch is what the threat model assumes for a data scraper without a
pretrained model on the same domain) are named ``arch`` or ``arch@encoder``; ``sam`` is the
box-prompted :func:`unseg.models.build_surrogate` ("small") trained on (image, object box) ->
object mask, the interactive-segmentation task, scored by pooled foreground IoU.
"""

from __future__ import annotations

from dataclasses import dataclass

import segmentation_models_pytorch as smp
import torch
from torch import nn

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "unet": smp.Unet,
    "unetplusplus": smp.UnetPlusPlus,
    "fpn": smp.FPN,
    "deeplabv3plus": smp.DeepLabV3Plus,
    "linknet": smp.Linknet,
    "pspnet": smp.PSPNet,
}
# Encoders picked for CPU speed (measured: forward+backward of a batch of 8 at 128x160, 2 cores:
# unet/fpn/deeplabv3plus with resnet18 0.3-0.4 s; unetplusplus with resnet18 1.2 s but with
# mobilenet_v2 0.47 s). bf16 autocast roughly halves these on this CPU.
DEFAULT_ENCODERS: dict[str, str] = {
    "unet": "resnet18",
    "unetplusplus": "mobilenet_v2",
    "fpn": "resnet18",
    "deeplabv3plus": "resnet18",
    "linknet": "resnet18",
    "pspnet": "resnet18",
}
INTERACTIVE_VICTIM = "sam"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class VictimSpec:
    """A parsed victim name: ``arch`` (default encoder), ``arch@encoder``, or ``sam``."""

    name: str
    architecture: str
    encoder: str | None

    @property
    def interactive(self) -> bool:
        return self.architecture == INTERACTIVE_VICTIM


def parse_victim(name: str) -> VictimSpec:
    """``"unet"`` -> UNet with its default encoder; ``"fpn@mobilenet_v2"``; ``"sam"``."""
    architecture, _, encoder = name.partition("@")
    if architecture == INTERACTIVE_VICTIM:
        if encoder:
            raise ValueError("the sam victim takes no encoder")
        return VictimSpec(name, architecture, None)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown victim {name!r}; architectures: {sorted(ARCHITECTURES)} or {INTERACTIVE_VICTIM!r}")
    return VictimSpec(name, architecture, encoder or DEFAULT_ENCODERS[architecture])


class Normalised(nn.Module):
    """Wraps a network so it takes images in [0, 1] (ImageNet normalisation inside; PGD works in [0, 1])."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor, *args: object) -> torch.Tensor:
        return self.network((images - self.mean) / self.std, *args)


def build_victim(spec: VictimSpec, num_classes: int) -> nn.Module:
    """A randomly initialised victim taking ``[0, 1]`` images (smp: ``B x classes x H x W`` logits)."""
    if spec.interactive:
        from unseg.models import build_surrogate

        return build_surrogate("small")  # normalises its [0, 1] input itself
    network = ARCHITECTURES[spec.architecture](encoder_name=spec.encoder, encoder_weights=None, classes=num_classes)
    return Normalised(network)
