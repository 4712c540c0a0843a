"""Protection speed: ms per image and peak memory of the protect path, on CPU and (when there is
one) CUDA, written with the command, code commit, hardware and date.

Two stages are timed on square RGB images with one box prompt each (decode/encode excluded):

* ``generator+budget``: :meth:`Protector.noise_batch` then the exact budget on the pixels (letterbox,
  generator forward, noise back to native size, saturation, budget, L∞);
* ``protect``: :meth:`Protector.protect_batch`, the above plus PSNR / SSIM (what ``unseg protect``
  records per image).

Each configuration runs in a fresh subprocess so that peak memory is its own: CPU = growth of the
process's peak RSS (``resource.getrusage``) while protecting (warm-up run included) over the
state after loading the model and images; CUDA = ``torch.cuda.max_memory_allocated`` during the
runs (weights included). Weights are the chosen generator (``default``: the shipped one; a
preset: random init): speed does not depend on training.

Usage: python benchmarks/generation_speed.py [--generator default] [--devices cpu,cuda]
       [--sizes 256,512,1024] [--batches 1,4] [--repeats 3] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from provenance import header, write
from unseg.data.images import LoadedImage
from unseg.data.prompts import ImagePrompt
from unseg.protection import Protector

STAGES = ("generator+budget", "protect")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(generator: str, device: str, size: int, batch: int, repeats: int, stage: str) -> dict:
    """Median (and min) ms/image and peak memory of one stage on ``batch`` images of ``size`` px."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        protector = Protector.load(generator, device=device, batch_size=batch)
    rng = np.random.default_rng(0)
    images = [LoadedImage(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(batch)]
    prompts = [ImagePrompt(boxes=[[size * 0.2, size * 0.2, size * 0.7, size * 0.8]]) for _ in range(batch)]
    cuda = device.startswith("cuda")

    def run() -> None:
        if stage == "protect":
            protector.protect_batch(images, prompts)
        else:
            for loaded, native in zip(images, protector.noise_batch(images, prompts)):
                native.protect(loaded.pixels, protector.budget)

    rss_loaded = peak_rss_mib()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    run()  # warm-up (allocator, kernels); counts for memory
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    memory = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mib() - rss_loaded
    return {"stage": stage, "device": device, "size": size, "batch": batch,
            "ms_per_image": 1000 * statistics.median(times) / batch, "min_ms_per_image": 1000 * min(times) / batch,
            "peak_mib": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="default", help="default (shipped weights), a preset or a checkpoint")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--note", default="", help="a line about the machine (e.g. shared with other jobs)")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--one", nargs=3, metavar=("STAGE", "SIZE", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        stage, size, batch = args.one
        print(json.dumps(measure(args.generator, args.device, int(size), int(batch), args.repeats, stage)))
        return
    lines = header(__file__, args.devices.split(","), args.threads, args.note,
                   f"generator {args.generator}; {args.repeats} timed repeats after 1 warm-up, median; "
                   "decode/encode excluded") + [
        f"{'stage':>16} {'device':>6} {'size':>5} {'batch':>5} {'ms/image':>9} {'min ms':>7} {'peak MiB':>9}"
        "   (CPU: peak-RSS growth while protecting; CUDA: max allocated incl. weights)"]
    print("\n".join(lines), flush=True)
    for device in args.devices.split(","):
        for stage in args.stages.split(","):
            for size in map(int, args.sizes.split(",")):
                for batch in map(int, args.batches.split(",")):
                    command = [sys.executable, __file__, "--generator", args.generator, "--repeats", str(args.repeats),
                               "--threads", str(args.threads), "--device", device, "--one", stage, str(size),
                               str(batch)]
                    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
                    lines.append(f"{stage:>16} {device:>6} {size:>5} {batch:>5} {result['ms_per_image']:>9.1f} "
                                 f"{result['min_ms_per_image']:>7.1f} {result['peak_mib']:>9.1f}")
                    print(lines[-1], flush=True)
    write(args.out, lines)


if __name__ == "__main__":
    main()
