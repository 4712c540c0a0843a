"""Baseline noise makers by name: ``pattern``, ``random``, ``sign``, ``synper``, ``ar``, ``cuda``, ``em``."""

from __future__ import annotations

from typing import Callable

from unseg.budget import DEFAULT_BUDGET, Budget
from unseg.baselines.autoregressive import AutoregressiveNoise
from unseg.baselines.cuda_filters import ConvolutionFilters
from unseg.baselines.error_minimizing import ErrorMinimizingNoise, MinMinSchedule
from unseg.baselines.pattern import CheckerPattern
from unseg.baselines.random_noise import RandomNoise
from unseg.baselines.sample import NoiseMaker
from unseg.baselines.synper import SynPer

BaselineFactory = Callable[..., NoiseMaker]


def _pattern(num_classes: int, seed: int, budget: Budget, device: str, **_: object) -> NoiseMaker:
    return CheckerPattern()


def _random(num_classes: int, seed: int, budget: Budget, device: str, **_: object) -> NoiseMaker:
    return RandomNoise(sign=False)


def _sign(num_classes: int, seed: int, budget: Budget, device: str, **_: object) -> NoiseMaker:
    return RandomNoise(sign=True)


def _synper(num_classes: int, seed: int, budget: Budget, device: str, **_: object) -> NoiseMaker:
    return SynPer(num_classes=num_classes, seed=seed)


def _ar(num_classes: int, seed: int, budget: Budget, device: str, **_: object) -> NoiseMaker:
    return AutoregressiveNoise(num_classes=num_classes, seed=seed)


def _cuda(num_classes: int, seed: int, budget: Budget, device: str, **_: object) -> NoiseMaker:
    return ConvolutionFilters(num_classes=num_classes, seed=seed, budget=budget)


def _em(num_classes: int, seed: int, budget: Budget, device: str, **options: object) -> NoiseMaker:
    schedule = options.get("em_schedule") or MinMinSchedule()
    return ErrorMinimizingNoise(num_classes, seed, budget, schedule, device)  # type: ignore[arg-type]


BASELINES: dict[str, BaselineFactory] = {
    "pattern": _pattern,
    "random": _random,
    "sign": _sign,
    "synper": _synper,
    "ar": _ar,
    "cuda": _cuda,
    "em": _em,
}


def build_baseline(
    name: str, num_classes: int, seed: int = 0, budget: Budget = DEFAULT_BUDGET, device: str = "cpu", **options: object
) -> NoiseMaker:
    """The noise maker called ``name`` for a dataset with ``num_classes`` classes."""
    if name not in BASELINES:
        raise KeyError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    return BASELINES[name](num_classes=num_classes, seed=seed, budget=budget, device=device, **options)
