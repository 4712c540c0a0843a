"""Protection benchmark: UnSeg vs. every baseline, three victims, the clean-trained metric beside each.

Runs the ``benchmark`` preset of :mod:`unseg.evaluation.config` (CamVid and Kvasir-SEG; victims
unet, fpn, deeplabv3plus; methods clean, unseg, random, synper, ar, cuda, em) over the real
evaluation sets, then copies ``report.md``, ``results.json`` and the figures into
``benchmarks/results/evaluate_protection/`` under a ``README.md`` saying exactly how they were
produced (command, preset values, machine, date, generator used).

Usage (from the repository root):
    python benchmarks/evaluate_protection.py                # the CPU benchmark (resumable: rerun to continue)
    python benchmarks/evaluate_protection.py --generator runs/default_generator/generator.safetensors
    python benchmarks/evaluate_protection.py --dry-run      # seconds: tiny generated data, to check the wiring

Equivalent to ``unseg evaluate --preset benchmark --data-root ../shared/data --out runs/benchmark``
plus the copy. ``--dry-run`` shrinks the ``quick`` preset (1 victim, clean/unseg/random, 1 epoch,
32 px) and runs it on a generated 3-class dataset in a temporary folder; its results go to
``<out>/results`` unless ``--results-dir`` is given, never over the committed benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unseg.evaluation import PRESETS, preset_config, run_evaluation, write_report
from unseg.evaluation.config import EvaluationConfig

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "runs" / "benchmark"
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "evaluate_protection"
DRY_RUN_DATASET = "toy"
DRY_RUN_OVERRIDES = dict(datasets=(DRY_RUN_DATASET,), victims=("unet",), methods=("clean", "unseg", "random"), epochs=1,
                         image_height=32, batch_size=2, train_images=4, test_images=2, amp=False)
COPIED = ("report.md", "results.json", "bars.png", "curves_*.png", "grid_*.png")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=None, help=f"dataset folders [{DEFAULT_DATA_ROOT}]")
    parser.add_argument("--out", type=Path, default=None, help=f"run folder, resumable [{DEFAULT_OUT}; dry run: a temp folder]")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help=f"where the report is copied [{DEFAULT_RESULTS}; dry run: <out>/results]")
    parser.add_argument("--preset", default="benchmark", choices=sorted(PRESETS), help="evaluation preset [benchmark]")
    parser.add_argument("--generator", default=None, help="what 'unseg' loads: default, a preset or a checkpoint [default]")
    parser.add_argument("--device", default=None, help="cpu or cuda [the preset's]")
    parser.add_argument("--dry-run", action="store_true", help="tiny generated dataset and a shrunk quick preset (seconds)")
    return parser.parse_args(argv)


def write_dry_run_dataset(root: Path, images: int = 6, size: tuple[int, int] = (40, 56)) -> Path:
    """A 3-class folder in the CamVid layout (images/, masks/, splits/, dataset.json); returns ``root``."""
    folder = root / DRY_RUN_DATASET
    for sub in ("images", "masks", "splits"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    stems = [f"img{i}" for i in range(images)]
    for stem in stems:
        height, width = size
        mask = np.zeros(size, np.uint8)
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        mask[top : top + height // 3, left : left + width // 3] = 1
        mask[-height // 4 :, -width // 3 :] = 2
        pixels = rng.integers(40, 200, (height, width, 3), dtype=np.uint8)
        pixels[mask == 1] = (220, 50, 50)
        pixels[mask == 2] = (50, 50, 220)
        Image.fromarray(pixels).save(folder / "images" / f"{stem}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")
    (folder / "splits" / "train.txt").write_text("\n".join(stems[:4]) + "\n")
    (folder / "splits" / "test.txt").write_text("\n".join(stems[4:]) + "\n")
    spec = {"num_classes": 3, "ignore_index": None, "class_names": ["bg", "red", "blue"], "aspect": 1.5}
    (folder / "dataset.json").write_text(json.dumps(spec))
    return root


def build_config(args: argparse.Namespace, data_root: Path) -> EvaluationConfig:
    """The preset (shrunk for a dry run) with this script's overrides."""
    overrides = dict(data_root=str(data_root), generator=args.generator, device=args.device)
    return preset_config(preset_name(args), **(DRY_RUN_OVERRIDES if args.dry_run else {}), **overrides)


