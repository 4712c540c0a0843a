"""Protecting images: noise to pixels under the exact per-pixel budget, the ``Protector`` API and the
dataset pipeline."""

from unseg.budget import DEFAULT_BUDGET, Budget
from unseg.protection.budget import apply_budget, measured_linf
from unseg.protection.perturb import NativeNoise, epsilon_map, scale_noise
from unseg.protection.pipeline import ProtectSummary, protect_dataset
from unseg.data.prompts import ImagePrompt
from unseg.protection.protector import ProtectionResult, Protector

__all__ = [
    "Budget",
    "DEFAULT_BUDGET",
    "ImagePrompt",
    "NativeNoise",
    "ProtectSummary",
    "ProtectionResult",
    "Protector",
    "apply_budget",
    "epsilon_map",
    "measured_linf",
    "protect_dataset",
    "scale_noise",
]
