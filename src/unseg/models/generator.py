"""The promptable UnSeg noise generator (SAM layout + noise head)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unseg.models.config import GeneratorConfig
from unseg.models.noise_head import NoiseHead
from unseg.models.prompts import PromptBatch
from unseg.models.trunk import SamTrunk

UNCODED = -1  # code index of a prompt without a key: the head's noise alone
CODE_SCALE = 3.0  # initial code amplitude in pre-tanh units: tanh(3) = 0.995, the code sets the sign


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
        if config.keyed:
            self.noise_codes = nn.Parameter(CODE_SCALE * initial_codes(config.num_codes, config.code_tile))

    def forward(self, images: torch.Tensor, prompts: PromptBatch, codes: torch.Tensor | None = None) -> GeneratorOutput:
        return self.decode(self.encode(images), prompts, codes)

    def encode(self, images: torch.Tensor) -> ImageFeatures:
        """The prompt-independent part: image embedding and early feature (reusable across prompts)."""
        embedding, early = self.embed_images(images)
        return ImageFeatures(embedding=embedding, early=early)

    def decode(self, features: ImageFeatures, prompts: PromptBatch, codes: torch.Tensor | None = None) -> GeneratorOutput:
        """Noise and mask logits for ``prompts`` (one per row of ``features``).

        ``codes``: ``B`` long code indices for a keyed generator (:func:`unseg.models.config.code_index`
        of each prompt's key; ``UNCODED`` (-1) = the head's noise alone; 0 = the null code, zero
        noise); None = all uncoded. An unkeyed generator refuses codes.
        """
        embedding, early = features.embedding, features.early
        decoded = self.decode_masks(embedding, prompts, extra_tokens=self.noise_tokens.weight)
        logits = self.noise_head.logits(decoded.extra_tokens, early, embedding, decoded.upscaled)
        if not self.config.keyed:
            if codes is not None and bool((codes != UNCODED).any()):
                raise ValueError("this generator has no noise codes (num_codes = 0): it takes no object keys")
            return GeneratorOutput(noise=torch.tanh(logits), mask_logits=decoded.masks[:, :1])
        size = self.config.noise_size
        logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
        if codes is None:
            codes = torch.full((logits.shape[0],), UNCODED, dtype=torch.long, device=logits.device)
        codes = codes.to(logits.device)
        coded = codes != UNCODED
        logits = logits + self.code_maps(codes.clamp(min=0)) * coded.view(-1, 1, 1, 1)
        noise = torch.tanh(logits) * (codes != 0).view(-1, 1, 1, 1).to(logits.dtype)
        return GeneratorOutput(noise=noise, mask_logits=decoded.masks[:, :1])

    def code_maps(self, codes: torch.Tensor) -> torch.Tensor:
        """``B x 3 x N x N`` pre-tanh code maps of ``B`` code indices: each ``3 x T x T`` code tiled
        over ``code_cells`` cells per side, two noise pixels per cell (N = ``noise_size``)."""
        config = self.config
        tiles = self.noise_codes[codes]  # B x 3 x T x T
        reps = config.code_cells // config.code_tile
        cells = tiles.repeat(1, 1, reps, reps)
        return cells.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)

    def freeze_sam(self) -> None:
        """Freeze the SAM part; only the noise tokens and noise head stay trainable."""
        for parameter in self.sam_parameters():
            parameter.requires_grad_(False)


def initial_codes(num_codes: int, tile: int) -> torch.Tensor:
    """``num_codes x 3 x tile x tile`` ±1 codes that differ even up to translation (code 0, the null
    code, is zeros).

    Each channel carries one of three period-2-cell textures — checkerboard, horizontal stripes,
    vertical stripes — with a sign; a code is one (texture, sign) per channel. Codes equal after a
    shift of the tile are one texture to a translation-invariant CNN, so only one of each such class
    is kept, and classes are taken round-robin over the 27 texture triples (distinct textures first).
    Measured (``benchmarks/results/keyed_codes_probe.md``): per-channel textures beat one texture
    in a colour, and textures of 1/24 of the side beat coarser ones.
    """
    y, x = torch.meshgrid(torch.arange(tile), torch.arange(tile), indexing="ij")
    textures = [((x + y) % 2), (y % 2), (x % 2)]  # checker, horizontal, vertical (period 2 cells)
    textures = [1.0 - 2.0 * t.float() for t in textures]
    by_triple: list[list[torch.Tensor]] = []
    for triple in itertools.product(range(3), repeat=3):
        seen: list[torch.Tensor] = []
        for signs in itertools.product((1.0, -1.0), repeat=3):
            code = torch.stack([sign * textures[t] for sign, t in zip(signs, triple)])
            shifts = [torch.roll(code, (dy, dx), dims=(1, 2)) for dy in range(2) for dx in range(2)]
            if not any(torch.equal(shifted, other) for shifted in shifts for other in seen):
                seen.append(code)
        by_triple.append(seen)
    by_triple.sort(key=lambda codes: -len({id(c) for c in codes}))
    order = [codes[i] for i in range(8) for codes in by_triple if i < len(codes)]
    if num_codes - 1 > len(order):
        raise ValueError(f"at most {len(order) + 1} distinct codes for tile {tile}, asked for {num_codes}")
    return torch.stack([torch.zeros(3, tile, tile), *order[: num_codes - 1]])
