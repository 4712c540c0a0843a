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
    """Print the version and the available generator presets."""
    from unseg.models import GENERATOR_PRESETS

    typer.echo(f"unseg {__version__}")
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
