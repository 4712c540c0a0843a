"""Train the interactive ``sam`` victim on a dataset's clean training split and save it: a frozen surrogate for adversarial noise.

An adversarial poison (Fowl et al., NeurIPS 2021) is made against a model that already segments
clean images. The surrogate a training run grows for itself (``schedule.warmup_rounds``) saw ~one
pass over CamVid's objects on this project's CPU and still answered from its box prompt
(``benchmarks/results/adversarial_poison_probe.md``); the evaluation's own victim loop trains one
that reads the image (CamVid ``sam``, 8 epochs at 128 px: 45–46 IoU vs box-fill 30.6). This trains that
victim (:func:`unseg.evaluation.training.train_victim`, another initialisation than the benchmark
victims': seed + 100) and writes its weights as safetensors, the file ``unseg train --set
model.surrogate_weights=PATH`` starts a frozen surrogate from, with its scores in the metadata.

Usage (from the repository root; CamVid ``sam`` on 2 CPU cores, fp32: 8 epochs 9 min, 24 epochs 19 min —
the 24-epoch one is the surrogate of ``benchmarks/results/adversarial_poison_probe.md``'s stop-26 sections):

    python benchmarks/clean_surrogate.py --dataset camvid --epochs 24 --no-amp \
        --out runs/surrogates/camvid_sam_e24.safetensors
    # the shipped refinement segmenter (src/unseg/weights/refiner_surrogate.safetensors): that file in float16
    python benchmarks/clean_surrogate.py --resave runs/surrogates/camvid_sam_e24.safetensors --half \
        --out src/unseg/weights/refiner_surrogate.safetensors
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from provenance import commit as code_commit
from provenance import machine
from unseg.data.segmentation import SegmentationFolder, victim_size
from unseg.evaluation import preset_config
from unseg.evaluation.protocol import load_split, pick_stems
from unseg.evaluation.training import VictimResult, train_victim
from unseg.evaluation.victims import INTERACTIVE_VICTIM, parse_victim
from unseg.models.checkpoint import load_model, save_model

REPO = Path(__file__).resolve().parents[1]
SEED_OFFSET = 100  # the surrogate's initialisation differs from every benchmark victim's (seed + 0)


@dataclass
class CleanSurrogate:
    """A frozen ``sam`` victim trained on ``dataset``'s clean training split for ``epochs``, with its
    clean test scores there (``final``: iou, box_fill_iou, ...)."""

    model: torch.nn.Module
    dataset: str
    epochs: int
    final: dict

    @classmethod
    def trained(cls, data_root: Path, dataset: str, epochs: int, config) -> "CleanSurrogate":
        """Train one now (:func:`clean_victim`)."""
        result = clean_victim(data_root, dataset, epochs, config)
        return cls(result.model, dataset, epochs, result.final)

    @classmethod
    def load(cls, path: Path) -> "CleanSurrogate":
        """Read one this script wrote."""
        model, meta = load_model(path, kind="surrogate")
        trained_on = meta["trained_on"]
        return cls(model.eval().requires_grad_(False), trained_on["dataset"], trained_on["epochs"], meta["clean_test"])


def clean_victim(data_root: Path, dataset: str, epochs: int, config) -> VictimResult:
    """The ``sam`` victim trained ``epochs`` on the clean training split of ``data_root / dataset`` by the
    evaluation's own victim loop (seed ``config.seed + SEED_OFFSET``), scored on its clean test split;
    the model frozen."""
    folder = SegmentationFolder(data_root / dataset)
    spec = folder.spec
    size = victim_size(spec, config.image_height)
    picks = [pick_stems(folder.stems(spec.train_split), config.train_images, config.seed),
             pick_stems(folder.stems(spec.test_split), config.test_images, config.seed)]
    train, test = (load_split([folder.read_image(s).rgb8() for s in stems], [folder.read_mask(s) for s in stems], size)
                   for stems in picks)
    result = train_victim(parse_victim(INTERACTIVE_VICTIM), spec, train, test, replace(config, epochs=epochs).schedule(),
                          torch.device(config.device), config.seed + SEED_OFFSET, progress=None)
    print(f"{INTERACTIVE_VICTIM} on clean {spec.name}: test iou {result.final['iou']:.1f} "
          f"(box-fill {result.final['box_fill_iou']:.1f}), {result.seconds / 60:.0f} min", flush=True)
    result.model.requires_grad_(False)
    return result


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every script that trains victims through :func:`train_victim` takes: data size, precision, threads."""
    parser.add_argument("--train-images", type=int, default=None, help="fewer training images (a dry run)")
    parser.add_argument("--test-images", type=int, default=None, help="fewer test images (a dry run)")
    parser.add_argument("--no-amp", action="store_true", help="fp32 (CPUs without bf16 kernels)")
    parser.add_argument("--threads", type=int, default=2)


def run_config(args: argparse.Namespace):
    """The ``--preset`` evaluation config with the options of :func:`add_run_arguments` (and ``--epochs``,
    ``--seed``, ``--data-root``) applied; sets the torch threads."""
    torch.set_num_threads(args.threads)
    return preset_config(args.preset, data_root=str(args.data_root), epochs=args.epochs,
                         amp=False if args.no_amp else None, train_images=args.train_images,
                         test_images=args.test_images, seed=args.seed, device=getattr(args, "device", None))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--dataset", default="camvid", help="its clean training split trains the surrogate")
    parser.add_argument("--preset", default="strong_cpu", help="evaluation preset giving data sizes and schedule")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None, help="[the preset's]; the surrogate uses seed + 100")
    add_run_arguments(parser)
    parser.add_argument("--device", default=None, help="cpu or cuda [the preset's]")
    parser.add_argument("--half", action="store_true",
                        help="store the weights in float16 (half the file; they load into float32 models)")
    parser.add_argument("--resave", type=Path, default=None,
                        help="train nothing: write this file's surrogate again (with --half: the shipped "
                             "refinement segmenter from the 24-epoch CamVid one), metadata kept")
    parser.add_argument("--out", type=Path, required=True, help="safetensors file to write")
    return parser.parse_args(argv)


def write(path: Path, model: torch.nn.Module, metadata: dict, half: bool) -> None:
    """An unseg "surrogate" checkpoint (``load_model(path, "surrogate")``), in float16 with ``half``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, model.half() if half else model, {**metadata, "stored_as": "float16" if half else "float32"})


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.resave is not None:
        model, meta = load_model(args.resave, kind="surrogate")
        write(args.out, model, {key: value for key, value in meta.items() if not key.startswith("unseg_")}, args.half)
        print(f"wrote {args.out} from {args.resave}")
        return
    config = run_config(args)
    result = clean_victim(args.data_root, args.dataset, args.epochs, config)
    metadata = {"trained_on": {"dataset": args.dataset, "split": "train, clean", "victim": INTERACTIVE_VICTIM,
                               "epochs": args.epochs, "preset": args.preset, "seed": config.seed + SEED_OFFSET},
                "clean_test": result.final, "history": result.history, "code": code_commit(),
                "machine": machine(config.device, args.threads)}
    write(args.out, result.model, metadata, args.half)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
