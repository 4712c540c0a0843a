"""``unseg verify``: check a protected folder against its originals before publishing it."""

from __future__ import annotations

from pathlib import Path

import typer

from unseg.budget import DEFAULT_BUDGET
from unseg.cli.common import (
    class_names_option,
    classes_option,
    fail,
    ignore_index_option,
    parse_budget,
    parse_ignore_index,
    split_list,
)
from unseg.cli.main import app
from unseg.devices import DEVICE_HELP

VIOLATION_EXIT = 1
COLUMNS = ("image", "result", "format", "size", "mode", "L∞ in/out", "budget", "region")


def _table_rows(report) -> list[tuple[str, ...]]:
    rows = []
    for check in report.checks:
        linf = "-" if check.linf_inside is None else (
            f"{check.linf_inside}/{'-' if check.linf_outside is None else check.linf_outside}")
        budget = "-" if check.budget_inside is None else f"{check.budget_inside}/{check.budget_outside}"
        size = "-" if check.size is None else f"{check.size[0]}x{check.size[1]}"
        rows.append((check.source, "ok" if check.ok else "FAIL", check.format or "-", size, check.mode or "-",
                     linf, budget, check.region if check.output else "-"))
    return rows


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell."""
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    for row in [COLUMNS, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def print_probe(result) -> None:
    settings = result.settings
    height, width = result.size
    typer.echo(f"probe: {settings.victim}, {settings.schedule.epochs} epochs at {width}x{height} px, {result.train_images} "
               f"training / {result.test_images} held-out images, {result.seconds:.0f} s")
    typer.echo(f"  clean-trained victim      IoU {result.clean:5.1f}")
    typer.echo(f"  protected-trained victim  IoU {result.protected:5.1f}")
    typer.echo(f"  drop                      {result.drop:5.1f} IoU points (higher: the protection works)")
    typer.echo("  caveats:")
    for caveat in result.caveats:
        typer.echo(f"   - {caveat}")


@app.command("verify")
def verify_command(
    originals: Path = typer.Argument(..., help="Folder of the original images (searched recursively)."),
    protected: Path = typer.Argument(..., help="Folder of the protected copies (as written by unseg protect/serve)."),
    masks: Path | None = typer.Option(None, "--masks", help="Masks matched by file stem, as for unseg protect --masks "
                                      "(binary or class-index PNGs): the exact region for the ε / ε_bg check. "
                                      "Without: the protected folder's manifest.jsonl, else ε everywhere."),
    classes: str | None = classes_option(),
    class_names: Path | None = class_names_option(),
    ignore_index: str | None = ignore_index_option(),
    epsilon: float = typer.Option(DEFAULT_BUDGET.epsilon, "--epsilon", help="Allowed change on the region, in 1/255 units."),
    epsilon_bg: float = typer.Option(DEFAULT_BUDGET.epsilon_bg, "--epsilon-bg",
                                     help="Allowed change elsewhere, in 1/255 units."),
    probe: bool = typer.Option(False, "--probe", help="Also train a small victim on clean vs protected copies (needs "
                               "--masks; a few minutes on CPU) and report the IoU drop on held-out clean images."),
    probe_victim: str = typer.Option("unet", "--probe-victim", help="Victim of the probe: unet, fpn, deeplabv3plus, ..."),
    probe_epochs: int = typer.Option(30, "--probe-epochs", min=1, help="Epochs of each probe victim."),
    probe_height: int = typer.Option(96, "--probe-height", min=32, help="Probe victim input height (multiple of 32)."),
    probe_images: int = typer.Option(128, "--probe-images", min=3, help="Use at most this many images for the probe."),
    device: str = typer.Option("cpu", "--device", help="Device of the probe: " + DEVICE_HELP + "."),
) -> None:
    """Check protected copies against their originals before publishing (exit 1 on any violation).

    Every protected copy must exist, be lossless, match its original's size and mode, and keep
    the budget (ε on the region, ε_bg elsewhere). Prints a table and one FAIL line per
    violation; exit code 1 on any violation, 2 on bad options.
    """
    from unseg.data.sources import SourceError, read_class_names
    from unseg.protection.verify import verify_protected

    budget = parse_budget(epsilon, epsilon_bg)
    if probe and masks is None:
        raise fail("--probe needs --masks (the probe victims learn the masked region)")
    if probe_height % 32:
        raise fail(f"--probe-height must be a multiple of 32, got {probe_height}")
    if not originals.is_dir():
        raise fail(f"originals folder not found: {originals}")
    try:
        options = dict(classes=split_list(classes), ignore_index=parse_ignore_index(ignore_index),
                       class_names=read_class_names(class_names) if class_names is not None else None)
        report = verify_protected(originals, protected, masks=masks, budget=budget, **options)
    except (SourceError, ValueError) as error:
        raise fail(str(error)) from error
    if not report.checks:
        raise fail(f"no images found in {originals}")
    print_table(_table_rows(report))
    for source, violation in report.violations:
        typer.echo(f"FAIL {source}: {violation.kind}: {violation.message}")
    typer.echo(str(report))
    if probe:
        from dataclasses import replace

        from unseg.evaluation.probe import PROBE_SCHEDULE, ProbeSettings, probe_learnability

        settings = ProbeSettings(victim=probe_victim, schedule=replace(PROBE_SCHEDULE, epochs=probe_epochs),
                                 image_height=probe_height, max_images=probe_images, device=device)
        try:
            print_probe(probe_learnability(report, masks, settings, progress=True, **options))
        except ValueError as error:
            raise fail(f"probe: {error}") from error
    if not report.ok:
        raise typer.Exit(VIOLATION_EXIT)
