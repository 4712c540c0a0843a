"""Victim models trained on (protected) data: smp semantic segmenters and a SAM-layout interactive one.

smp victims (``unseg.models.semantic``, trained from scratch) are named ``arch`` or
``arch@encoder``; ``sam`` is the
box-prompted :func:`unseg.models.build_surrogate` ("small", 128-px input) trained on (image, object box) ->
object mask, the interactive-segmentation task, scored by pooled foreground IoU; ``sam@preset`` picks
another surrogate preset (``sam@small_256``: 256-px input).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unseg.models.registry import SURROGATE_PRESETS, build_surrogate
from unseg.models.semantic import ARCHITECTURES, build_semantic, parse_semantic

INTERACTIVE_VICTIM = "sam"


@dataclass(frozen=True)
class VictimSpec:
    """A parsed victim name: ``arch`` (default encoder), ``arch@encoder``, ``sam`` or ``sam@preset``
    (``encoder`` then holds the surrogate preset)."""

    name: str
    architecture: str
    encoder: str | None

    @property
    def interactive(self) -> bool:
        return self.architecture == INTERACTIVE_VICTIM


def parse_victim(name: str) -> VictimSpec:
    """``"unet"`` -> UNet with its default encoder; ``"fpn@mobilenet_v2"``; ``"sam"``; ``"sam@small_256"``."""
    architecture, _, encoder = name.partition("@")
    if architecture == INTERACTIVE_VICTIM:
        if encoder and encoder not in SURROGATE_PRESETS:
            raise ValueError(f"unknown sam victim preset {encoder!r}; choose one of {sorted(SURROGATE_PRESETS)}")
        return VictimSpec(name, architecture, encoder or None)
    try:
        architecture, encoder = parse_semantic(name)
    except ValueError:
        raise ValueError(f"unknown victim {name!r}; architectures: {sorted(ARCHITECTURES)} or {INTERACTIVE_VICTIM!r}") from None
    return VictimSpec(name, architecture, encoder)


def build_victim(spec: VictimSpec, num_classes: int) -> nn.Module:
    """A randomly initialised victim taking ``[0, 1]`` images (smp: ``B x classes x H x W`` logits)."""
    if spec.interactive:
        return build_surrogate(spec.encoder or "small")  # normalises its [0, 1] input itself
    return build_semantic(spec.architecture, spec.encoder, num_classes)
