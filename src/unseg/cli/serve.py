"""``unseg serve``: a local web page to protect images (upload, mark, protect, download)."""

from __future__ import annotations

import os

import typer

from unseg.cli.common import check_device, fail
from unseg.cli.main import app
from unseg.devices import DEVICE_HELP

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_GENERATOR = "default"


@app.command("serve")
def serve_command(
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to bind. The default serves this computer only; "
                             "0.0.0.0 exposes the page to the network (there is no login)."),
    port: int = typer.Option(DEFAULT_PORT, "--port", min=0, max=65535, help="Port (0: any free port)."),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP + "."),
    generator: list[str] | None = typer.Option(None, "--generator", help="A generator .safetensors checkpoint (or a "
                                               "preset name) offered on the page besides the shipped default; "
                                               "repeat for several. The first given is preselected."),
    max_upload_mb: float = typer.Option(25.0, "--max-upload-mb", min=0.01, help="Largest upload, in MiB."),
    max_megapixels: float = typer.Option(16.8, "--max-megapixels", min=0.001, help="Largest image (width x height), "
                                         "in megapixels (16.8 = 4096x4096)."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Images per generator forward pass."),
) -> None:
    """Protect images in the browser: a local web page (upload, mark, protect, download).

    Upload images, mark the object (points, a box, or an uploaded or painted mask), set
    ε / ε_bg, protect, and download lossless PNGs (a zip with the manifest for a batch).
    Everything is kept in a temporary folder, deleted on exit.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever fetched at run time
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise fail(f"unseg serve needs the serve extra: pip install 'unseg[serve]' ({error})") from error
    from unseg.models import CheckpointError
    from unseg.serve.protectors import ProtectorPool
    from unseg.serve.server import bind, run_server
    from unseg.serve.workspace import ServeLimits

    check_device(device)
    try:
        pool = ProtectorPool.load([*(generator or []), DEFAULT_GENERATOR], device=device, batch_size=batch_size)
    except (CheckpointError, FileNotFoundError, ValueError, KeyError) as error:
        raise fail(str(error)) from error
    limits = ServeLimits(max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=int(max_megapixels * 1e6))
    try:
        sock = bind(host, port)
    except OSError as error:
        raise fail(f"cannot listen on {host}:{port}: {error}") from error
    for choice in pool.choices():
        for note in choice["notes"]:
            typer.echo(f"WARNING: {choice['name']}: {note}", err=True)
    run_server(pool, sock, limits, announce=typer.echo)
    typer.echo("unseg serve: stopped, temporary folder deleted")
