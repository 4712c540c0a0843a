"""How far can 8/255 move a training run's interactive surrogate? (a check before adversarial training)

An adversarial-poison generator (``unseg train --set loss.objective=adversarial``) learns to raise a
clean-trained surrogate's loss. If even a per-image PGD attack cannot raise it, the surrogate answers
from its prompt, not the image, and the generator has nothing to learn: train the surrogate longer
(``schedule.warmup_rounds``) first. This loads the surrogate of a training checkpoint
(``checkpoint_last.safetensors``), prompts it as the benchmark's ``sam`` victim is prompted (box
corners + filled box, :func:`unseg.evaluation.interactive.object_samples`) on one object of each of
``--images`` training images per dataset, and prints its loss (BCE + Dice) on the clean objects and
after ``--steps`` signed PGD steps of ``--unit-step`` x ε that raise it (ε on every pixel).

Usage (from the repository root; ~1 min on 2 CPU cores):

    python benchmarks/surrogate_attackability.py runs/gap_v1/checkpoint_last.safetensors --datasets kvasir_seg camvid
    python benchmarks/surrogate_attackability.py runs/surrogates/camvid_sam.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from unseg.data.segmentation import SegmentationFolder, victim_size
from unseg.evaluation.interactive import interactive_loss, object_samples
from unseg.evaluation.protocol import load_split, pick_stems
from unseg.evaluation.training import pgd_attack
from unseg.models import CheckpointError, load_model
from unseg.training import runner
from unseg.training.bilevel import BilevelTrainer
from unseg.training.checkpointing import load_training_state, read_training_metadata
from unseg.training.config import config_from_toml_text

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a training state (checkpoint_last.safetensors of unseg train) "
                                                      "or a surrogate checkpoint (benchmarks/clean_surrogate.py)")
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--datasets", nargs="+", default=["kvasir_seg", "camvid"])
    parser.add_argument("--images", type=int, default=64, help="training images per dataset, one object each")
    parser.add_argument("--image-height", type=int, default=128, help="image height before the letterbox (the victim's)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--unit-step", type=float, default=0.2, help="PGD step in units of ε")
    parser.add_argument("--epsilon", type=float, default=8, help="in 1/255")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def checkpoint_surrogate(path: Path) -> torch.nn.Module:
    """The interactive surrogate stored in a training state, or in a surrogate checkpoint
    (``benchmarks/clean_surrogate.py``), frozen, in eval mode."""
    try:
        surrogate, _ = load_model(path, kind="surrogate")
    except CheckpointError:  # not a surrogate checkpoint: a training state
        config = config_from_toml_text(read_training_metadata(path)["config_toml"])
        generator, surrogate, semantic = runner.build_networks(config, torch.device("cpu"))
        load_training_state(path, BilevelTrainer(generator, surrogate, config, torch.device("cpu"), semantic=semantic))
    return surrogate.eval().requires_grad_(False)


def attacked_loss(surrogate: torch.nn.Module, folder: SegmentationFolder, args) -> tuple[float, float]:
    """(clean loss, loss after the PGD steps) on one object of each of ``args.images`` training images."""
    spec = folder.spec
    stems = pick_stems(folder.stems(spec.train_split), args.images, 0)
    split = load_split([folder.read_image(s).rgb8() for s in stems], [folder.read_mask(s) for s in stems],
                       victim_size(spec, args.image_height))
    size = surrogate.config.sam.img_size
    objects = object_samples(split, spec, size, max_objects=1, generator=torch.Generator().manual_seed(0))
    objects = objects.subset(torch.arange(len(objects)))  # with the filled box as the mask prompt

    def loss(logits: torch.Tensor) -> torch.Tensor:
        return interactive_loss(logits.float(), objects.targets)

    def forward(images: torch.Tensor) -> torch.Tensor:
        return surrogate(images, objects.prompts)

    epsilon = args.epsilon / 255
    attacked = pgd_attack(surrogate, forward, objects.images, loss, epsilon, args.steps, generator=None,
                          step=args.unit_step * epsilon)
    with torch.no_grad():
        return float(loss(forward(objects.images))), float(loss(forward(attacked)))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    surrogate = checkpoint_surrogate(args.checkpoint)
    for name in args.datasets:
        before, after = attacked_loss(surrogate, SegmentationFolder(args.data_root / name), args)
        print(f"{name}: surrogate loss clean {before:.3f} -> attacked {after:.3f} "
              f"({args.steps} PGD steps of {args.unit_step:g} x {args.epsilon:g}/255, {args.images} objects)")


if __name__ == "__main__":
    main()
