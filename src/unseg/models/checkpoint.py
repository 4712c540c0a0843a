"""Safetensors checkpoints with their config and metadata, and official SAM weight loading.

A checkpoint is a ``.safetensors`` file whose string metadata holds ``unseg_kind`` (generator or
surrogate), ``unseg_config`` (JSON of the config dataclass) and any further JSON-encoded entries
(ε used in training, training step, ...). Nothing is ever unpickled from a user's file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from unseg.data.images import atomic_write
from unseg.models.config import GeneratorConfig, SurrogateConfig, config_from_dict, config_to_dict
from unseg.models.generator import NoiseGenerator
from unseg.models.surrogate import InteractiveSegmenter
from unseg.models.trunk import SAM_PREFIXES

KINDS: dict[str, tuple[type, type]] = {
    "generator": (GeneratorConfig, NoiseGenerator),
    "surrogate": (SurrogateConfig, InteractiveSegmenter),
}


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or does not fit the model."""


def save_model(path: str | Path, model: nn.Module, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a generator or surrogate) with its config and ``metadata``, atomically."""
    kind = "generator" if isinstance(model, NoiseGenerator) else "surrogate"
    meta = {"unseg_kind": kind, "unseg_config": json.dumps(config_to_dict(model.config))}
    meta.update({key: json.dumps(value) for key, value in (metadata or {}).items()})
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    return save_tensors(path, tensors, meta)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Atomically write a safetensors file (see :func:`unseg.data.images.atomic_write`)."""
    path = Path(path)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Decoded metadata of an unseg checkpoint (``unseg_config`` as a dict)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from error
    if "unseg_kind" not in raw:
        raise CheckpointError(f"{path} is not an unseg checkpoint (no unseg_kind metadata)")
    meta: dict[str, Any] = {"unseg_kind": raw["unseg_kind"]}
    for key, value in raw.items():
        if key != "unseg_kind":
            meta[key] = json.loads(value)
    return meta


def load_model(path: str | Path, kind: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored at ``path``; returns (model, metadata).

    ``kind`` ("generator" or "surrogate"), when given, must match the file.
    """
    meta = read_metadata(path)
    if kind is not None and meta["unseg_kind"] != kind:
        raise CheckpointError(f"{path} holds a {meta['unseg_kind']}, not a {kind}")
    config_cls, model_cls = KINDS[meta["unseg_kind"]]
    model = model_cls(config_from_dict(config_cls, meta["unseg_config"]))
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit its recorded config: {error}") from error
    return model, meta


def load_sam_weights(generator: NoiseGenerator, path: str | Path) -> list[str]:
    """Load an official SAM checkpoint (``.pth`` or ``.safetensors``) into the SAM part; freeze it.

    ``.pth`` files are read with ``torch.load(weights_only=True)``, which refuses pickled code.
    Returns the names of SAM-part parameters the file did not provide (empty for a full match).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"SAM checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any parse failure is reported the same way
        raise CheckpointError(f"cannot read SAM checkpoint {path}: {error}") from error
    state = {k: v for k, v in state.items() if k.startswith(SAM_PREFIXES)}
    own = generator.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched or not state:
        raise CheckpointError(
            f"{path} does not fit generator preset (img_size {generator.config.sam.img_size}, "
            f"dim {generator.config.sam.encoder_dim}); mismatched: {mismatched[:5]}"
        )
    result = generator.load_state_dict(state, strict=False)
    generator.freeze_sam()
    return [k for k in result.missing_keys if k.startswith(SAM_PREFIXES)]
