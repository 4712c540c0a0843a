"""Protection speed: ms per image and peak memory of ``Protector.protect_batch`` (full path: letterbox,
generator forward, noise back to native resolution, exact budget, PSNR/SSIM stats).

Square RGB images of 256, 512 and 1024 px with one box prompt each, batch 1 and 4, on CPU and, when
available, CUDA. Each configuration runs in a fresh subprocess so that peak memory is its own:
CPU = growth of the process's peak RSS (``resource.getrusage``) while protecting (warm-up run
included) over the state after loading the model and images; CUDA = ``torch.cuda.max_memory_allocated`` during the runs (weights included).
Weights are the current generator (possibly untrained): speed does not depend on training.

Usage: python benchmarks/generation_speed.py [--preset small] [--repeats 3] [--devices cpu,cuda]
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

import numpy as np
import torch

from unseg.data.images import LoadedImage
from unseg.protection import ImagePrompt, Protector

SIZES = (256, 512, 1024)
BATCHES = (1, 4)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(preset: str, device: str, size: int, batch: int, repeats: int) -> dict:
    """Median (and min) ms/image and peak memory of protecting ``batch`` images of ``size`` px."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        protector = Protector.load(preset, device=device, batch_size=batch)
    rng = np.random.default_rng(0)
    images = [LoadedImage(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(batch)]
    prompts = [ImagePrompt(boxes=[[size * 0.2, size * 0.2, size * 0.7, size * 0.8]]) for _ in range(batch)]
    cuda = device.startswith("cuda")
    rss_loaded = peak_rss_mib()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    protector.protect_batch(images, prompts)  # warm-up (allocator, kernels); counts for memory
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        protector.protect_batch(images, prompts)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    memory = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mib() - rss_loaded
    return {"preset": preset, "device": device, "size": size, "batch": batch,
            "ms_per_image": 1000 * statistics.median(times) / batch, "min_ms_per_image": 1000 * min(times) / batch,
            "peak_mib": memory, "loaded_rss_mib": rss_loaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--one", nargs=2, type=int, metavar=("SIZE", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.preset, args.device, *args.one, args.repeats)))
        return
    print(f"# preset {args.preset}, {args.repeats} timed repeats after 1 warm-up, median; torch {torch.__version__}")
    print(f"{'device':>6} {'size':>5} {'batch':>5} {'ms/image':>9} {'min ms':>7} {'peak MiB':>9}   (CPU: peak-RSS "
          "growth while protecting, over the process with model and images loaded; CUDA: max allocated incl. weights)")
    for device in args.devices.split(","):
        for size in SIZES:
            for batch in BATCHES:
                command = [sys.executable, __file__, "--preset", args.preset, "--repeats", str(args.repeats),
                           "--device", device, "--one", str(size), str(batch)]
                result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
                print(f"{device:>6} {size:>5} {batch:>5} {result['ms_per_image']:>9.1f} "
                      f"{result['min_ms_per_image']:>7.1f} {result['peak_mib']:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
