"""What ``unseg serve`` does, without the web part: uploads, masks, protection jobs, results.

Everything is written under one folder (the server's temporary folder) and nowhere else:

    ROOT/uploads/<id>/original<suffix>   the uploaded bytes, as sent
    ROOT/uploads/<id>/preview.png        upright 8-bit RGB view (what the browser marks on)
    ROOT/uploads/<id>/mask-<n>.png       an uploaded or painted mask
    ROOT/jobs/<id>/protected/*.png       lossless outputs + manifest.jsonl (``protect_dataset``)
    ROOT/jobs/<id>/views/*.png           noise x10 and the zoomed crop per image
    ROOT/jobs/<id>/unseg-protected.zip   every output + the manifest

Protection goes through the library's own dataset pipeline
(:func:`unseg.protection.pipeline.protect_dataset` with a :class:`~unseg.protection.Protector`),
so a downloaded file and its manifest line are what ``unseg protect`` writes for the same
prompt. Bad input raises :class:`ServeError` with a message for the user; nothing is written
for it. The oldest uploads and jobs are deleted beyond the limits' counts.
"""

from __future__ import annotations

import re
import shutil
import threading
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unseg.budget import DEFAULT_BUDGET, Budget

ZIP_NAME = "unseg-protected.zip"
NOISE_AMPLIFY = 10
ZOOM_SIDE = 96  # crop side in image pixels (smaller images: their short side)
ZOOM_SCALE = 2
MAX_EPSILON = 32  # the sliders' range, in 1/255 units
ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


