"""Why the CPU preset uses a 256 px input: the ``small`` generator's cost at 256 / 384 / 512 px.

The ``small`` preset (its noise head as shipped: 1/8-size noise map, high-pass) with only the input
size changed; a batch of 4 with a box prompt. Timed: one generator forward + backward (not a whole
training step, which also runs the surrogate(s): see ``seconds`` in
``benchmarks/results/default_generator/metrics.csv``) and one forward without gradients.

Usage: python benchmarks/preset_input_size.py [--threads 2] [--repeats 2] [--note TEXT] [--out FILE]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from provenance import header, write
from unseg.models import GENERATOR_PRESETS, PromptBatch, build_generator

SIZES = (256, 384, 512)


def time_generator(size: int, batch: int = 4, repeats: int = 2) -> tuple[float, float, int]:
    """(seconds for forward+backward, seconds for a forward, noise side) of one batch at ``size`` px."""
    small = GENERATOR_PRESETS["small"]
    config = replace(small, sam=replace(small.sam, img_size=size))
    generator = build_generator(config)
    images = torch.rand(batch, 3, size, size)
    prompts = PromptBatch(coords=torch.tensor([[[10.0, 20.0], [100.0, 120.0]]] * batch),
                          labels=torch.tensor([[2, 3]] * batch))
    generator(images, prompts).noise.sum().backward()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        generator.zero_grad()
        generator(images, prompts).noise.sum().backward()
    train_step = (time.perf_counter() - start) / repeats
    with torch.no_grad():
        start = time.perf_counter()
        generator(images, prompts)
        forward = time.perf_counter() - start
    return train_step, forward, config.noise_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--note", default="", help="a line about the machine (e.g. shared with other jobs)")
    parser.add_argument("--out", type=Path, help="also write the lines to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lines = header(__file__, ["cpu"], args.threads, args.note)
    print("\n".join(lines), flush=True)
    for size in SIZES:
        train_step, forward, noise = time_generator(size, repeats=args.repeats)
        lines.append(f"img {size}: noise {noise}px, generator fwd+bwd batch4 {train_step:.2f}s, fwd batch4 {forward:.2f}s")
        print(lines[-1], flush=True)
    write(args.out, lines)


if __name__ == "__main__":
    main()
