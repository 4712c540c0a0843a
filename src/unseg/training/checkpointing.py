"""Full training state in one safetensors file (no pickle), for bit-exact resume.

Tensors: ``generator.*`` / ``surrogate.*`` / ``semantic.*`` (if any) weights,
``opt_generator.<param>.<key>`` / ``opt_surrogate.*`` / ``opt_semantic.*`` Adam moments and steps,
``scaler.*`` (fp16 loss scaler), ``rng.*`` (torch, cuda, numpy and python random states as integer
tensors). String metadata: the round, the
optimiser param groups and RNG scalars (JSON), the config (TOML text).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from unseg.models.checkpoint import CheckpointError, read_metadata, save_tensors
from unseg.resume import load_optimiser, module_tensors, optimiser_tensors, prefixed, restore_rng, rng_state
from unseg.training.bilevel import BilevelTrainer

STATE_KIND = "training_state"


def _networks(trainer: BilevelTrainer) -> list[tuple[str, torch.nn.Module, torch.optim.Optimizer]]:
    """(name, network, its optimiser) of every trained network."""
    networks = [("generator", trainer.generator_module, trainer.generator_optimiser),
                ("surrogate", trainer.surrogate_module, trainer.surrogate_optimiser)]
    if trainer.semantic_module is not None:
        networks.append(("semantic", trainer.semantic_module, trainer.semantic_optimiser))
    return networks


def save_training_state(path: str | Path, trainer: BilevelTrainer, round_index: int,
                        metadata: dict[str, Any] | None = None) -> Path:
    """Write everything needed to continue after ``round_index`` completed rounds."""
    tensors: dict[str, torch.Tensor] = {}
    groups: dict[str, list] = {}
    for prefix, model, optimiser in _networks(trainer):
        tensors.update(module_tensors(prefix, model))
        moments, groups[prefix] = optimiser_tensors(f"opt_{prefix}", optimiser)
        tensors.update(moments)
    for key, value in trainer.scaler.state_dict().items():
        tensors[f"scaler.{key}"] = torch.tensor(float(value), dtype=torch.float64)
    rng_tensors, rng_scalars = rng_state()
    tensors.update(rng_tensors)
    meta = {"unseg_kind": STATE_KIND, "round": json.dumps(round_index),
            "param_groups": json.dumps(groups),
            "rng": json.dumps(rng_scalars)}
    meta.update({k: json.dumps(v) for k, v in (metadata or {}).items()})
    return save_tensors(path, tensors, meta)


def read_training_metadata(path: str | Path) -> dict[str, Any]:
    """Decoded metadata of a training-state file; raises CheckpointError for other files."""
    if not Path(path).is_file():
        raise CheckpointError(f"training state not found: {path}")
    meta = read_metadata(path)
    if meta["unseg_kind"] != STATE_KIND:
        raise CheckpointError(f"{path} is not an unseg training state (use checkpoint_last.safetensors)")
    return meta


def load_training_state(path: str | Path, trainer: BilevelTrainer) -> dict[str, Any]:
    """Restore models, optimisers, loss scaler and RNG states; returns the metadata (with ``round``)."""
    meta = read_training_metadata(path)
    tensors = load_file(str(path))
    groups = meta["param_groups"]
    stored = set(groups)
    configured = {prefix for prefix, _, _ in _networks(trainer)}
    if stored != configured:
        raise CheckpointError(f"{path} holds the networks {sorted(stored)} but the config trains {sorted(configured)}"
                              " (model.semantic_surrogate differs?)")
    for prefix, model, optimiser in _networks(trainer):
        try:
            model.load_state_dict(prefixed(prefix, tensors))
        except RuntimeError as error:
            raise CheckpointError(f"{path}: {prefix} does not fit the configured preset: {error}") from error
        load_optimiser(f"opt_{prefix}", optimiser, tensors, groups[prefix])
    scaler_state = {k.split(".", 1)[1]: v.item() for k, v in tensors.items() if k.startswith("scaler.")}
    if scaler_state and trainer.scaler.is_enabled():
        scaler_state["_growth_tracker"] = int(scaler_state.get("_growth_tracker", 0))
        scaler_state["growth_interval"] = int(scaler_state.get("growth_interval", 2000))
        trainer.scaler.load_state_dict(scaler_state)
    restore_rng(tensors, meta["rng"])
    return meta