class ServeError(ValueError):
    """Bad input from the browser; the message is shown to the user as it is."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServeLimits:
    """What one server accepts.

    Attributes:
        max_upload_bytes: largest upload (image or mask file), in bytes.
        max_pixels: largest image, width x height (also bounds memory and protection time:
            ~0.5 s per megapixel on 2 CPU cores).
        max_images: images per protection request.
        keep_uploads / keep_jobs: how many uploads / finished jobs stay on disk (oldest deleted).
    """

    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_images: int = 32
    keep_uploads: int = 64
    keep_jobs: int = 16

    def describe(self) -> str:
        return (f"uploads up to {self.max_upload_bytes / 2**20:g} MiB and {self.max_pixels / 1e6:.1f} megapixels, "
                f"{self.max_images} images per request")


@dataclass
class Upload:
    """One uploaded image: ``size`` is (height, width) upright; ``masks`` maps mask id -> file."""

    id: str
    name: str
    folder: Path
    original: Path
    size: tuple[int, int]
    masks: dict[str, Path] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "height": self.size[0], "width": self.size[1],
                "preview": f"/api/uploads/{self.id}/preview.png"}


ProtectorFactory = Callable[[str, Budget], Any]  # (generator choice, budget) -> Protector


class Workspace:
    """Uploads and jobs of one server, all under ``root``; safe to call from several threads.

    ``protector_factory(choice, budget)`` returns the
    :class:`~unseg.protection.Protector` for a generator choice (one of ``generators``) and a
    budget; see :class:`unseg.serve.protectors.ProtectorPool`.
    """

    def __init__(self, root: str | Path, protector_factory: ProtectorFactory, generators: list[dict[str, Any]],
                 limits: ServeLimits = ServeLimits()) -> None:
        self.root = Path(root)
        self.protector_factory = protector_factory
        self.generators = generators
        self.limits = limits
        self._uploads: OrderedDict[str, Upload] = OrderedDict()
        self._jobs: OrderedDict[str, dict[str, Path]] = OrderedDict()
        self._lock = threading.Lock()  # registries
        self._protect_lock = threading.Lock()  # one protection at a time (the CPU is the limit anyway)
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)

    def info(self) -> dict[str, Any]:
        """What the page needs to set itself up."""
        return {"generators": self.generators, "defaults": {"epsilon": DEFAULT_BUDGET.epsilon,
                                                                  "epsilon_bg": DEFAULT_BUDGET.epsilon_bg},
                "max_epsilon": MAX_EPSILON, "views": {"noise_amplify": NOISE_AMPLIFY, "zoom_scale": ZOOM_SCALE},
                "limits": {"max_upload_bytes": self.limits.max_upload_bytes, "max_pixels": self.limits.max_pixels,
                           "max_images": self.limits.max_images, "text": self.limits.describe()}}

    # uploads ---------------------------------------------------------------------------------

    def add_upload(self, name: str, data: bytes) -> Upload:
        """Store an uploaded image after checking it is one (by content), within the limits."""
        from unseg.data.images import write_image

        name = display_name(name)
        self._check_bytes(name, data)
        upload_id = uuid.uuid4().hex
        folder = self.root / "uploads" / upload_id
        folder.mkdir()
        try:
            original = folder / f"original{Path(name).suffix.lower()[:8]}"
            original.write_bytes(data)
            loaded = self._read_upload(name, original)
            write_image(folder / "preview.png", loaded.rgb8())
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        upload = Upload(upload_id, name, folder, original, loaded.size)
        with self._lock:
            self._uploads[upload_id] = upload
            while len(self._uploads) > self.limits.keep_uploads:
                _, old = self._uploads.popitem(last=False)
                shutil.rmtree(old.folder, ignore_errors=True)
        return upload

    def add_mask(self, upload_id: str, name: str, data: bytes) -> dict[str, Any]:
        """Store a mask (uploaded file or painted in the page) for an upload; must match its size.

        Binary (0/1, 0/255) and class-index masks are accepted, as for ``unseg protect --masks``:
        every non-zero label is an object of its own.
        """
        from unseg.data.images import ImageReadError, read_mask

        upload = self.upload(upload_id)
        name = display_name(name)
        self._check_bytes(name, data)
        path = upload.folder / f"mask-{len(upload.masks) + 1}.png"
        path.write_bytes(data)
        try:
            self._check_pixels(name, path)
            labels = read_mask(path)
        except ImageReadError as error:
            path.unlink()
            raise ServeError(f"mask {name}: {_without_path(str(error), path)}") from None
        except ServeError:
            path.unlink()
            raise
        if labels.shape != upload.size:
            path.unlink()
            raise ServeError(f"mask {name} is {labels.shape[1]}x{labels.shape[0]} but image {upload.name} is "
                             f"{upload.size[1]}x{upload.size[0]}: a mask must have its image's size")
        mask_id = uuid.uuid4().hex
        upload.masks[mask_id] = path
        objects = len(set(np.unique(labels).tolist()) - {0})
        return {"id": mask_id, "fraction": float((labels != 0).mean()), "objects": objects}

    def upload(self, upload_id: str) -> Upload:
        with self._lock:
            upload = self._uploads.get(upload_id) if ID_PATTERN.match(str(upload_id)) else None
        if upload is None:
            raise ServeError("unknown image (it may have expired: upload it again)", status=404)
        return upload

    def _check_bytes(self, name: str, data: bytes) -> None:
        if len(data) > self.limits.max_upload_bytes:
            raise ServeError(f"{name} is {len(data) / 2**20:.1f} MiB; the upload limit is "
                             f"{self.limits.max_upload_bytes / 2**20:g} MiB", status=413)
        if not data:
            raise ServeError(f"{name} is empty")

    def _check_pixels(self, name: str, path: Path) -> None:
        """Header-only size check, before any decoding (no decompression bombs)."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                width, height = image.size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise ServeError(f"{name} is not an image (readable formats: PNG, JPEG, TIFF, BMP, WebP)") from None
        if width * height > self.limits.max_pixels:
            raise ServeError(f"{name} is {width}x{height} = {width * height / 1e6:.1f} megapixels; the limit is "
                             f"{self.limits.max_pixels / 1e6:.1f}", status=413)

    def _read_upload(self, name: str, path: Path):
        from PIL import Image

        from unseg.data.images import ImageReadError, read_image

        self._check_pixels(name, path)
        try:
            return read_image(path)
        except (ImageReadError, Image.DecompressionBombError, ValueError) as error:
            raise ServeError(f"{name} cannot be decoded: {_without_path(str(error), path)}") from None

    # protection -------------------------------------------------------------------------------

    def protect(self, request: dict[str, Any]) -> dict[str, Any]:
        """Protect the images of a request; returns per-image results, failures and the zip.

        ``request``: ``{"generator": choice, "epsilon": 8, "epsilon_bg": 2, "images": [{"id": ...,
        "boxes": [[x0, y0, x1, y1]], "points": [[x, y]], "point_labels": [1], "mask": mask id}]}``,
        budgets in 1/255 units, coordinates in image pixels. An image with no mark is protected
        whole, at ε ("protect everything").
        """
        from unseg.data.sources import ProtectItem
        from unseg.protection.pipeline import MANIFEST_NAME, protect_dataset, read_manifest

        if not isinstance(request, dict):
            raise ServeError("the request must be a JSON object")
        budget = _budget(request)
        choice = request.get("generator", self.generators[0]["name"])
        if choice not in {generator["name"] for generator in self.generators}:
            raise ServeError(f"unknown generator {choice!r}")
        entries = request.get("images")
        if not isinstance(entries, list) or not entries:
            raise ServeError("upload at least one image first")
        if len(entries) > self.limits.max_images:
            raise ServeError(f"{len(entries)} images in one request; the limit is {self.limits.max_images}")
        items, names = [], set()
        for entry in entries:
            upload, prompt = self._prompt(entry)
            stem = _unique(Path(upload.name).stem, names)  # two uploads of one name stay apart
            items.append(ProtectItem(upload.original, Path(f"{stem}.png"), stem + Path(upload.name).suffix,
                                     lambda p=prompt: p))
        job_id = uuid.uuid4().hex
        job = self.root / "jobs" / job_id
        protector = self.protector_factory(choice, budget)
        with self._protect_lock:
            summary = protect_dataset(items, job / "protected", protector, resume=False, progress=False)
        records = {record["output"]: record for record in read_manifest(job / "protected" / MANIFEST_NAME)
                   if "error" not in record}
        files: dict[str, Path] = {MANIFEST_NAME: job / "protected" / MANIFEST_NAME}
        results = []
        for item, entry in zip(items, entries):
            record = records.get(item.output_path.as_posix())
            if record is None:
                continue
            views = _write_views(item.image_path, job / "protected" / record["output"], job / "views",
                                 Path(record["output"]).stem, record)
            files[record["output"]] = job / "protected" / record["output"]
            files.update({path.name: path for path in views.values()})
            results.append({
                "name": item.description, "output": record["output"], "upload": entry["id"],
                "download": f"/api/jobs/{job_id}/{record['output']}",
                "views": {"clean": f"/api/uploads/{entry['id']}/preview.png",
                          "protected": f"/api/jobs/{job_id}/{record['output']}",
                          **{kind: f"/api/jobs/{job_id}/{path.name}" for kind, path in views.items()}},
                "stats": {key: record.get(key) for key in ("prompt", "linf_inside", "linf_outside", "psnr", "ssim",
                                                            "region_fraction", "num_objects")}
                | {"epsilon_levels": record["epsilon"]["levels"], "epsilon_bg_levels": record["epsilon_bg"]["levels"]},
            })
        zip_url = None
        if results:
            files[ZIP_NAME] = _write_zip(job / ZIP_NAME, [files[r["output"]] for r in results], files[MANIFEST_NAME])
            zip_url = f"/api/jobs/{job_id}/{ZIP_NAME}"
        with self._lock:
            self._jobs[job_id] = files
            while len(self._jobs) > self.limits.keep_jobs:
                old, _ = self._jobs.popitem(last=False)
                shutil.rmtree(self.root / "jobs" / old, ignore_errors=True)
        return {"job": job_id, "results": results, "zip": zip_url,
                "generator": {"choice": choice, **protector.describe()},
                "failures": [{"name": name, "error": message} for name, message in summary.failures]}

    def _prompt(self, entry: Any):
        """(upload, ImagePrompt) of one request entry; bad marks raise ServeError naming the image."""
        from unseg.data.images import read_mask
        from unseg.data.prompts import ImagePrompt

        if not isinstance(entry, dict) or "id" not in entry:
            raise ServeError("each image entry needs the id of an upload")
        upload = self.upload(entry["id"])
        objects = None
        if entry.get("mask"):
            path = upload.masks.get(str(entry["mask"]))
            if path is None:
                raise ServeError(f"{upload.name}: unknown mask (upload or paint it again)")
            labels = read_mask(path)
            objects = [labels == label for label in sorted(set(np.unique(labels).tolist()) - {0})]
        try:
            prompt = ImagePrompt(boxes=entry.get("boxes") or None, points=entry.get("points") or None,
                                 point_labels=entry.get("point_labels") or None, objects=objects or None)
            if prompt.kind == "none":  # nothing marked: protect everything
                prompt = ImagePrompt(mask=np.ones(upload.size, bool))
            prompt.check_fits(*upload.size)
        except (ValueError, TypeError) as error:
            raise ServeError(f"{upload.name}: {error}") from None
        return upload, prompt

    def job_file(self, job_id: str, name: str) -> Path:
        """A file of a finished job, by its listed name only (no paths from the browser)."""
        with self._lock:
            path = self._jobs.get(job_id, {}).get(name)
        if path is None or not path.is_file():
            raise ServeError("no such result (it may have expired: protect again)", status=404)
        return path

    def preview(self, upload_id: str) -> Path:
        return self.upload(upload_id).folder / "preview.png"


