"""The promptable UnSeg noise generator (SAM layout + noise head)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unseg.models.config import GeneratorConfig
from unseg.models.noise_head import NoiseHead
from unseg.models.prompts import PromptBatch
from unseg.models.trunk import SamTrunk


@dataclass
class ImageFeatures:
    """Image-encoder outputs: final embedding (``B x C x E x E``) and early feature of the first global block."""

    embedding: torch.Tensor
    early: torch.Tensor

    def select(self, rows: torch.Tensor) -> "ImageFeatures":
        """Rows ``rows`` (indices, repeats allowed) of both tensors."""
        return ImageFeatures(embedding=self.embedding[rows], early=self.early[rows])


@dataclass
class GeneratorOutput:
    """Noise map in [-1, 1] (``B x 3 x N x N``) and the SAM mask logits (``B x 1 x 4E x 4E``)."""

    noise: torch.Tensor
    mask_logits: torch.Tensor


class NoiseGenerator(SamTrunk):
    """Given square images in [0, 1] and prompts, one forward pass gives unit-bounded noise.

    The SAM trunk (:class:`~unseg.models.trunk.SamTrunk`: SAM's 3 mask outputs and IoU head) plus
    noise tokens and the noise head. The noise covers the whole (padded) model input; scaling by
    the per-pixel budget (ε on the object, ε_bg elsewhere) happens outside the network
    (:mod:`unseg.protection.perturb`).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        sam = config.sam
        super().__init__(sam, num_multimask_outputs=3, with_iou_head=True)
        self.config = config
        self.noise_tokens = nn.Embedding(config.num_noise_tokens, sam.prompt_dim)
        self.noise_head = NoiseHead(
            encoder_dim=sam.encoder_dim,
            prompt_dim=sam.prompt_dim,
            num_tokens=config.num_noise_tokens,
            noise_dim=config.noise_dim,
            extra_upscale=config.noise_upscale,
            highpass_window=config.highpass_window,
        )

    def forward(self, images: torch.Tensor, prompts: PromptBatch) -> GeneratorOutput:
        return self.decode(self.encode(images), prompts)

    def encode(self, images: torch.Tensor) -> ImageFeatures:
        """The prompt-independent part: image embedding and early feature (reusable across prompts)."""
        embedding, early = self.embed_images(images)
        return ImageFeatures(embedding=embedding, early=early)

    def decode(self, features: ImageFeatures, prompts: PromptBatch) -> GeneratorOutput:
        """Noise and mask logits for ``prompts`` (one per row of ``features``)."""
        embedding, early = features.embedding, features.early
        decoded = self.decode_masks(embedding, prompts, extra_tokens=self.noise_tokens.weight)
        noise = self.noise_head(decoded.extra_tokens, early, embedding, decoded.upscaled)
        return GeneratorOutput(noise=noise, mask_logits=decoded.masks[:, :1])

    def freeze_sam(self) -> None:
        """Freeze the SAM part; only the noise tokens and noise head stay trainable."""
        for parameter in self.sam_parameters():
            parameter.requires_grad_(False)
