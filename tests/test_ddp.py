"""Two-process DDP training on CPU (Gloo), started the way torchrun starts ``unseg train``."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from training_helpers import tiny_config
from unseg.training import runner
from unseg.training.checkpointing import read_training_metadata
from unseg.training.metrics_log import read_metrics

WORKER = Path(__file__).with_name("ddp_worker.py")
WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(states: Path, args: list[str], timeout: float = 120) -> list[tuple[int, str]]:
    """Run WORLD_SIZE worker processes with torchrun's environment; (return code, output) each."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": str(WORLD_SIZE), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    processes = [
        subprocess.Popen([sys.executable, str(WORKER), str(states), *args],
                         env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in range(WORLD_SIZE)
    ]
    try:
        return [(p.wait(timeout=timeout), p.stdout.read()) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_gloo_run_keeps_replicas_identical(tmp_path):
    config = tiny_config(tmp_path)  # writes the blob data and the tiny model files
    out = tmp_path / "ddp"
    overrides = {"model.generator": config.model.generator, "model.surrogate": config.model.surrogate,
                 "data.min_area": 0.01, "data.val_objects": 4, "schedule.rounds": 3, "schedule.batch_size": 3,
                 "schedule.surrogate_steps": 1, "schedule.generator_steps": 1, "schedule.eval_every": 3,
                 "schedule.checkpoint_every": 2, "output.progress": "false", "runtime.threads": 1}
    args = ["train", "--data", str(tmp_path / "data"), "--out", str(out), "--device", "cpu", "--seed", "5"]
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]

    results = _launch(tmp_path / "states", args)
    for rank, (code, output) in enumerate(results):
        assert code == 0, f"rank {rank}:\n{output}"
        assert "trained 3 rounds (6 steps)" in output

    rank0 = load_file(str(tmp_path / "states" / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "states" / "rank1.safetensors"))
    assert any(k.startswith("semantic.") for k in rank0)  # the default semantic surrogate trained too
    # gradients were averaged: both replicas took the same steps. Batch-norm running statistics
    # are the one per-process state (DDP broadcasts rank 0's before each forward; rank 0's are saved)
    per_process = {k for k in rank0 if k.endswith((".running_mean", ".running_var"))}
    assert per_process and all(k.startswith("semantic.") for k in per_process)
    assert _same({k: v for k, v in rank0.items() if k not in per_process},
                 {k: v for k, v in rank1.items() if k not in per_process})

    # only rank 0 wrote outputs, and they hold the (common) final weights
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["checkpoint_last.safetensors", "generator.safetensors"]
    generator = load_file(str(out / "generator.safetensors"))
    assert _same(generator, {k[len("generator."):]: v for k, v in rank0.items() if k.startswith("generator.")})
    assert read_training_metadata(out / "checkpoint_last.safetensors")["round"] == 3
    rows = read_metrics(out / "metrics.csv")
    assert [r["phase"] for r in rows] == ["surrogate", "generator"] * 3 + ["eval"]
    assert [int(r["step"]) for r in rows[:6]] == list(range(6))

    # and they trained: the weights moved away from the common seeded initialisation
    runner.seed_everything(5)
    initial, _, _ = runner.build_networks(config, torch.device("cpu"))
    moved = [k for k, v in initial.state_dict().items() if not torch.equal(v, generator[k])]
    assert moved
