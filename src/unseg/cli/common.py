"""What several commands share: option definitions, option parsing, loading a protector, the prompt
source of ``protect`` / ``demo``, and the run summary.

Only light imports at module level (typer, :mod:`unseg.budget`): ``unseg --help`` stays instant;
the library is imported inside the functions that use it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from unseg.budget import DEFAULT_BUDGET, Budget

if TYPE_CHECKING:
    from unseg.data.sources import ProtectItem
    from unseg.protection.pipeline import ProtectSummary
    from unseg.protection.protector import Protector

BAD_INPUT = 2

# Options read the same way by `unseg protect` and `unseg verify` (one definition each).
MASKS_HELP = ("Folder of masks matched by file stem (mirrored layout). Binary (0/1, 0/255) or class-index PNGs; "
              "region = every non-zero, non-ignored label unless --classes.")
CLASSES_HELP = ("Only these classes form the region: ids or names, comma separated (e.g. 1,3 or car,person). "
                "Names come from COCO categories or --class-names.")
CLASS_NAMES_HELP = ("Class names for --masks: text file (one name per line, line number = id, or 'id name' lines) "
                    "or JSON {name: id}.")
IGNORE_INDEX_HELP = "Mask values that are never objects, comma separated (e.g. 255, or 11 for CamVid void)."
STORED_BUDGET_HELP = ("Default: the generator's stored protection budget (the epsilon.protect of the `unseg train` "
                      "run that made it: 8 / 2 for the shipped weights), else 8 / 2.")


def classes_option():
    """``--classes``, as ``protect`` and ``verify`` read it."""
    return typer.Option(None, "--classes", help=CLASSES_HELP)


def class_names_option():
    """``--class-names``, as ``protect`` and ``verify`` read it."""
    return typer.Option(None, "--class-names", help=CLASS_NAMES_HELP)


def ignore_index_option():
    """``--ignore-index``, as ``protect`` and ``verify`` read it."""
    return typer.Option(None, "--ignore-index", help=IGNORE_INDEX_HELP)


def fail(message: str) -> typer.Exit:
    """Print ``message`` on stderr and return the exit for bad input (code 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(BAD_INPUT)


def split_list(text: str | None) -> list[str]:
    """``"1, 3,car"`` -> ``["1", "3", "car"]``; None -> []."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def parse_ignore_index(text: str | None) -> list[int]:
    try:
        return [int(value) for value in split_list(text)]
    except ValueError:
        raise fail(f"--ignore-index takes integers like 255 or 11,255, got {text!r}") from None


def check_device(name: str) -> None:
    """Exit with code 2 unless ``--device`` names a device this machine has (:mod:`unseg.devices`)."""
    from unseg.devices import DeviceError, resolve_device

    try:
        resolve_device(name)
    except DeviceError as error:
        raise fail(f"--device: {error}") from None


def parse_budget(epsilon: float | None, epsilon_bg: float | None, base: Budget = DEFAULT_BUDGET) -> Budget:
    """The budget of ``--epsilon`` / ``--epsilon-bg`` (1/255 units); an option not given keeps
    ``base``'s value. Exits with code 2 unless 0 <= ε_bg <= ε <= 255."""
    inside = base.epsilon if epsilon is None else epsilon
    outside = base.epsilon_bg if epsilon_bg is None else epsilon_bg
    try:
        return Budget(inside, outside)
    except ValueError:
        raise fail(f"need 0 <= --epsilon-bg ({outside:g}) <= --epsilon ({inside:g}) <= 255 (units of 1/255)") from None


def build_source(
    images_dir: Path,
    out_dir: Path,
    masks: Path | None,
    coco: Path | None,
    prompts: Path | None,
    classes: list[str],
    class_names_file: Path | None,
    ignore_index: list[int],
    jpeg: bool,
    keying: str = "class",
) -> list[ProtectItem]:
    """The items to protect for the chosen prompt source (raises SourceError on bad input)."""
    from unseg.data.sources import SourceError, coco_source, folder_source, plain_source, prompts_source, read_class_names

    if sum(option is not None for option in (masks, coco, prompts)) > 1:
        raise SourceError("give at most one of --masks, --coco, --prompts")
    if classes and masks is None and coco is None:
        raise SourceError("--classes needs --masks or --coco")
    if class_names_file is not None and masks is None:
        raise SourceError("--class-names applies to --masks (COCO files name their categories)")
    if ignore_index and masks is None:
        raise SourceError("--ignore-index applies to --masks")
    exclude = [out_dir]
    if masks is not None:
        names = read_class_names(class_names_file) if class_names_file is not None else None
        return folder_source(images_dir, masks, classes=classes, class_names=names, ignore_index=ignore_index,
                             jpeg=jpeg, exclude=exclude, keying=keying)
    if coco is not None:
        return coco_source(images_dir, coco, classes=classes, jpeg=jpeg, exclude=exclude, keying=keying)
    if prompts is not None:
        return prompts_source(images_dir, prompts, jpeg=jpeg, exclude=exclude)
    typer.echo("note: no --masks/--coco/--prompts: images get the background budget ε_bg only", err=True)
    return plain_source(images_dir, jpeg=jpeg, exclude=exclude)


def load_protector(generator: str, sam_checkpoint: Path | None, device: str, epsilon: float | None,
                   epsilon_bg: float | None, seed: int, batch_size: int, saturate: bool = True,
                   refine: tuple[str, dict] | None = None, fit: str | None = None) -> Protector:
    """The protector for CLI options; bad options exit with code 2.

    ``epsilon`` / ``epsilon_bg`` (1/255 units) not given: the generator checkpoint's stored
    protection budget (a trained run's ``epsilon.protect``), else the default 8 / 2.
    ``refine``: (segmenter, :class:`~unseg.protection.refine.RefineSchedule` fields) of a protect-time refinement
    (:mod:`unseg.protection.refine`); bad fields exit with code 2 too. ``fit``: how images enter the
    generator's input (:data:`unseg.data.transforms.INPUT_FITS`; None: the protector's default).
    """
    from unseg.data.transforms import DEFAULT_FIT
    from unseg.models import CheckpointError
    from unseg.protection.protector import Protector
    from unseg.protection.refine import RefineSchedule, Refiner

    check_device(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            refiner = (None if refine is None
                       else Refiner.load(refine[0], RefineSchedule(**refine[1]), device))
            protector = Protector.load(generator, device=device, seed=seed, sam_checkpoint=sam_checkpoint,
                                       batch_size=batch_size, saturate=saturate, refiner=refiner,
                                       fit=DEFAULT_FIT if fit is None else fit)
        except (CheckpointError, FileNotFoundError, ValueError, KeyError) as error:
            raise fail(str(error)) from error
    for warning in caught:
        typer.echo(f"WARNING: {warning.message}", err=True)
    if epsilon is not None or epsilon_bg is not None:
        protector = protector.with_budget(parse_budget(epsilon, epsilon_bg, protector.budget))
    return protector


def report(summary: ProtectSummary, out_dir: Path) -> None:
    """Summary line on stdout, each failure on stderr; exit 1 when anything failed."""
    for description, message in summary.failures:
        typer.echo(f"failed: {description}: {message}", err=True)
    typer.echo(f"{summary} -> {out_dir} (manifest: {summary.manifest})")
    if summary.failed:
        raise typer.Exit(1)
