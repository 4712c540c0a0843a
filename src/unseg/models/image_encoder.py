"""SAM ViT image encoder that also exposes its early feature map."""

from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT
from torch import nn

from unseg.models.config import SamConfig

# ImageNet statistics in [0, 1] units; SAM normalises with the same numbers in [0, 255] units.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


class ImageEncoder(ImageEncoderViT):
    """``segment_anything``'s ViT encoder returning (image embedding, early feature).

    The early feature is the output of the first global-attention block (as in HQ-SAM and the
    UnSeg noise head), channels first: ``B x encoder_dim x E x E``.
    """

    def __init__(self, config: SamConfig) -> None:
        super().__init__(
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=config.encoder_dim,
            depth=config.encoder_depth,
            num_heads=config.encoder_heads,
            mlp_ratio=4.0,
            out_chans=config.prompt_dim,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            global_attn_indexes=config.global_attn_indexes,
            window_size=config.window_size,
        )
        self.early_index = min(config.global_attn_indexes)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """Encode ``B x 3 x S x S`` images in [0, 1]; returns (embedding, early feature)."""
        x = self.patch_embed((images - self.pixel_mean) / self.pixel_std)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        early = x
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == self.early_index:
                early = x
        return self.neck(x.permute(0, 3, 1, 2)), early.permute(0, 3, 1, 2)