def preset_name(args: argparse.Namespace) -> str:
    """The preset a run starts from: ``--preset``, or ``quick`` for a dry run."""
    return "quick" if args.dry_run else args.preset


def machine_line(config: EvaluationConfig) -> str:
    """How the numbers were computed: CPU cores and threads, or the GPU."""
    if config.device.startswith("cuda") and torch.cuda.is_available():
        return f"GPU run on {torch.cuda.get_device_name()}"
    return (f"small CPU run on {os.cpu_count()} cores ({torch.get_num_threads()} torch threads, "
            f"{platform.processor() or platform.machine()})")


def generator_lines(data: dict) -> list[str]:
    """Which generator the ``unseg`` method used, per dataset, from the protection records."""
    lines = []
    for key, info in sorted(data["protection"].items()):
        dataset, method = key.split("|", 1)
        if method.startswith("unseg"):
            trained = "trained" if info.get("trained", True) else "UNTRAINED (random weights: a wiring check, not UnSeg's protection)"
            lines.append(f"  - {dataset}: `{method}` loaded `{info.get('generator')}` — {trained}")
    return lines or ["  - (no unseg method in this run)"]


def code_version() -> str:
    """The git commit of the repository (and whether the tree had uncommitted changes), if known."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"commit {commit.stdout.strip()}" + (" with uncommitted changes" if dirty.stdout.strip() else "")


def header(command: str, preset: str, config: EvaluationConfig, data: dict, seconds: float, copied: list[str],
           dry_run: bool) -> str:
    """README.md for the copied results: what ran, where, when, with which generator."""
    described = f"{preset}, shrunk by DRY_RUN_OVERRIDES (generated toy data: a wiring check, the numbers mean nothing)" \
        if dry_run else preset
    values = {k: v for k, v in config.to_dict().items() if k != "progress"}
    lines = [
        "# Protection benchmark: UnSeg vs. baselines" + (" (DRY RUN)" if dry_run else ""), "",
        f"- Command: `{command}` (from the repository root)",
        f"- Preset: {described} (src/unseg/evaluation/config.py); the same run as `unseg evaluate --preset {preset}` "
        "with the values below, then this copy of its report files",
        f"- Machine: {machine_line(config)}",
        f"- Code: {code_version()}",
        f"- Finished: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; this invocation took "
        f"{seconds:.0f} s (cells finished by an earlier invocation of a resumed run not included)",
        f"- Cells: {len(data['cells'])}",
        "- Generator used by `unseg`:", *generator_lines(data),
        f"- Files: {', '.join(copied)}",
        "", "Preset values (the run's config, as recorded in results.json):", "", "| field | value |", "|---|---|",
        *[f"| {key} | `{json.dumps(value)}` |" for key, value in values.items()], "",
    ]
    return "\n".join(lines)


def copy_results(out: Path, results_dir: Path) -> list[str]:
    """Copy the report, results and figures of ``out`` into ``results_dir``; returns the copied names."""
    results_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for pattern in COPIED:
        for path in sorted(out.glob(pattern)):
            shutil.copy2(path, results_dir / path.name)
            copied.append(path.name)
    return copied


def main(argv: list[str] | None = None) -> Path:
    """Run (or resume) the benchmark and copy its report; returns the results folder."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    command = "python benchmarks/evaluate_protection.py" + (" " + shlex.join(argv) if argv else "")
    out = args.out or (Path(tempfile.mkdtemp(prefix="unseg_benchmark_dry_")) if args.dry_run else DEFAULT_OUT)
    data_root = args.data_root or (write_dry_run_dataset(out / "dry_run_data") if args.dry_run else DEFAULT_DATA_ROOT)
    results_dir = args.results_dir or (out / "results" if args.dry_run else DEFAULT_RESULTS)
    config = build_config(args, data_root.resolve())
    print(f"benchmark: {len(config.datasets)} datasets x {len(config.victims)} victims x {len(config.methods)} methods -> {out}")
    started = time.perf_counter()
    data = run_evaluation(config, out)
    write_report(data, out)
    seconds = time.perf_counter() - started
    copied = copy_results(out, results_dir)
    (results_dir / "README.md").write_text(header(command, preset_name(args), config, data, seconds, copied, args.dry_run))
    print(f"{len(data['cells'])} cells; report copied to {results_dir}")
    return results_dir


if __name__ == "__main__":
    main()
