"""The promptable UnSeg noise generator (SAM layout + noise head)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unseg.models.config import GeneratorConfig
from unseg.models.image_encoder import ImageEncoder
from unseg.models.mask_decoder import PromptableMaskDecoder
from unseg.models.noise_head import NoiseHead
from unseg.models.prompts import PromptBatch, build_prompt_encoder, embed_prompts

# Parameter-name prefixes of the SAM part (loadable from an official checkpoint, frozen then).
SAM_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")


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


class NoiseGenerator(nn.Module):
    """Given square images in [0, 1] and prompts, one forward pass gives unit-bounded noise.

    The noise covers the whole (padded) model input; scaling by the per-pixel budget
    (ε on the object, ε_bg elsewhere) happens outside the network (``unseg.protection.budget``).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        sam = config.sam
        self.config = config
        self.image_encoder = ImageEncoder(sam)
        self.prompt_encoder = build_prompt_encoder(sam.prompt_dim, sam.embedding_size, sam.img_size, sam.mask_in_chans)
        self.mask_decoder = PromptableMaskDecoder(sam, num_multimask_outputs=3, with_iou_head=True)
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
        embedding, early = self.image_encoder(images)
        return ImageFeatures(embedding=embedding, early=early)

    def decode(self, features: ImageFeatures, prompts: PromptBatch) -> GeneratorOutput:
        """Noise and mask logits for ``prompts`` (one per row of ``features``)."""
        embedding, early = features.embedding, features.early
        sparse, dense = embed_prompts(self.prompt_encoder, prompts)
        decoded = self.mask_decoder(
            embedding, self.prompt_encoder.get_dense_pe(), sparse, dense, extra_tokens=self.noise_tokens.weight
        )
        noise = self.noise_head(decoded.extra_tokens, early, embedding, decoded.upscaled)
        return GeneratorOutput(noise=noise, mask_logits=decoded.masks[:, :1])

    def sam_parameters(self) -> list[nn.Parameter]:
        """Parameters of the SAM part (image encoder, prompt encoder, mask decoder)."""
        return [p for name, p in self.named_parameters() if name.startswith(SAM_PREFIXES)]

    def freeze_sam(self) -> None:
        """Freeze the SAM part; only the noise tokens and noise head stay trainable."""
        for parameter in self.sam_parameters():
            parameter.requires_grad_(False)
