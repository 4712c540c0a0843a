"""The ``unseg`` command line: one sub-command per job (protect, demo, train, evaluate, verify, serve, info)."""

from __future__ import annotations

import typer

from unseg import __version__

app = typer.Typer(
    help="unseg: make images unlearnable for segmentation models (UnSeg, NeurIPS 2024).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def info() -> None:
    """Print the version, the default generator (its weights file, whether it is trained) and the presets."""
    from unseg.models import GENERATOR_PRESETS, read_metadata
    from unseg.budget import DEFAULT_BUDGET
    from unseg.protection.protector import DEFAULT_WEIGHTS, resolve_generator_source, stored_budget

    typer.echo(f"unseg {__version__}")
    source = resolve_generator_source("default")
    if source in GENERATOR_PRESETS:
        typer.echo(f"default generator: preset {source}, UNTRAINED (no weights file at {DEFAULT_WEIGHTS})")
    else:
        meta = read_metadata(source)
        trained = "trained" if meta.get("trained", True) else "UNTRAINED"
        size = meta["unseg_config"]["sam"]["img_size"]
        typer.echo(f"default generator: {source}")
        budget = stored_budget(meta)
        stored = "stored" if budget is not None else "none stored, default"
        typer.echo(f"  {trained}, input {size}px, protection budget {budget or DEFAULT_BUDGET} ({stored}; used "
                   "unless --epsilon / --epsilon-bg)")
        if "data" in meta:
            typer.echo(f"  trained on: {meta['data']}")
        codes = meta["unseg_config"].get("num_codes", 0)
        if codes:
            typer.echo(f"  keyed: {codes} noise codes, one per object key (unseg protect --keying class|instance)")
        if "note" in meta:
            typer.echo(f"  note: {meta['note']}")
    typer.echo("presets (random init, UNTRAINED unless given a checkpoint):")
    for name, config in GENERATOR_PRESETS.items():
        typer.echo(f"  preset {name}: input {config.sam.img_size}px, noise {config.noise_size}px")


# Sub-commands live one per module; each module registers itself on ``app``.
# (imports at the bottom on purpose: the modules import ``app`` from here)
from unseg.cli import protect  # noqa: E402,F401
from unseg.cli import demo  # noqa: E402,F401
from unseg.cli import train  # noqa: E402,F401
from unseg.cli import evaluate  # noqa: E402,F401
from unseg.cli import verify  # noqa: E402,F401
from unseg.cli import serve  # noqa: E402,F401