def display_name(name: str | None) -> str:
    """A file name safe to show and to use as an output stem: the base name, odd characters
    replaced, at most 80 characters (``image`` when nothing is left)."""
    base = re.split(r"[\\/]", str(name or ""))[-1]
    cleaned = re.sub(r"[^\w.\- ]", "_", base).strip(" .")[:80]
    return cleaned or "image"


def _unique(stem: str, taken: set[str]) -> str:
    candidate, number = stem, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{stem}_{number}"
    taken.add(candidate.lower())
    return candidate


def _budget(request: dict[str, Any]) -> Budget:
    """The request's ε / ε_bg (1/255 units, the sliders' range; defaults :data:`DEFAULT_BUDGET`)."""
    numbers = []
    for key, what, default in (("epsilon", "ε", DEFAULT_BUDGET.epsilon), ("epsilon_bg", "ε_bg", DEFAULT_BUDGET.epsilon_bg)):
        value = request.get(key, default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ServeError(f"{what} must be a number (1/255 units), got {value!r}") from None
        if not 0 <= number <= MAX_EPSILON:
            raise ServeError(f"{what} must be between 0 and {MAX_EPSILON} (1/255 units), got {number:g}")
        numbers.append(number)
    if numbers[1] > numbers[0]:
        raise ServeError(f"ε_bg ({numbers[1]:g}) must not exceed ε ({numbers[0]:g})")
    return Budget(*numbers)


def _without_path(message: str, path: Path) -> str:
    """An error message without the server-side file path in it."""
    return message.replace(str(path), "the file").replace(path.name, "the file")


def _write_views(original_path: Path, protected_path: Path, folder: Path, stem: str,
                 record: dict[str, Any]) -> dict[str, Path]:
    """``noise`` (change x10 around mid-grey) and ``zoom`` (clean | protected | noise crops, x3)."""
    from unseg.data.images import read_image, write_image

    original, protected = read_image(original_path), read_image(protected_path)
    scale = 257 if original.pixels.dtype == np.uint16 else 1  # 16-bit levels -> 8-bit levels
    change = (protected.pixels.astype(np.int64) - original.pixels.astype(np.int64)) / scale
    noise = np.clip(change * NOISE_AMPLIFY + 128, 0, 255).astype(np.uint8)
    noise = np.repeat(noise, 3, axis=2) if noise.shape[2] == 1 else noise
    paths = {"noise": folder / f"{stem}.noise.png", "zoom": folder / f"{stem}.zoom.png"}
    write_image(paths["noise"], noise)
    marked = np.abs(change).max(axis=2) > record["epsilon_bg"]["levels"] / scale  # where ε (not ε_bg) was spent
    rows, cols = np.nonzero(marked) if marked.any() else (np.array([original.size[0] // 2]),
                                                         np.array([original.size[1] // 2]))
    side = min(ZOOM_SIDE, *original.size)
    top = int(np.clip(np.median(rows) - side // 2, 0, original.size[0] - side))
    left = int(np.clip(np.median(cols) - side // 2, 0, original.size[1] - side))
    crops = [image[top : top + side, left : left + side] for image in (original.rgb8(), protected.rgb8(), noise)]
    gap = np.full((side * ZOOM_SCALE, 4, 3), 255, np.uint8)
    tiles = [np.kron(crop, np.ones((ZOOM_SCALE, ZOOM_SCALE, 1), np.uint8)) for crop in crops]
    write_image(paths["zoom"], np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1))
    return paths


def _write_zip(path: Path, outputs: list[Path], manifest: Path) -> Path:
    """Every output PNG and the manifest in one zip (stored: PNGs are compressed already)."""
    from unseg.data.images import atomic_write

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for output in outputs:
                archive.write(output, output.name)
            archive.write(manifest, manifest.name)

    atomic_write(path, write)
    return path
