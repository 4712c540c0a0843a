"""Protecting images: the exact per-pixel budget, the ``Protector`` API and the dataset pipeline."""

from unseg.protection.budget import (
    DEFAULT_EPSILON,
    DEFAULT_EPSILON_BG,
    apply_budget,
    budget_levels,
    epsilon_map,
    measured_linf,
    scale_noise,
)
from unseg.protection.pipeline import ProtectSummary, protect_dataset
from unseg.protection.protector import ImagePrompt, ProtectionResult, Protector

__all__ = [
    "DEFAULT_EPSILON",
    "DEFAULT_EPSILON_BG",
    "ImagePrompt",
    "ProtectSummary",
    "ProtectionResult",
    "Protector",
    "apply_budget",
    "budget_levels",
    "epsilon_map",
    "measured_linf",
    "protect_dataset",
    "scale_noise",
]
