"""``unseg demo``: protect three bundled sample photos end to end and show clean | noise | protected."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from unseg.cli.common import STORED_BUDGET_HELP, build_source, load_protector, report
from unseg.cli.main import app
from unseg.devices import DEVICE_HELP

# scikit-image's bundled photos (no download) with a hand-picked box (x0, y0, x1, y1) around the subject.
SAMPLES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "astronaut": ("astronaut", (20, 10, 370, 511)),  # the person (not the helmet or the shuttle)
    "coffee": ("coffee", (165, 5, 425, 255)),  # the cup
    "chelsea": ("chelsea", (40, 0, 390, 295)),  # the cat's head
}


def write_samples(input_dir: Path) -> dict[str, dict[str, list[list[int]]]]:
    """Write the sample photos as PNGs into ``input_dir``; return their prompts-file entries."""
    import skimage.data

    from unseg.data.images import write_image

    prompts = {}
    for name, (loader, box) in SAMPLES.items():
        write_image(input_dir / f"{name}.png", getattr(skimage.data, loader)())
        prompts[f"{name}.png"] = {"boxes": [list(box)]}
    return prompts


def side_by_side(input_dir: Path, protected_dir: Path, prompts: dict, amplify: float, path: Path) -> None:
    """Figure: per image, clean (with its box) | amplified noise | protected; saved to ``path``."""
    import matplotlib
    import numpy as np

    from unseg.data.images import read_image
    from unseg.protection.pipeline import MANIFEST_NAME, read_manifest

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    records = {record["source"]: record for record in read_manifest(protected_dir / MANIFEST_NAME)}
    fig, axes = plt.subplots(len(prompts), 3, figsize=(12, 3.6 * len(prompts)), squeeze=False)
    for row, (name, entry) in enumerate(prompts.items()):
        clean = read_image(input_dir / name).pixels
        protected = read_image(protected_dir / Path(name).with_suffix(".png")).pixels
        noise = np.clip((protected.astype(np.int32) - clean) * amplify + 128, 0, 255).astype(np.uint8)
        record = records.get(name, {})
        axes[row, 0].imshow(clean)
        for x0, y0, x1, y1 in entry["boxes"]:
            axes[row, 0].add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="lime", linewidth=2))
        axes[row, 0].set_title(f"clean + box prompt ({name})")
        axes[row, 1].imshow(noise)
        axes[row, 1].set_title(f"noise x{amplify:g} + 128 (L∞ in/out: {record.get('linf_inside')}/"
                               f"{record.get('linf_outside')} levels)")
        axes[row, 2].imshow(protected)
        psnr = record.get("psnr")
        axes[row, 2].set_title("protected" + (f" (PSNR {psnr:.1f} dB)" if psnr else ""))
        for axis in axes[row]:
            axis.axis("off")
    generator = next(iter(records.values()), {}).get("generator", {})
    trained = "trained" if generator.get("trained") else "UNTRAINED: noise not optimised, protection weak"
    fig.suptitle(f"generator {generator.get('generator')} ({trained})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


@app.command("demo")
def demo_command(
    out_dir: Path = typer.Argument(..., help="Folder for the demo: input/, prompts.json, protected/, side_by_side.png."),
    generator: str = typer.Option("default", "--generator", help="default, a preset (small, vit_b) or a checkpoint."),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP + "."),
    epsilon: float | None = typer.Option(None, "--epsilon", help="Budget on the boxed object, in 1/255 units. "
                                         + STORED_BUDGET_HELP),
    epsilon_bg: float | None = typer.Option(None, "--epsilon-bg", help="Budget elsewhere, in 1/255 units. "
                                            + STORED_BUDGET_HELP),
    amplify: float = typer.Option(10.0, "--amplify", help="Noise amplification in the side-by-side figure."),
) -> None:
    """Protect three sample photos (scikit-image's astronaut, coffee, chelsea) with a box prompt each.

    Runs the same pipeline as `unseg protect OUT_DIR/input OUT_DIR/protected --prompts
    OUT_DIR/prompts.json` and draws OUT_DIR/side_by_side.png.
    """
    from unseg.protection.pipeline import MANIFEST_NAME, protect_dataset

    input_dir, protected_dir = out_dir / "input", out_dir / "protected"
    prompts = write_samples(input_dir)
    prompts_file = out_dir / "prompts.json"
    prompts_file.write_text(json.dumps(prompts, indent=2))
    (protected_dir / MANIFEST_NAME).unlink(missing_ok=True)  # a demo always starts fresh
    source = build_source(input_dir, protected_dir, None, None, prompts_file, [], None, [], jpeg=False)
    protector = load_protector(generator, None, device, epsilon, epsilon_bg, seed=0, batch_size=len(source))
    summary = protect_dataset(source, protected_dir, protector, resume=False)
    figure = out_dir / "side_by_side.png"
    side_by_side(input_dir, protected_dir, prompts, amplify, figure)
    typer.echo(f"inputs:    {input_dir}  (box prompts in {prompts_file})")
    typer.echo(f"protected: {protected_dir}  (manifest {protected_dir / MANIFEST_NAME})")
    typer.echo(f"figure:    {figure}")
    report(summary, protected_dir)
