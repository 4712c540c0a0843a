"""The surrogate interactive segmenter used in bilevel min-min training."""

from __future__ import annotations

import torch
from torch import nn

from unseg.models.config import SurrogateConfig
from unseg.models.image_encoder import ImageEncoder
from unseg.models.mask_decoder import PromptableMaskDecoder
from unseg.models.prompts import PromptBatch, build_prompt_encoder, embed_prompts


class InteractiveSegmenter(nn.Module):
    """SAM-layout promptable segmenter with a single mask output and no IoU head."""

    def __init__(self, config: SurrogateConfig) -> None:
        super().__init__()
        sam = config.sam
        self.config = config
        self.image_encoder = ImageEncoder(sam)
        self.prompt_encoder = build_prompt_encoder(sam.prompt_dim, sam.embedding_size, sam.img_size, sam.mask_in_chans)
        self.mask_decoder = PromptableMaskDecoder(sam, num_multimask_outputs=0, with_iou_head=False)

    def forward(self, images: torch.Tensor, prompts: PromptBatch) -> torch.Tensor:
        """Mask logits ``B x 1 x 4E x 4E`` for ``B x 3 x S x S`` images in [0, 1]."""
        embedding, _ = self.image_encoder(images)
        sparse, dense = embed_prompts(self.prompt_encoder, prompts)
        return self.mask_decoder(embedding, self.prompt_encoder.get_dense_pe(), sparse, dense).masks
