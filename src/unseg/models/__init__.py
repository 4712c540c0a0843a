"""Networks: the UnSeg noise generator, the surrogate segmenter, presets and checkpoints."""

from unseg.models.checkpoint import CheckpointError, load_model, load_sam_weights, read_metadata, save_model
from unseg.models.config import GeneratorConfig, SamConfig, SurrogateConfig
from unseg.models.generator import GeneratorOutput, ImageFeatures, NoiseGenerator
from unseg.models.prompts import PromptBatch
from unseg.models.registry import (
    GENERATOR_PRESETS,
    SURROGATE_PRESETS,
    build_generator,
    build_surrogate,
    generator_config,
    surrogate_config,
)
from unseg.models.surrogate import InteractiveSegmenter

__all__ = [
    "CheckpointError",
    "GENERATOR_PRESETS",
    "GeneratorConfig",
    "GeneratorOutput",
    "ImageFeatures",
    "InteractiveSegmenter",
    "NoiseGenerator",
    "PromptBatch",
    "SURROGATE_PRESETS",
    "SamConfig",
    "SurrogateConfig",
    "build_generator",
    "build_surrogate",
    "generator_config",
    "load_model",
    "load_sam_weights",
    "read_metadata",
    "save_model",
    "surrogate_config",
]
