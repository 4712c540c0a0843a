"""``unseg protect``: protect a folder of images with masks, COCO annotations or box/point prompts.

The library (torch, the generator, the readers) is imported inside the functions that use it, so
``unseg --help`` does not load it.
"""

from __future__ import annotations

from pathlib import Path

import typer

from unseg.cli.common import (
    MASKS_HELP,
    STORED_BUDGET_HELP,
    build_source,
    class_names_option,
    classes_option,
    fail,
    ignore_index_option,
    load_protector,
    parse_ignore_index,
    report,
    split_list,
)
from unseg.cli.main import app
from unseg.devices import DEVICE_HELP

JPEG_WARNING = (
    "WARNING: JPEG output re-quantises the pixels: the exact ε bound no longer holds and the "
    "protective noise is weakened. Prefer the default lossless PNG."
)


@app.command("protect")
def protect_command(
    images_dir: Path = typer.Argument(..., help="Folder of images to protect (searched recursively)."),
    out_dir: Path = typer.Argument(..., help="Output folder; mirrors the input layout, plus manifest.jsonl."),
    masks: Path | None = typer.Option(None, "--masks", help=MASKS_HELP),
    coco: Path | None = typer.Option(None, "--coco", help="COCO instances JSON (polygons or RLE); region = union "
                                     "of the selected instances."),
    prompts: Path | None = typer.Option(None, "--prompts", help="Boxes/points file. JSON: {\"img.jpg\": {\"boxes\": "
                                        "[[x0,y0,x1,y1]], \"points\": [[x,y]], \"point_labels\": [1]}}. CSV with header "
                                        "image,x0,y0,x1,y1 (one box per row) or image,x,y[,label] (one point per "
                                        "row, label 1 positive / 0 negative). Image pixel coordinates."),
    classes: str | None = classes_option(),
    class_names: Path | None = class_names_option(),
    ignore_index: str | None = ignore_index_option(),
    keying: str = typer.Option("class", "--keying", help="Noise key of each object of --masks / --coco: 'class' "
                               "(its class / category id: one noise code per class, what semantic victims learn; "
                               "for class-index masks and COCO) or 'instance' (1, 2, ... per image: neighbouring "
                               "instances differ; for instance-id masks). An object keyed 0 gets no noise (the null code)."),
    generator: str = typer.Option("default", "--generator", help="default (shipped weights), a preset (small, "
                                  "keyed, vit_b: UNTRAINED, random init) or a generator .safetensors checkpoint."),
    sam_checkpoint: Path | None = typer.Option(None, "--sam-checkpoint", help="Official SAM weights loaded into a "
                                               "preset generator's SAM part."),
    epsilon: float | None = typer.Option(None, "--epsilon", help="Budget on the protected objects in 1/255 units of "
                                         "the intensity range: 8 means |change| <= 8/255 (8 levels for 8-bit "
                                         "images). " + STORED_BUDGET_HELP),
    epsilon_bg: float | None = typer.Option(None, "--epsilon-bg", help="Budget outside the objects, in 1/255 units. "
                                            + STORED_BUDGET_HELP),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Images per generator forward pass."),
    workers: int = typer.Option(2, "--workers", min=0, help="Threads that decode the next batch and encode the "
                                "last one's PNGs while the generator works (0: all in one thread; the outputs are "
                                "the same)."),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP + "."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random initialisation (preset generators only)."),
    raw_noise: bool = typer.Option(False, "--raw-noise", help="Add the generator's noise as it is, instead of "
                                   "saturating it (colour cast removed, then ±ε on every pixel): weaker protection, "
                                   "higher PSNR."),
    fit: str | None = typer.Option(None, "--fit", show_default=False, help="How each image enters the "
                                      "generator's square input: square (default; stretched, so the noise pattern "
                                      "lands in the same relative place on every image, as a victim that resizes its "
                                      "training images to one fixed size sees it) or letterbox (aspect kept and "
                                      "padded, as the generator was trained; for victims that keep each image's "
                                      "aspect). Recorded in the manifest."),
    refine: bool = typer.Option(False, "--refine", help="EXPERIMENTAL, not yet shown to protect (README). After the "
                                "generator, move part of each image's budget (--refine-share) against a frozen interactive segmenter "
                                "(shipped: SAM-layout, trained on CamVid only): misleading noise aimed at box-prompted "
                                "interactive victims (SAM-like). --refine-steps segmenter passes per image and view."),
    refine_steps: int = typer.Option(10, "--refine-steps", min=1, help="With --refine: gradient steps per image."),
    refine_share: float = typer.Option(0.5, "--refine-share", help="With --refine: the share of every pixel's budget "
                                       "the refinement takes, in (0, 1]; the generator's noise keeps the rest (1: "
                                       "none, the generator only places the objects)."),
    refine_views: str = typer.Option("letterbox,square", "--refine-views", help="With --refine: comma-separated "
                                     "resizes a victim may apply that the refinement is made through: letterbox "
                                     "(aspect kept, padded; SAM) and/or square (stretched to a square). One segmenter "
                                     "pass per view and step."),
    refine_grid: float = typer.Option(4.0, "--refine-grid", help="With --refine: side of the grid the refinement lives "
                                      "on, in units of the segmenter's input side (below 1: coarser than any view, "
                                      "bilinearly upsampled)."),
    refine_segmenter: str = typer.Option("default", "--refine-segmenter", help="With --refine: 'default' (shipped) or "
                                         "an unseg surrogate .safetensors (benchmarks/clean_surrogate.py)."),
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
    try:
        source = build_source(images_dir, out_dir, masks, coco, prompts, split_list(classes), class_names,
                              parse_ignore_index(ignore_index), jpeg=jpeg_quality is not None, keying=keying)
    except SourceError as error:
        raise fail(str(error)) from error
    if not source:
        raise fail(f"no images found in {images_dir}")
    protector = load_protector(generator, sam_checkpoint, device, epsilon, epsilon_bg, seed, batch_size,
                               saturate=not raw_noise,
                               refine=(refine_segmenter, {"steps": refine_steps, "share": refine_share, "grid": refine_grid,
                                                          "views": tuple(split_list(refine_views))})
                               if refine else None, fit=fit)
    if jpeg_quality is not None:
        typer.echo(JPEG_WARNING, err=True)
    summary = protect_dataset(source, out_dir, protector, jpeg_quality=jpeg_quality, resume=not no_resume,
                              workers=workers)
    report(summary, out_dir)
