"""One process of the two-process DDP test (``test_ddp.py``), started with torchrun's variables.

Usage: ``python ddp_worker.py STATES_DIR train [unseg train options...]``. Runs ``unseg train``
unchanged, then writes this process's final generator and surrogate(s) weights to
``STATES_DIR/rank<RANK>.safetensors`` so that the test can compare the replicas (the program
itself only writes files on rank 0).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from unseg.cli.main import app
from unseg.training import runner

TRAINERS: list[runner.BilevelTrainer] = []


class RecordingTrainer(runner.BilevelTrainer):
    """The normal trainer, remembered so that its networks can be saved after the run."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        TRAINERS.append(self)


def main(states: Path, args: list[str]) -> None:
    """Train with ``args`` and save this rank's weights under ``states``."""
    torch.set_num_threads(1)
    runner.BilevelTrainer = RecordingTrainer
    app(args, standalone_mode=False)
    trainer = TRAINERS[-1]
    tensors = {}
    networks = [("generator", trainer.generator_module), ("surrogate", trainer.surrogate_module),
                ("semantic", trainer.semantic_module)]
    for prefix, module in [(name, module) for name, module in networks if module is not None]:
        tensors.update({f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
    states.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(states / f"rank{os.environ['RANK']}.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
