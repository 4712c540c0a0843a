"""Typed configurations of the SAM-layout networks used by unseg."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class SamConfig:
    """Shape of a Segment-Anything-layout network (image encoder, prompt encoder, mask decoder).

    Attributes mirror ``segment_anything.build_sam``: the ViT image encoder works on square
    ``img_size`` inputs cut into ``patch_size`` patches; ``prompt_dim`` is the width of the prompt
    encoder, the encoder neck and the two-way transformer of the mask decoder.
    """

    img_size: int = 256
    patch_size: int = 16
    encoder_dim: int = 192
    encoder_depth: int = 6
    encoder_heads: int = 3
    global_attn_indexes: tuple[int, ...] = (1, 3, 5)
    window_size: int = 8
    prompt_dim: int = 128
    decoder_depth: int = 2
    decoder_mlp_dim: int = 512
    decoder_heads: int = 8
    mask_in_chans: int = 16

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid."""
        return self.img_size // self.patch_size

    @property
    def mask_size(self) -> int:
        """Side of the mask logits the decoder predicts (4x the embedding grid)."""
        return 4 * self.embedding_size

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.encoder_dim % self.encoder_heads:
            raise ValueError("encoder_dim must be divisible by encoder_heads")
        if not self.global_attn_indexes:
            raise ValueError("global_attn_indexes needs at least one block (the early feature comes from the first)")
        if max(self.global_attn_indexes) >= self.encoder_depth:
            raise ValueError("global_attn_indexes refer to blocks beyond encoder_depth")


@dataclass(frozen=True)
class GeneratorConfig:
    """The UnSeg noise generator: a SAM network plus the noise head (the UnSeg paper, arXiv:2410.09909).

    ``noise_upscale`` extra 2x transposed-conv stages raise the noise resolution above the
    decoder's 4x mask resolution (0 keeps the paper's 256 px noise for a 1024 px input); a
    negative value halves it that many times (average pooling) for coarser noise.
    ``noise_highpass`` > 0 removes, before the tanh, the local mean over that fraction of the
    noise map's side: textures finer than the window instead of flat colour shifts (0 = off, as
    in the paper). Coarse textures are a shortcut victims learn far more readily than a colour
    shift (``benchmarks/results/noise_structure_probe_*.md``).

    ``num_codes`` > 0 makes the noise *keyed*: each object's prompt comes with an integer key (its
    class id or instance index, see :func:`code_index`) that selects one of ``num_codes`` learned
    noise codes — a ``3 x code_tile x code_tile`` tile of cells, each cell ``1 / code_cells`` of
    the input side, repeated over the image and added to the head's pre-tanh map — so adjacent
    objects of different keys get different textures and a multi-class victim can tell them apart.
    Code 0 is the *null* code: objects keyed 0 (class 0, usually background) get no noise at all,
    so a victim learns "no code -> class 0" and on clean images predicts class 0 everywhere.
    Keyed noise maps are ``2 * code_cells`` px (two noise pixels per cell). A coded object's
    pre-tanh map is ``code + code_head_mix * tanh(head map)``: the head's texture enters bounded, so
    while a code's cells exceed ``code_head_mix`` in size the code sets the sign of every pixel of
    its objects and the head only shapes the amplitude and the uncoded background (in the keyed
    training run of ``src/unseg/weights/README.md`` the head's texture grew over the codes and the
    victim learned far less from them).

    ``code_family`` chooses the designed codes the parameters start from
    (:func:`unseg.models.generator.initial_codes`): ``"texture"`` (v8: a texture in a sign-colour
    per key), ``"flat"`` (v9: the binary key's texture, then a flat colour per key, which
    multi-class victims, CNN and transformer, decode into classes;
    ``benchmarks/results/keyed_codes_probe.md``), ``"checker"`` (v10: ``"flat"`` with a checkerboard
    as the binary key's texture; ``benchmarks/results/binary_view_probe_camvid.md``) or
    ``"luma_checker"`` (that checkerboard in yellow/blue, which keeps 0.77 of its amplitude in luma:
    ``benchmarks/results/gray_probe.md``).
    """

    sam: SamConfig = field(default_factory=SamConfig)
    num_noise_tokens: int = 3
    noise_dim: int = 32
    noise_upscale: int = 1
    noise_highpass: float = 0.0
    num_codes: int = 0
    code_cells: int = 48
    code_tile: int = 2
    code_head_mix: float = 1.0
    code_family: str = "texture"

    @property
    def flat_codes(self) -> bool:
        """Whether the codes carry flat (constant) channels that protection must keep: saturation
        then leaves the channel means on the protected region (the prompt's code and each object's)
        in place and removes them only off it."""
        return self.keyed and self.code_family != "texture"

    @property
    def highpass_window(self) -> int:
        """Odd local-mean window in noise pixels for ``noise_highpass`` (0 when off)."""
        if self.noise_highpass <= 0:
            return 0
        return int(round(self.noise_highpass * self.head_size)) // 2 * 2 + 1

    @property
    def head_size(self) -> int:
        """Side of the noise head's own map (before any keyed codes are added)."""
        return int(self.sam.mask_size * 2.0**self.noise_upscale)

    @property
    def noise_size(self) -> int:
        """Side of the square noise map the generator outputs."""
        return 2 * self.code_cells if self.keyed else self.head_size

    @property
    def keyed(self) -> bool:
        """Whether prompts carry keys that select learned noise codes."""
        return self.num_codes > 0

    def __post_init__(self) -> None:
        if self.num_codes == 1 or self.num_codes < 0:
            raise ValueError(f"num_codes must be 0 (unkeyed) or at least 2 (null code + one), got {self.num_codes}")
        if self.code_family not in CODE_FAMILIES:
            raise ValueError(f"unknown code_family {self.code_family!r}; choose one of {CODE_FAMILIES}")
        if self.keyed and (self.code_cells < 1 or self.code_tile < 1 or self.code_cells % self.code_tile):
            raise ValueError(f"code_cells ({self.code_cells}) must be a positive multiple of code_tile ({self.code_tile})")


NULL_KEY = 0
CODE_FAMILIES = ("texture", "flat", "checker", "luma_checker")


def code_index(key: int, num_codes: int) -> int:
    """The code an object key selects: key 0 (class 0 / background) -> the null code 0; any other
    key k -> ``1 + (k - 1) mod (num_codes - 1)`` (keys beyond the codes wrap around; negative keys
    are refused)."""
    if key < 0:
        raise ValueError(f"object keys must be >= 0, got {key}")
    return 0 if key == NULL_KEY else 1 + (key - 1) % (num_codes - 1)


@dataclass(frozen=True)
class SurrogateConfig:
    """The surrogate interactive segmenter: a SAM network with one mask output and no IoU head."""

    sam: SamConfig = field(default_factory=lambda: SamConfig(img_size=128, patch_size=8, encoder_depth=4,
                                                             global_attn_indexes=(1, 3)))


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict form of a (nested) config dataclass, for JSON metadata."""
    return asdict(config)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from :func:`config_to_dict` output; unknown keys fail."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name == "sam" and isinstance(value, dict):
            value = config_from_dict(SamConfig, value)
        elif name == "global_attn_indexes":
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)
