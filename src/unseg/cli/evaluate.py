"""``unseg evaluate``: victims × datasets × methods × defences, one command, one report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from unseg.cli.main import app
from unseg.devices import DEVICE_HELP


def _names(text: Optional[str]) -> Optional[tuple[str, ...]]:
    return None if text is None else tuple(part.strip() for part in text.split(",") if part.strip())


@app.command("evaluate")
def evaluate(
    out: Path = typer.Option(..., "--out", help="Run folder (results.json, report.md, figures, protected-image cache, the "
                               "training state of unfinished cells). Rerun into it to resume: finished cells are skipped, "
                               "an unfinished one goes on from its last saved epoch."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder with one sub-folder per dataset "
                                             "[$UNSEG_DATA if set, else ../shared/data relative to the working directory]."),
    datasets: Optional[str] = typer.Option(None, help="Comma list, e.g. camvid,kvasir_seg."),
    victims: Optional[str] = typer.Option(None, help="Comma list: unet, unetplusplus, fpn, deeplabv3plus, linknet, pspnet (CNNs), "
                                          "segformer (transformer) — each optionally arch@encoder, e.g. unet@mobilenet_v2 or "
                                          "segformer@mit_b2 —, sam (box-prompted interactive, 128-px input) or sam@small_256 (256-px input)."),
    methods: Optional[str] = typer.Option(None, help="Comma list: clean, unseg (the shipped generator, images fitted square: the protector's default), unseg_letterbox / unseg_square (a pinned fit), unseg_refined (+ protect-time refinement on half the budget, letterbox fit, slower; experimental), unseg_refined_full (the refinement on the whole budget), unseg_refined_square (square fit, refined through the square view only), unseg:PATH, pattern, random, sign, synper, ar, cuda, em."),
    defences: Optional[str] = typer.Option(None, help="Comma list: none, jpeg<Q>, blur<S>, bits<B>, gray, augment, "
                                           "advtrain[<L>], mix<K> (K % clean; adds cleanpart<K> reference)."),
    preset: Optional[str] = typer.Option(None, help="Start from a preset: quick, benchmark, strong_cpu (issue 9 grid, full splits, hours on 2 CPU cores), "
                                          "gpu (main grid, ~8 min on one H100/H200), "
                                          "gpu_full (every victim, baseline and defence) (options given here override it)."),
    quick: bool = typer.Option(False, "--quick", help="Same as --preset quick: a few minutes on 2 CPU cores."),
    generator: Optional[str] = typer.Option(None, help="What 'unseg' loads: default, a preset name or a checkpoint path."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Victim training epochs per cell (overrides the preset's)."),
    image_height: Optional[int] = typer.Option(None, help="Victim training height in px (multiple of 32)."),
    victim_fit: Optional[str] = typer.Option(None, "--victim-fit", help="How victims bring images to that size: stretch "
                                             "(each axis onto the size, the default) or letterbox (aspect kept, padded "
                                             "bottom/right, as SAM-style fine-tuning does)."),
    train_images: Optional[int] = typer.Option(None, min=1, help="At most this many training images."),
    train_fraction: Optional[float] = typer.Option(None, help="Fraction of the training split to use."),
    test_images: Optional[int] = typer.Option(None, min=1, help="At most this many test images."),
    batch_size: Optional[int] = typer.Option(None, min=2, help="Victim training batch size (overrides the preset's)."),
    epsilon: Optional[float] = typer.Option(None, help="Object budget in 1/255 units (default 8)."),
    epsilon_bg: Optional[float] = typer.Option(None, help="Background budget in 1/255 units (default 2)."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast for victims."),
    seed: Optional[int] = typer.Option(None, help="Seed of the image picks, the protection methods and the victims' initialisation."),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP + " (default: the preset's)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars while protecting and training."),
) -> None:
    """Train victims on protected data and report how much they lose (resumable: rerun to continue)."""
    from unseg.budget import DEFAULT_BUDGET, Budget
    from unseg.data.segmentation import SegmentationFolder
    from unseg.devices import DeviceError, resolve_device
    from unseg.evaluation.config import DATA_ENV, EvaluationConfig, preset_config
    from unseg.evaluation.protocol import ResultsStore, run_evaluation
    from unseg.evaluation.report import write_report

    if device is not None:
        try:
            resolve_device(device)
        except DeviceError as error:
            raise typer.BadParameter(str(error), param_hint="--device") from None
    overrides = dict(
        data_root=str(data_root) if data_root else None, datasets=_names(datasets), victims=_names(victims),
        methods=_names(methods), defences=_names(defences), generator=generator, epochs=epochs, image_height=image_height, victim_fit=victim_fit,
        train_images=train_images, train_fraction=train_fraction, test_images=test_images, batch_size=batch_size,
        amp=amp, seed=seed, device=device, progress=progress,
    )
    if quick and preset not in (None, "quick"):
        raise typer.BadParameter(f"--quick is --preset quick; it conflicts with --preset {preset}", param_hint="--quick")
    name = "quick" if quick else preset
    try:
        if epsilon is not None or epsilon_bg is not None:
            overrides["budget"] = Budget(DEFAULT_BUDGET.epsilon if epsilon is None else epsilon,
                                         DEFAULT_BUDGET.epsilon_bg if epsilon_bg is None else epsilon_bg)
        if name:
            config = preset_config(name, **overrides)
        else:
            config = EvaluationConfig(**{k: v for k, v in overrides.items() if v is not None})
    except (KeyError, ValueError) as error:
        raise typer.BadParameter(str(error)) from error
    root = Path(config.data_root)
    if not root.is_dir():
        origin = "--data-root" if data_root else (f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "the default")
        raise typer.BadParameter(
            f"data folder {root} (from {origin}, resolved to {root.resolve()}) not found: give --data-root DIR "
            f"(one sub-folder per dataset) or set {DATA_ENV}=DIR", param_hint="--data-root")
    try:  # fail before any work: every dataset folder readable, no resume of another schedule/budget
        for dataset in config.datasets:
            SegmentationFolder(Path(config.data_root) / dataset)
        ResultsStore(out, config)
    except (FileNotFoundError, ValueError) as error:
        raise typer.BadParameter(str(error)) from error
    data = run_evaluation(config, out)
    report = write_report(data, out)
    typer.echo(f"{len(data['cells'])} cells done; report: {report}")
