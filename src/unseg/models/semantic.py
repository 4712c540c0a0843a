"""Semantic segmenters from segmentation-models-pytorch, taking images in [0, 1].

Used as victims (``unseg.evaluation.victims``) and as the optional semantic surrogate of
training (``model.semantic_surrogate``). ``encoder_weights=None`` always: nothing is downloaded,
and a data scraper without a pretrained model on the same domain trains from scratch.
Names are ``arch`` (default encoder) or ``arch@encoder``.
"""

from __future__ import annotations

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
    # a transformer victim (SegFormer, Xie et al. 2021: Mix Transformer encoder, MLP decoder): the
    # CNNs above read 8/255 textures, the ViT-layout `sam` victim does not
    # (benchmarks/results/noise_structure_probe_kvasir_seg_sam.md), so the grid needs one of each
    "segformer": smp.Segformer,
}
# Encoders picked for CPU speed (measured: forward+backward of a batch of 8 at 128x160, 2 cores:
# unet/fpn/deeplabv3plus with resnet18 0.3-0.4 s; unetplusplus with resnet18 1.2 s but with
# mobilenet_v2 0.47 s; segformer with mit_b0 about 0.6x unet's on 1 thread). bf16 autocast roughly halves these on this CPU.
DEFAULT_ENCODERS: dict[str, str] = {
    "unet": "resnet18",
    "unetplusplus": "mobilenet_v2",
    "fpn": "resnet18",
    "deeplabv3plus": "resnet18",
    "linknet": "resnet18",
    "pspnet": "resnet18",
    "segformer": "mit_b0",  # 3.7 M parameters; forward+backward of 8 at 128x160 faster than unet@resnet18 here
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalised(nn.Module):
    """Wraps a network so it takes images in [0, 1] (ImageNet normalisation inside; PGD works in [0, 1])."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor, *args: object) -> torch.Tensor:
        return self.network((images - self.mean) / self.std, *args)


def parse_semantic(name: str) -> tuple[str, str]:
    """``"unet"`` -> ("unet", its default encoder); ``"fpn@mobilenet_v2"`` -> ("fpn", "mobilenet_v2")."""
    architecture, _, encoder = name.partition("@")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown segmenter {name!r}; architectures: {sorted(ARCHITECTURES)}")
    return architecture, encoder or DEFAULT_ENCODERS[architecture]


def build_semantic(architecture: str, encoder: str, classes: int) -> Normalised:
    """A randomly initialised smp segmenter: ``B x 3 x H x W`` in [0, 1] -> ``B x classes x H x W`` logits."""
    network = ARCHITECTURES[architecture](encoder_name=encoder, encoder_weights=None, classes=classes)
    return Normalised(network)


def build_named(name: str, classes: int) -> Normalised:
    """:func:`build_semantic` from a name as :func:`parse_semantic` reads it."""
    return build_semantic(*parse_semantic(name), classes=classes)
