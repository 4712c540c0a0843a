"""SAM mask decoder that accepts extra output tokens and exposes its upscaled features."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from segment_anything.modeling import MaskDecoder, TwoWayTransformer

from unseg.models.config import SamConfig


@dataclass
class DecoderOutput:
    """What one decoder pass produces.

    Attributes:
        masks: ``B x M x 4E x 4E`` mask logits (M mask tokens).
        iou_pred: ``B x M`` predicted IoU, or None for a decoder without IoU head.
        extra_tokens: ``B x K x D`` transformer outputs of the K extra tokens (K may be 0).
        upscaled: ``B x D/8 x 4E x 4E`` upscaled image features the masks are read from.
    """

    masks: torch.Tensor
    iou_pred: torch.Tensor | None
    extra_tokens: torch.Tensor
    upscaled: torch.Tensor


class PromptableMaskDecoder(MaskDecoder):
    """``segment_anything``'s MaskDecoder for batches of one prompt per image.

    Unlike SAM's decoder it does not repeat the image embedding per prompt, it can carry extra
    learnable tokens (the UnSeg noise tokens) through the two-way transformer, and it can drop the
    IoU head (the surrogate has one mask output and no IoU head). Parameter names are SAM's, so
    official checkpoints load into it.
    """

    def __init__(self, config: SamConfig, num_multimask_outputs: int = 3, with_iou_head: bool = True) -> None:
        super().__init__(
            transformer_dim=config.prompt_dim,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_heads,
            ),
            num_multimask_outputs=num_multimask_outputs,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        )
        if not with_iou_head:
            del self.iou_prediction_head
            del self.iou_token
        self.with_iou_head = with_iou_head

    def forward(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_embeddings: torch.Tensor,
        dense_embeddings: torch.Tensor,
        extra_tokens: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """Decode one prompt per image; ``extra_tokens`` is ``K x D`` or None."""
        batch = sparse_embeddings.shape[0]
        token_list = [self.mask_tokens.weight]
        if self.with_iou_head:
            token_list.insert(0, self.iou_token.weight)
        num_extra = 0 if extra_tokens is None else extra_tokens.shape[0]
        if extra_tokens is not None:
            token_list.append(extra_tokens)
        output_tokens = torch.cat(token_list, dim=0).unsqueeze(0).expand(batch, -1, -1)
        tokens = torch.cat([output_tokens, sparse_embeddings], dim=1)

        src = image_embeddings + dense_embeddings
        pos_src = image_pe.expand(batch, -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)

        first_mask = 1 if self.with_iou_head else 0
        mask_tokens_out = hs[:, first_mask : first_mask + self.num_mask_tokens, :]
        extra_out = hs[:, first_mask + self.num_mask_tokens : first_mask + self.num_mask_tokens + num_extra, :]

        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        iou_pred = self.iou_prediction_head(hs[:, 0, :]) if self.with_iou_head else None
        return DecoderOutput(masks=masks, iou_pred=iou_pred, extra_tokens=extra_out, upscaled=upscaled)
