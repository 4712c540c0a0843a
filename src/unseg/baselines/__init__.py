"""Baseline unlearnable-example noises (random, SynPer, AR, CUDA, error-minimising), all under the same budget."""

from unseg.baselines.registry import BASELINES, build_baseline
from unseg.baselines.sample import NoiseMaker, NoiseSample

__all__ = ["BASELINES", "NoiseMaker", "NoiseSample", "build_baseline"]
