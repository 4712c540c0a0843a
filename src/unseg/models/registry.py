"""Named presets of the generator and surrogate, and builders that use them (cf. SAM's build_sam)."""

from __future__ import annotations

from dataclasses import replace

from unseg.models.config import GeneratorConfig, SamConfig, SurrogateConfig
from unseg.models.generator import NoiseGenerator
from unseg.models.surrogate import InteractiveSegmenter

# SAM ViT-B, as in segment_anything.build_sam_vit_b (1024 px, patch 16, 12 blocks).
SAM_VIT_B = SamConfig(
    img_size=1024,
    patch_size=16,
    encoder_dim=768,
    encoder_depth=12,
    encoder_heads=12,
    global_attn_indexes=(2, 5, 8, 11),
    window_size=14,
    prompt_dim=256,
    decoder_depth=2,
    decoder_mlp_dim=2048,
    decoder_heads=8,
    mask_in_chans=16,
)

# CPU default: ~4M-parameter ViT (dim 192, depth 6), 256 px input. Noise map at 32 px (half
# the decoder's 64), upsampled smoothly: no fine texture that a downscaling victim never sees;
# high-pass at 1/8 of the side: no flat colour shifts (benchmarks/results/noise_structure_probe_*.md).
SMALL = GeneratorConfig(noise_upscale=-1, noise_highpass=1 / 8)
# v8 (shipped 2026-12-02 to 12-04): "small" plus 16 noise codes selected by each object's key (class id /
# instance index; key 0 = the null code, no noise): 4 x 4-cell tiles of cells 1/96 of the side,
# i.e. textures of period 1/24 of the side (benchmarks/results/keyed_codes_probe.md: 1/24 beat
# 1/16 and 1/32 on a 128-px CamVid victim). Later keyed presets change only its code family.
KEYED = replace(SMALL, num_codes=16, code_cells=96, code_tile=4)

GENERATOR_PRESETS: dict[str, GeneratorConfig] = {
    "small": SMALL,
    "keyed": KEYED,
    # v9 (shipped 2026-12-04 to 12-06): "keyed" with flat codes — key 1 (binary masks, boxes, points) keeps its
    # texture, keys >= 2 get a flat colour each, which multi-class victims, CNN and transformer,
    # decode into classes (benchmarks/results/keyed_codes_probe.md, 2026-12-04)
    "keyed_flat": replace(KEYED, code_family="flat"),
    # v10 (shipped 2026-12-06, stops 35-36): "keyed_flat" with key 1 a magenta/green checker instead of
    # white stripes, a texture in both directions (benchmarks/results/binary_view_probe_camvid.md:
    # CamVid road / car as one-class sets; benchmarks/results/evaluate_protection_grid_cpu_v10/)
    "keyed_checker": replace(KEYED, code_family="checker"),
    # CPU default since v11 (2026-12-06): "keyed_checker" with the checker in yellow/blue, which a victim
    # that turns the images gray still sees (luma 0.77 of the budget against magenta/green's 0.17;
    # benchmarks/results/gray_probe.md, benchmarks/results/evaluate_protection_grid_cpu_v11/)
    "keyed_luma_checker": replace(KEYED, code_family="luma_checker"),
    # "small" with a 64 px noise map and no high-pass: per-pixel detail for the adversarial objective
    # (loss.objective = "adversarial"), whose sample-wise counterpart is free per pixel
    # (benchmarks/results/adversarial_poison_probe.md).
    "fine": GeneratorConfig(noise_upscale=0, noise_highpass=0.0),
    # Paper layout: SAM ViT-B at 1024 px, noise at 256 px (the UnSeg paper, arXiv:2410.09909); frozen SAM part loads
    # from an official checkpoint file given by the user.
    "vit_b": GeneratorConfig(sam=SAM_VIT_B, noise_upscale=0),
}

SURROGATE_PRESETS: dict[str, SurrogateConfig] = {
    "small": SurrogateConfig(),
    # "small" at 256 px with 16-px patches: the same 16 x 16 token grid, so about the same cost, but it sees
    # 256-px inputs (the `sam@small_256` victim beside 256-px semantic victims; "small" letterboxes them to 128).
    "small_256": SurrogateConfig(sam=replace(SurrogateConfig().sam, img_size=256, patch_size=16)),
    # Paper: same layout at 512 px input.
    "vit_b": SurrogateConfig(
        sam=SamConfig(**{**SAM_VIT_B.__dict__, "img_size": 512, "window_size": 14}),
    ),
}


def _lookup(presets: dict, name: str, what: str):
    if name not in presets:
        raise KeyError(f"unknown {what} preset {name!r}; choose one of {sorted(presets)}")
    return presets[name]


def generator_config(name: str) -> GeneratorConfig:
    """The generator preset called ``name``."""
    return _lookup(GENERATOR_PRESETS, name, "generator")


def surrogate_config(name: str) -> SurrogateConfig:
    """The surrogate preset called ``name``."""
    return _lookup(SURROGATE_PRESETS, name, "surrogate")


def build_generator(config: GeneratorConfig | str) -> NoiseGenerator:
    """Randomly initialised generator from a config or preset name."""
    return NoiseGenerator(generator_config(config) if isinstance(config, str) else config)


def build_surrogate(config: SurrogateConfig | str) -> InteractiveSegmenter:
    """Randomly initialised surrogate from a config or preset name."""
    return InteractiveSegmenter(surrogate_config(config) if isinstance(config, str) else config)
