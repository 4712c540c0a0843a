"""``unseg protect``: protect a folder of images with masks, COCO annotations or box/point prompts.

The library (torch, the generator, the readers) is imported inside the functions that use it, so
``unseg --help`` does not load it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from unseg.cli.main import app
from unseg.cli.options import check_budget, fail, parse_ignore_index, split_list

if TYPE_CHECKING:
    from unseg.data.sources import ProtectItem
    from unseg.protection.pipeline import ProtectSummary
    from unseg.protection.protector import Protector

JPEG_WARNING = (
    "WARNING: JPEG output re-quantises the pixels: the exact ε bound no longer holds and the "
    "protective noise is weakened. Prefer the default lossless PNG."
)


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


def load_protector(generator: str, sam_checkpoint: Path | None, device: str, epsilon: float, epsilon_bg: float,
                   seed: int, batch_size: int, saturate: bool = True) -> Protector:
    """The protector for CLI options (ε given in /255 units); bad options exit with code 2."""
    import torch

    from unseg.models import CheckpointError
    from unseg.protection.protector import Protector

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise fail("--device cuda asked for, but no CUDA device is available")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            protector = Protector.load(generator, device=device, epsilon=epsilon / 255, epsilon_bg=epsilon_bg / 255,
                                       seed=seed, sam_checkpoint=sam_checkpoint, batch_size=batch_size,
                                       saturate=saturate)
        except (CheckpointError, FileNotFoundError, ValueError, KeyError) as error:
            raise fail(str(error)) from error
    for warning in caught:
        typer.echo(f"WARNING: {warning.message}", err=True)
    return protector


def report(summary: ProtectSummary, out_dir: Path) -> None:
    """Summary line on stdout, each failure on stderr; exit 1 when anything failed."""
    for description, message in summary.failures:
        typer.echo(f"failed: {description}: {message}", err=True)
    typer.echo(f"{summary} -> {out_dir} (manifest: {summary.manifest})")
    if summary.failed:
        raise typer.Exit(1)


@app.command("protect")
def protect_command(
    images_dir: Path = typer.Argument(..., help="Folder of images to protect (searched recursively)."),
    out_dir: Path = typer.Argument(..., help="Output folder; mirrors the input layout, plus manifest.jsonl."),
    masks: Path | None = typer.Option(None, "--masks", help="Folder of masks matched by file stem (mirrored layout). "
                                      "Binary (0/1, 0/255) or class-index PNGs; region = every non-zero, "
                                      "non-ignored label unless --classes."),
    coco: Path | None = typer.Option(None, "--coco", help="COCO instances JSON (polygons or RLE); region = union "
                                     "of the selected instances."),
    prompts: Path | None = typer.Option(None, "--prompts", help="Boxes/points file. JSON: {\"img.jpg\": {\"boxes\": "
                                        "[[x0,y0,x1,y1]], \"points\": [[x,y]], \"point_labels\": [1]}}. CSV with header "
                                        "image,x0,y0,x1,y1 (one box per row) or image,x,y[,label] (one point per "
                                        "row, label 1 positive / 0 negative). Image pixel coordinates."),
    classes: str | None = typer.Option(None, "--classes", help="Only these classes: ids or names, comma separated "
                                       "(e.g. 1,3 or car,person). Names come from COCO categories or --class-names."),
    class_names: Path | None = typer.Option(None, "--class-names", help="Class names for --masks: text file (one "
                                            "name per line, line number = id, or 'id name' lines) or JSON "
                                            "{name: id}."),
    ignore_index: str | None = typer.Option(None, "--ignore-index", help="Mask values that are never objects, "
                                            "comma separated (e.g. 255, or 11 for CamVid void)."),
    keying: str = typer.Option("class", "--keying", help="Noise key of each object of --masks / --coco: 'class' "
                               "(its class / category id: one noise code per class, what semantic victims learn; "
                               "for class-index masks and COCO) or 'instance' (1, 2, ... per image: neighbouring "
                               "instances differ; for instance-id masks). An object keyed 0 gets no noise (the null code)."),
    generator: str = typer.Option("default", "--generator", help="default (shipped weights), a preset (small, "
                                  "vit_b: UNTRAINED, random init) or a generator .safetensors checkpoint."),
    sam_checkpoint: Path | None = typer.Option(None, "--sam-checkpoint", help="Official SAM weights loaded into a "
                                               "preset generator's SAM part."),
    epsilon: float = typer.Option(8.0, "--epsilon", help="Budget on the protected objects in 1/255 units of the "
                                  "intensity range: 8 means |change| <= 8/255 (8 levels for 8-bit images)."),
    epsilon_bg: float = typer.Option(2.0, "--epsilon-bg", help="Budget outside the objects, in 1/255 units."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Images per generator forward pass."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random initialisation (preset generators only)."),
    raw_noise: bool = typer.Option(False, "--raw-noise", help="Add the generator's noise as it is, instead of "
                                   "saturating it (colour cast removed, then ±ε on every pixel): weaker protection, "
                                   "higher PSNR."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Redo images that are already in the manifest."),
    jpeg_quality: int | None = typer.Option(None, "--jpeg-quality", min=1, max=100, help="Write JPEG of this "
                                            "quality instead of PNG. Weakens protection and breaks the exact bound."),
) -> None:
    """Protect every image in IMAGES_DIR and write the protected copies to OUT_DIR.

    Each output pixel changes by at most ε on the protected objects (from --masks, --coco or
    --prompts) and at most ε_bg elsewhere, exactly, in lossless PNG (16-bit grayscale stays
    16-bit, alpha is kept). Failed images are listed and the rest still processed (exit code 1);
    bad options exit with code 2. Re-running resumes: finished images are skipped.
    """
    from unseg.data.sources import SourceError
    from unseg.protection.pipeline import protect_dataset

    if not images_dir.is_dir():
        raise fail(f"images folder not found: {images_dir}")
    check_budget(epsilon, epsilon_bg)
    try:
        source = build_source(images_dir, out_dir, masks, coco, prompts, split_list(classes), class_names,
                              parse_ignore_index(ignore_index), jpeg=jpeg_quality is not None, keying=keying)
    except SourceError as error:
        raise fail(str(error)) from error
    if not source:
        raise fail(f"no images found in {images_dir}")
    protector = load_protector(generator, sam_checkpoint, device, epsilon, epsilon_bg, seed, batch_size,
                               saturate=not raw_noise)
    if jpeg_quality is not None:
        typer.echo(JPEG_WARNING, err=True)
    summary = protect_dataset(source, out_dir, protector, jpeg_quality=jpeg_quality, resume=not no_resume)
    report(summary, out_dir)
