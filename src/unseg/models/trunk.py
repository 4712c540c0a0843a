"""The SAM trunk both UnSeg networks share: image encoder, prompt encoder and mask decoder.

``segment_anything``'s parts, sized by one :class:`~unseg.models.config.SamConfig` (cf. SAM's
``_build_sam``): the generator (:class:`~unseg.models.generator.NoiseGenerator`) adds noise
tokens and the noise head on top, the surrogate (:class:`~unseg.models.surrogate.InteractiveSegmenter`)
uses it as it is with one mask output. Parameter names are SAM's (``image_encoder.*``,
``prompt_encoder.*``, ``mask_decoder.*``), so official SAM checkpoints load into it.
"""

from __future__ import annotations

import torch
from torch import nn

from unseg.models.config import SamConfig
from unseg.models.image_encoder import ImageEncoder
from unseg.models.mask_decoder import DecoderOutput, PromptableMaskDecoder
from unseg.models.prompts import PromptBatch, build_prompt_encoder, embed_prompts

# Parameter-name prefixes of the SAM part (loadable from an official checkpoint, frozen then).
SAM_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")


class SamTrunk(nn.Module):
    """SAM's image encoder, prompt encoder and mask decoder for square ``sam.img_size`` inputs.

    Args:
        sam: the sizes of every part.
        num_multimask_outputs: extra mask tokens of the decoder (SAM: 3; the surrogate: 0).
        with_iou_head: keep SAM's IoU prediction head (the generator does, for checkpoint parity).
    """

    def __init__(self, sam: SamConfig, num_multimask_outputs: int, with_iou_head: bool) -> None:
        super().__init__()
        self.image_encoder = ImageEncoder(sam)
        self.prompt_encoder = build_prompt_encoder(sam.prompt_dim, sam.embedding_size, sam.img_size, sam.mask_in_chans)
        self.mask_decoder = PromptableMaskDecoder(sam, num_multimask_outputs=num_multimask_outputs,
                                                  with_iou_head=with_iou_head)

    def embed_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``B x 3 x S x S`` images in [0, 1] -> (embedding ``B x prompt_dim x E x E``, early feature
        of the first global-attention block ``B x encoder_dim x E x E``)."""
        return self.image_encoder(images)

    def decode_masks(self, embedding: torch.Tensor, prompts: PromptBatch,
                     extra_tokens: torch.Tensor | None = None) -> DecoderOutput:
        """One decoder pass per row of ``embedding`` with that row's prompts; ``extra_tokens``
        (``K x D``) ride through the two-way transformer (the generator's noise tokens)."""
        sparse, dense = embed_prompts(self.prompt_encoder, prompts)
        return self.mask_decoder(embedding, self.prompt_encoder.get_dense_pe(), sparse, dense, extra_tokens=extra_tokens)

    def sam_parameters(self) -> list[nn.Parameter]:
        """Parameters of the SAM part (image encoder, prompt encoder, mask decoder)."""
        return [p for name, p in self.named_parameters() if name.startswith(SAM_PREFIXES)]
