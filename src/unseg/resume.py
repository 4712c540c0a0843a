"""Optimiser and random-number states as tensors plus JSON, for bit-exact resume from safetensors.

Two trainings resume after a kill: the generator's bilevel training
(:mod:`unseg.training.checkpointing`) and a victim inside ``unseg evaluate``
(:mod:`unseg.evaluation.resume`). Both keep their state in safetensors files (nothing unpickled),
so optimiser moments and RNG states are flattened here into named tensors and JSON scalars.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``<prefix>.<state key>`` CPU tensors of a module's state dict."""
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors :func:`module_tensors` wrote under ``prefix``, keyed as the module's state dict."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def optimiser_tensors(prefix: str, optimiser: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """``<prefix>.<param index>.<key>`` tensors of the optimiser's state, and its param groups (JSON-able)."""
    state = optimiser.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{prefix}.{index}.{key}"] = tensor.detach().cpu().contiguous()
    return tensors, state["param_groups"]


def load_optimiser(prefix: str, optimiser: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list) -> None:
    """Restore what :func:`optimiser_tensors` wrote under ``prefix``."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        if name.startswith(prefix + "."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    optimiser.load_state_dict({"state": state, "param_groups": groups})


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The global torch (and CUDA), numpy and python RNG states: ``rng.*`` tensors and JSON scalars."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = state
    name, keys, position, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss_next = random.getstate()
    tensors["rng.python"] = torch.tensor(internal, dtype=torch.int64)
    scalars = {"numpy": [name, int(position), int(has_gauss), float(cached)], "python": [version, gauss_next]}
    return tensors, scalars


def restore_rng(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    """Set the global RNGs to what :func:`rng_state` recorded (CUDA states only where a GPU is present)."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
    name, position, has_gauss, cached = scalars["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), position, has_gauss, cached))
    version, gauss_next = scalars["python"]
    random.setstate((version, tuple(int(v) for v in tensors["rng.python"].tolist()), gauss_next))
