"""``unseg train``: bilevel min-min training of the noise generator (also under torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from unseg.cli.main import app
from unseg.devices import DEVICE_HELP


@app.command("train")
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML or YAML config (default: shipped default.toml)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data folder (images/, masks/, splits/) = data.root."),
    split_file: Optional[Path] = typer.Option(None, "--split-file", help="Training split file = data.train_split."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder = output.dir."),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP + " = runtime.device; under torchrun "
                                         "a bare cuda is each process's LOCAL_RANK GPU."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed = runtime.seed."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue from out/checkpoint_last.safetensors "
                                          "(without --config, the run's own stored config is used)."),
    check_steps: Optional[int] = typer.Option(None, "--check-steps",
                                              help="After training, train a fresh surrogate (and semantic surrogate, "
                                                   "if any) N steps on protected validation images and report "
                                                   "protected vs clean IoU."),
    overrides: list[str] = typer.Option([], "--set", help="Override any key: --set schedule.rounds=500 (repeatable)."),
) -> None:
    """Train the UnSeg generator against a surrogate (bilevel min-min) and write generator.safetensors."""
    from unseg.models.checkpoint import CheckpointError
    from unseg.training.checkpointing import read_training_metadata
    from unseg.training.config import ConfigError, apply_overrides, config_from_toml_text, load_config
    from unseg.training.runner import run_training

    flags = {
        "data.root": data,
        "data.train_split": split_file,
        "output.dir": out,
        "runtime.device": device,
        "runtime.seed": seed,
        "output.check_steps": check_steps,
    }
    try:
        if resume is not None and config is None:
            settings = config_from_toml_text(read_training_metadata(resume)["config_toml"])
        else:
            settings = load_config(config)
        settings = apply_overrides(settings, [f"{k}={v}" for k, v in flags.items() if v is not None] + list(overrides))
        result = run_training(settings, resume)
    except (ConfigError, CheckpointError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(f"trained {result.rounds} rounds ({result.steps} steps); generator: {result.out_dir / 'generator.safetensors'}")
    for key, value in {**result.last_metrics, **result.check}.items():
        typer.echo(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
