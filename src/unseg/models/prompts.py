"""Batched prompts (points, boxes, masks) and their embedding by SAM's prompt encoder.

All sparse prompts travel as labelled points so that one batch can mix prompt types:
label 1 = positive point, 0 = negative point, 2 / 3 = top-left / bottom-right box corner,
-1 = padding (SAM's "not a point"). A box is therefore two points, exactly as SAM embeds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from segment_anything.modeling import PromptEncoder

POSITIVE, NEGATIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT, PADDING = 1, 0, 2, 3, -1


@dataclass
class PromptBatch:
    """Prompts for a batch of B model inputs, in model-input pixel coordinates.

    Attributes:
        coords: ``B x N x 2`` float (x, y) points and box corners; N may be 0.
        labels: ``B x N`` long labels (see module docstring).
        masks: ``B x 1 x S x S`` float mask prompts in [0, 1] (S = model input size), or None.
        has_mask: ``B`` bool, which samples carry a mask prompt (others get SAM's no-mask embedding).
    """

    coords: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None
    has_mask: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.coords.shape[0]

    def to(self, device: torch.device | str) -> "PromptBatch":
        """Copy of the batch on ``device``."""
        return PromptBatch(
            coords=self.coords.to(device),
            labels=self.labels.to(device),
            masks=None if self.masks is None else self.masks.to(device),
            has_mask=None if self.has_mask is None else self.has_mask.to(device),
        )


def boxes_to_masks(corners: torch.Tensor, size: int, side: int) -> torch.Tensor:
    """``N x 1 x side x side`` filled boxes from ``N x 2 x 2`` corners ((x0, y0), (x1, y1)) given in
    the coordinates of a ``size`` x ``size`` input: a pixel is in when its centre is."""
    centres = (torch.arange(side, dtype=torch.float32, device=corners.device) + 0.5) * size / side
    inside_x = (centres[None] >= corners[:, 0, 0:1]) & (centres[None] < corners[:, 1, 0:1])
    inside_y = (centres[None] >= corners[:, 0, 1:2]) & (centres[None] < corners[:, 1, 1:2])
    return (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]


def embed_prompts(encoder: PromptEncoder, prompts: PromptBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse (``B x (N+1) x D``) and dense (``B x D x E x E``) embeddings of ``prompts``.

    Uses the prompt encoder's own parameters (random positional encoding, point/corner
    embeddings, mask downscaling, no-mask embedding) so official SAM weights load unchanged.
    One padding token is always appended, as SAM does for point-only prompts.
    """
    batch = prompts.batch_size
    device = encoder.no_mask_embed.weight.device
    pad_coord = torch.zeros(batch, 1, 2, device=device)
    pad_label = torch.full((batch, 1), PADDING, dtype=torch.long, device=device)
    coords = torch.cat([prompts.coords.to(device).float(), pad_coord], dim=1) + 0.5
    labels = torch.cat([prompts.labels.to(device).long(), pad_label], dim=1)
    sparse = encoder.pe_layer.forward_with_coords(coords, encoder.input_image_size)
    not_a_point = (labels == PADDING).unsqueeze(-1)
    sparse = torch.where(not_a_point, encoder.not_a_point_embed.weight.view(1, 1, -1), sparse)
    for label in (NEGATIVE, POSITIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT):
        sparse = sparse + (labels == label).unsqueeze(-1) * encoder.point_embeddings[label].weight.view(1, 1, -1)

    grid = encoder.image_embedding_size
    no_mask = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, grid[0], grid[1])
    if prompts.masks is None:
        return sparse, no_mask
    masks = torch.nn.functional.interpolate(
        prompts.masks.to(device).float(), size=encoder.mask_input_size, mode="bilinear", align_corners=False
    )
    dense = encoder.mask_downscaling(masks)
    has_mask = prompts.has_mask if prompts.has_mask is not None else torch.ones(batch, dtype=torch.bool)
    dense = torch.where(has_mask.to(device).view(-1, 1, 1, 1), dense, no_mask)
    return sparse, dense


def build_prompt_encoder(prompt_dim: int, embedding_size: int, img_size: int, mask_in_chans: int) -> PromptEncoder:
    """SAM prompt encoder for a square ``img_size`` input with an ``embedding_size`` grid."""
    return PromptEncoder(
        embed_dim=prompt_dim,
        image_embedding_size=(embedding_size, embedding_size),
        input_image_size=(img_size, img_size),
        mask_in_chans=mask_in_chans,
    )
