"""Why the CPU preset uses a 256 px input: generator step time at 256 / 384 / 512 px.

Usage: python benchmarks/preset_input_size.py  (prints one line per input size)
"""

import time

import torch

from unseg.models import GeneratorConfig, PromptBatch, SamConfig, build_generator


def time_generator(size: int, batch: int = 4, repeats: int = 2) -> tuple[float, float]:
    """Seconds for forward+backward and for forward only of one batch at ``size`` px."""
    generator = build_generator(GeneratorConfig(sam=SamConfig(img_size=size)))
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
    return train_step, forward


if __name__ == "__main__":
    torch.manual_seed(0)
    for size in (256, 384, 512):
        train_step, forward = time_generator(size)
        noise = GeneratorConfig(sam=SamConfig(img_size=size)).noise_size
        print(f"img {size}: noise {noise}px, fwd+bwd batch4 {train_step:.2f}s, fwd batch4 {forward:.2f}s")
