"""Training throughput: ms per bilevel step (surrogate and generator steps) for each device,
mixed precision and memory layout, written with the command, code commit, hardware and date.

The hot loop only: :class:`unseg.training.bilevel.BilevelTrainer` steps on one fixed synthetic
batch (random images, one rectangle object each), so data loading is excluded and any machine can
run it without data. Networks as in the default recipe (``small`` generator and surrogate, the
``linknet@resnet18`` semantic surrogate at 96 px) unless told otherwise. The bf16 speed-up is the
``none`` time over the ``bf16`` time of the same device and layout.

Usage: python benchmarks/training_throughput.py [--devices cpu,cuda] [--amp none,bf16]
       [--channels-last false,true] [--batch-size 8] [--steps 3] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from provenance import header, write
from unseg.training.bilevel import BilevelTrainer
from unseg.training.config import config_from_mapping
from unseg.training.runner import build_networks



def synthetic_batch(batch: int, size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Images in [0, 1], one rectangular object mask each, all valid (no padding)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=generator)
    masks = torch.zeros(batch, 1, size, size)
    for i in range(batch):
        top, left = (int(v) for v in torch.randint(0, size // 2, (2,), generator=generator))
        masks[i, :, top : top + size // 3, left : left + size // 3] = 1
    return {"image": images, "mask": masks, "valid": torch.ones_like(masks)}


def measure(device: str, amp: str, channels_last: bool, args: argparse.Namespace) -> dict[str, float]:
    """Median ms of a surrogate step and of a generator step after one warm-up step each."""
    config = config_from_mapping({
        "model": {"generator": args.generator, "surrogate": args.surrogate, "semantic_surrogate": args.semantic},
        "schedule": {"batch_size": args.batch_size},
        "runtime": {"device": device, "amp": amp, "channels_last": channels_last, "seed": 0},
    })
    torch.manual_seed(0)
    target = torch.device(device)
    generator, surrogate, semantic = build_networks(config, target)
    trainer = BilevelTrainer(generator, surrogate, config, target, semantic=semantic)
    batch = synthetic_batch(args.batch_size, generator.config.sam.img_size)
    times: dict[str, list[float]] = {"surrogate": [], "generator": []}
    for phase, step in (("surrogate", trainer.surrogate_step), ("generator", trainer.generator_step)):
        for index in range(args.steps + 1):
            if target.type == "cuda":
                torch.cuda.synchronize(target)
            start = time.perf_counter()
            step(batch, index)
            if target.type == "cuda":
                torch.cuda.synchronize(target)
            if index:  # the first step warms up (allocator, kernels, cuDNN choices)
                times[phase].append(1000 * (time.perf_counter() - start))
    return {phase: statistics.median(values) for phase, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", default="none,bf16")
    parser.add_argument("--channels-last", default="false,true")
    parser.add_argument("--generator", default="small")
    parser.add_argument("--surrogate", default="small")
    parser.add_argument("--semantic", default="linknet@resnet18", help='semantic surrogate ("" = none)')
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per phase (after one warm-up)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--note", default="", help="a line about the machine (e.g. shared with other jobs)")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = [*header(__file__, args.devices.split(","), args.threads, args.note,
                     f"networks: generator {args.generator}, surrogate {args.surrogate}, semantic "
                     f"{args.semantic or 'none'}; batch {args.batch_size}; median of {args.steps} steps after 1 "
                     "warm-up; synthetic batch (no data loading)"),
             f"{'device':>6} {'amp':>5} {'layout':>13} {'surrogate ms':>13} {'generator ms':>13} {'bf16 speed-up':>14}"]
    print("\n".join(lines), flush=True)
    for device in args.devices.split(","):
        for layout in args.channels_last.split(","):
            channels_last = layout.strip().lower() in ("1", "true", "yes")
            baseline = None
            for amp in args.amp.split(","):
                result = measure(device, amp, channels_last, args)
                total = result["surrogate"] + result["generator"]
                baseline = total if amp == "none" else baseline
                speedup = f"{baseline / total:.2f}x" if amp != "none" and baseline else "-"
                lines.append(f"{device:>6} {amp:>5} {'channels_last' if channels_last else 'contiguous':>13} "
                             f"{result['surrogate']:>13.1f} {result['generator']:>13.1f} {speedup:>14}")
                print(lines[-1], flush=True)
    write(args.out, lines)


if __name__ == "__main__":
    main()
