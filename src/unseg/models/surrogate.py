"""The surrogate interactive segmenter used in bilevel min-min training."""

from __future__ import annotations

import torch

from unseg.models.config import SurrogateConfig
from unseg.models.prompts import PromptBatch
from unseg.models.trunk import SamTrunk


class InteractiveSegmenter(SamTrunk):
    """SAM-layout promptable segmenter: the SAM trunk (:class:`~unseg.models.trunk.SamTrunk`) with
    a single mask output and no IoU head."""

    def __init__(self, config: SurrogateConfig) -> None:
        super().__init__(config.sam, num_multimask_outputs=0, with_iou_head=False)
        self.config = config

    def forward(self, images: torch.Tensor, prompts: PromptBatch) -> torch.Tensor:
        """Mask logits ``B x 1 x 4E x 4E`` for ``B x 3 x S x S`` images in [0, 1]."""
        embedding, _ = self.embed_images(images)
        return self.decode_masks(embedding, prompts).masks
