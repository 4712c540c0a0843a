"""The UnSeg noise head: noise tokens read a fused early/final/decoder feature (HQ-SAM style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MLP
from torch import nn


def _upsample4x(in_chans: int, out_chans: int) -> nn.Sequential:
    """Two 2x transposed convolutions (the UnSeg paper, arXiv:2410.09909: early/final features upsampled 4x to 32 channels)."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2),
        LayerNorm2d(out_chans),
        nn.GELU(),
        nn.ConvTranspose2d(out_chans, out_chans, kernel_size=2, stride=2),
    )


def _rescale(channels: int, stages: int) -> nn.Module:
    """``stages`` > 0: that many 2x transposed-conv stages; < 0: one 2^-stages average pool; 0: identity."""
    if stages < 0:
        return nn.AvgPool2d(2**-stages)
    return nn.Sequential(
        *[
            nn.Sequential(nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2), LayerNorm2d(channels), nn.GELU())
            for _ in range(stages)
        ]
    )


class NoiseHead(nn.Module):
    """Turns noise-token outputs and image features into a noise map in [-1, 1].

    fused = up4(early ViT feature) + up4(image embedding) + conv(decoder upscaled feature);
    ``extra_upscale`` > 0 extra 2x stages raise its resolution, < 0 halves it by average pooling
    that many times (coarser noise: survives downscaling); each noise token gives, through its own MLP,
    hypernetwork weights over the fused channels; noise = tanh(weights . fused), one channel per token.

    ``highpass_window`` > 1 subtracts the local mean over that many noise pixels from the pre-tanh
    map: a flat pre-activation gives zero noise, so the noise is a texture (an uneven texture
    through the tanh can still carry a mean colour shift).
    """

    def __init__(
        self,
        encoder_dim: int,
        prompt_dim: int,
        num_tokens: int = 3,
        noise_dim: int = 32,
        extra_upscale: int = 0,
        highpass_window: int = 0,
    ) -> None:
        super().__init__()
        self.highpass_window = highpass_window
        self.early_feature = _upsample4x(encoder_dim, noise_dim)
        self.final_feature = _upsample4x(prompt_dim, noise_dim)
        self.decoder_feature = nn.Sequential(
            nn.Conv2d(prompt_dim // 8, noise_dim, kernel_size=3, padding=1),
            LayerNorm2d(noise_dim),
            nn.GELU(),
            nn.Conv2d(noise_dim, noise_dim, kernel_size=3, padding=1),
        )
        self.upscale = _rescale(noise_dim, extra_upscale)
        self.token_mlps = nn.ModuleList(MLP(prompt_dim, prompt_dim, noise_dim, 3) for _ in range(num_tokens))

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        """The inputs of :meth:`logits`; returns ``B x K x H x W`` noise in [-1, 1] (its tanh). The
        generator calls :meth:`logits` itself: a keyed generator adds its codes before the tanh."""
        return torch.tanh(self.logits(*features))

    def logits(
        self,
        token_out: torch.Tensor,
        early_feature: torch.Tensor,
        image_embedding: torch.Tensor,
        decoder_feature: torch.Tensor,
    ) -> torch.Tensor:
        """``token_out``: ``B x K x D``; returns the pre-tanh ``B x K x H x W`` map (local mean
        removed when ``highpass_window`` > 1)."""
        fused = (
            self.early_feature(early_feature)
            + self.final_feature(image_embedding)
            + self.decoder_feature(decoder_feature)
        )
        fused = self.upscale(fused)
        weights = torch.stack([mlp(token_out[:, i]) for i, mlp in enumerate(self.token_mlps)], dim=1)
        b, c, h, w = fused.shape
        return self.highpass((weights @ fused.view(b, c, h * w)).view(b, -1, h, w))

    def highpass(self, logits: torch.Tensor) -> torch.Tensor:
        """Pre-activation map minus its local mean when ``highpass_window`` > 1 (else unchanged)."""
        if self.highpass_window > 1:
            return logits - local_mean(logits, self.highpass_window)
        return logits


def local_mean(maps: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over a ``window`` x ``window`` neighbourhood (odd ``window``; borders average what exists)."""
    return F.avg_pool2d(maps, window, stride=1, padding=window // 2, count_include_pad=False)
