"""The promptable UnSeg noise generator (SAM layout + noise head)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unseg.models.config import CODE_FAMILIES, GeneratorConfig
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
            self.noise_codes = nn.Parameter(CODE_SCALE * initial_codes(config.num_codes, config.code_tile,
                                                                       config.code_family))

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
        # coded: code + a bounded share of the head's texture (so, with |code| > code_head_mix, the
        # code sets every sign); uncoded: the head's texture alone
        coded_logits = self.code_maps(codes.clamp(min=0)) + self.config.code_head_mix * torch.tanh(logits)
        logits = torch.where(coded.view(-1, 1, 1, 1), coded_logits, logits)
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


CODE_COLOURS = ((1.0, 1.0, 1.0), (1.0, -1.0, 1.0), (1.0, 1.0, -1.0), (-1.0, 1.0, 1.0))


def code_textures(tile: int) -> list[torch.Tensor]:
    """The ±1 ``tile x tile`` textures of period one tile: checkerboard, horizontal, vertical,
    diagonal and anti-diagonal stripes (squares / stripes of half a tile); the diagonals need a
    tile of at least 4 cells."""
    y, x = torch.meshgrid(torch.arange(tile), torch.arange(tile), indexing="ij")
    half = max(1, tile // 2)
    index = [x // half + y // half, y // half, x // half]
    if tile >= 4:
        index += [(x + y) % tile // half, (x - y) % tile // half]
    return [1.0 - 2.0 * (i % 2).float() for i in index]


def texture_code(k: int, tile: int) -> torch.Tensor:
    """``3 x tile x tile`` ±1 code ``k`` of the ``"texture"`` family: texture ``k mod T`` of
    :func:`code_textures` (T textures) in colour ``k // T`` of ``CODE_COLOURS``."""
    textures = code_textures(tile)
    return torch.tensor(CODE_COLOURS[k // len(textures)]).view(3, 1, 1) * textures[k % len(textures)]


def flat_code(k: int, tile: int) -> torch.Tensor:
    """``3 x tile x tile`` flat ±1 code ``k`` of the ``"flat"`` family: ``±CODE_COLOURS[(k // 2) mod 4]``,
    + for odd ``k`` (neighbouring keys get different corners of the colour cube)."""
    sign = 1.0 if k % 2 else -1.0
    return sign * torch.tensor(CODE_COLOURS[(k // 2) % len(CODE_COLOURS)]).view(3, 1, 1).expand(3, tile, tile)


CHECKER_COLOURS = {"checker": 1, "luma_checker": 2}  # code family -> CODE_COLOURS index of key 1's checkerboard


def initial_codes(num_codes: int, tile: int, family: str = "texture") -> torch.Tensor:
    """``num_codes x 3 x tile x tile`` ±1 codes (code 0, the null code, is zeros).

    ``"texture"`` (v8): code ``k`` >= 1 is :func:`texture_code` ``k``, so neighbouring keys differ
    in orientation first, then in colour. The best hand-made *texture* family of ``benchmarks/keyed_codes_probe.py``
    (``keyed``: period 1/24 of the image side, class ``k`` -> the same texture and colour as here;
    results in ``benchmarks/results/keyed_codes_probe.md``, where the same textures shifted by one
    key, class ``k`` -> texture ``(k - 1) mod T``, protected a CamVid UNet much less: 28.5 vs 19.4
    mIoU); distinct textures and colours stay distinct after any shift, so a translation-invariant
    victim can tell them apart.

    ``"flat"`` (v9): code 1 — the key of a binary mask, a box or points — is the texture family's
    code 1 (a lone object against background: CNN victims learn a texture, not a colour shift, as
    that shortcut); every other code is :func:`flat_code` ``k``, a flat colour (8 colours; keys 2
    and 10 share one). The probe's ``flat`` family: on CamVid both a CNN and a transformer victim
    decode flat colours into classes, which they do not do with textures.

    ``"checker"`` (v10): ``"flat"`` with code 1 the magenta/green checkerboard (:func:`texture_code`
    ``T``: texture 0 in colour 1) instead of white horizontal stripes. Stripes along a horizontal
    object (a road) are nearly a flat shift on it, which CNN victims do not take as a shortcut; a
    checker is a texture in both directions at every object shape
    (``benchmarks/results/binary_view_probe_camvid.md``).

    ``"luma_checker"``: ``"checker"`` with the checkerboard in colour 2, yellow/blue (+, +, −)
    (:func:`texture_code` ``2 T``). Magenta/green has a luma of −0.174 (ITU-R 601), so a victim that
    turns the images gray sees ±1.4 of 8 levels and learns the polyps (Kvasir-SEG UNet 40.4 IoU, clean
    gray 42.1); yellow/blue keeps ±6.2 (0.2 IoU) and protects colour images as well (0.0)
    (``benchmarks/results/gray_probe.md``).
    """
    if family not in CODE_FAMILIES:
        raise ValueError(f"unknown code family {family!r}; choose one of {CODE_FAMILIES}")
    count = len(code_textures(tile)) * len(CODE_COLOURS)
    if num_codes > count:
        raise ValueError(f"at most {count} codes for tile {tile}, asked for {num_codes}")
    codes = [torch.zeros(3, tile, tile)]
    for k in range(1, num_codes):
        if family == "texture":
            codes.append(texture_code(k, tile))
        elif k == 1:  # the binary key: white stripes ("flat", texture 1) or a checkerboard (texture 0) in colour c
            checker = family in CHECKER_COLOURS
            codes.append(texture_code(CHECKER_COLOURS[family] * len(code_textures(tile)) if checker else 1, tile))
        else:
            codes.append(flat_code(k, tile))
    return torch.stack(codes)
