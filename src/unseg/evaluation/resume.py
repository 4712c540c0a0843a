"""A victim's training state between epochs, so a killed ``unseg evaluate`` cell goes on where it stopped.

``results.json`` records a cell only when it ends, so a cell cut off by a kill, a session's end or a
10-minute GPU command used to start again from epoch 0 (a 60-epoch ``sam`` victim on CamVid takes
~80 CPU-minutes). Now, during training, the state after the last finished epoch is written to
``<out>/checkpoints/<cell>.safetensors`` at most once per ``every_s`` seconds: victim weights, Adam
moments, the learning-rate schedule, the run's data-order generator, the global RNGs, the metric
history and the training seconds so far. A rerun restores all of it, so the resumed cell ends with
the history and weights of a run that never stopped (exactly so on the CPU), and the file is deleted
once the cell is in ``results.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from unseg.models.checkpoint import CheckpointError, read_metadata, save_tensors
from unseg.resume import load_optimiser, module_tensors, optimiser_tensors, prefixed, restore_rng, rng_state

STATE_KIND = "victim_state"
CHECKPOINT_EVERY_S = 60.0  # a minute of training lost at most; saving costs well under a second


@dataclass
class EpochCheckpoint:
    """Where one victim's training state is kept between epochs.

    Attributes:
        path: the state file (written atomically).
        identity: what the state belongs to (cell, schedule, training-set size; JSON-able); a state
            file with another identity is refused rather than silently continued.
        every_s: least seconds between two writes (0: after every epoch).
    """

    path: Path
    identity: dict[str, Any]
    every_s: float = CHECKPOINT_EVERY_S
    _written: float = field(default_factory=time.perf_counter, repr=False)

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler | None, generator: torch.Generator) -> tuple[list[dict], float]:
        """Load a saved state into the given objects: (metric history so far, training seconds so far);
        ``([], 0.0)`` and nothing changed when no state file exists."""
        if not self.path.is_file():
            return [], 0.0
        meta = read_metadata(self.path)
        if meta["unseg_kind"] != STATE_KIND:
            raise CheckpointError(f"{self.path} is not a victim training state")
        if meta["identity"] != json.loads(json.dumps(self.identity)):
            raise CheckpointError(f"{self.path} belongs to another cell or schedule ({meta['identity']}); "
                                  "delete it to start that cell again")
        if (scheduler is None) != (meta["scheduler"] is None):
            raise CheckpointError(f"{self.path} was saved {'without' if meta['scheduler'] is None else 'with'} a "
                                  "learning-rate schedule; this victim trains the other way")
        tensors = load_file(str(self.path))
        model.load_state_dict(prefixed("model", tensors))
        load_optimiser("optimizer", optimizer, tensors, meta["param_groups"])
        if scheduler is not None:
            scheduler.load_state_dict(meta["scheduler"])
        generator.set_state(tensors["data_order"])
        restore_rng(tensors, meta["rng"])
        return meta["history"], meta["seconds"]

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler | None, generator: torch.Generator,
             history: list[dict], seconds: float) -> bool:
        """Write the state after ``len(history)`` epochs unless the last write is under ``every_s`` old;
        True when written."""
        if time.perf_counter() - self._written < self.every_s:
            return False
        tensors = module_tensors("model", model)
        moments, groups = optimiser_tensors("optimizer", optimizer)
        rng_tensors, rng_scalars = rng_state()
        tensors.update(moments)
        tensors.update(rng_tensors)
        tensors["data_order"] = generator.get_state()
        meta = {"unseg_kind": STATE_KIND}
        meta.update({k: json.dumps(v) for k, v in {
            "identity": self.identity, "param_groups": groups, "rng": rng_scalars, "history": history,
            "seconds": seconds, "scheduler": None if scheduler is None else scheduler.state_dict()}.items()})
        save_tensors(self.path, tensors, meta)
        self._written = time.perf_counter()
        return True

    def remove(self) -> None:
        """Delete the state file (the cell is finished), and its folder once empty."""
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:
            pass
