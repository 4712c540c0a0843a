"""Protecting a whole dataset: batches, atomic outputs, a resumable JSONL manifest.

Each processed image gets one manifest line (flushed and fsynced): the input, the output, the
prompt, the budget, the measured L∞ change, PSNR/SSIM and the generator. Failed images get a
line with an ``error`` and do not stop the run. With ``resume`` an image is skipped when its
output file exists and the manifest records it as protected.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from unseg.data.images import ImageReadError, LoadedImage, read_image, write_image
from unseg.protection.protector import ImagePrompt, ProtectionResult, Protector

if TYPE_CHECKING:  # sources imports the protector; a runtime import here would be circular
    from unseg.data.sources import ProtectItem

MANIFEST_NAME = "manifest.jsonl"


@dataclass
class ProtectSummary:
    """Outcome of :func:`protect_dataset`."""

    protected: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    manifest: Path | None = None

    @property
    def failed(self) -> int:
        return len(self.failures)

    def __str__(self) -> str:
        return f"{self.protected} protected, {self.skipped} skipped (already done), {self.failed} failed"


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Manifest records; a truncated (unparseable) last line from an interrupted run is ignored."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines) - 1:
                raise ValueError(f"{path} line {number + 1} is not JSON; remove or fix it to resume") from None
    return records


class ManifestWriter:
    """Appends one JSON line per image, flushed and fsynced, after cutting any truncated tail."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_partial_last_line()
        self._handle = path.open("a", encoding="utf-8")

    def _drop_partial_last_line(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def protect_dataset(
    source: Sequence["ProtectItem"],
    out_dir: str | Path,
    protector: Protector,
    jpeg_quality: int | None = None,
    resume: bool = True,
    progress: bool = True,
) -> ProtectSummary:
    """Protect every item of ``source`` into ``out_dir`` (batches of ``protector.batch_size``).

    Outputs are written atomically (PNG unless ``jpeg_quality``); the manifest is
    ``out_dir/manifest.jsonl``. Item failures are recorded and returned, never raised.
    """
    out_dir = Path(out_dir)
    manifest_path = out_dir / MANIFEST_NAME
    done = {record["output"] for record in read_manifest(manifest_path) if "error" not in record} if resume else set()
    summary = ProtectSummary(manifest=manifest_path)
    writer = ManifestWriter(manifest_path)
    bar = tqdm(total=len(source), desc="protecting", unit="img", disable=not progress)
    try:
        pending = []
        for item in source:
            if item.output_path.as_posix() in done and (out_dir / item.output_path).is_file():
                summary.skipped += 1
                bar.update(1)
                continue
            pending.append(item)
        for batch in _chunks(pending, protector.batch_size):
            _protect_batch(batch, out_dir, protector, jpeg_quality, writer, summary)
            bar.update(len(batch))
    finally:
        bar.close()
        writer.close()
    return summary


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _protect_batch(
    batch: list["ProtectItem"],
    out_dir: Path,
    protector: Protector,
    jpeg_quality: int | None,
    writer: ManifestWriter,
    summary: ProtectSummary,
) -> None:
    """Load, protect and write one batch; per-item failures are recorded, not raised."""
    ready: list[tuple["ProtectItem", LoadedImage, ImagePrompt]] = []
    for item in batch:
        try:
            loaded = read_image(item.image_path)
            if jpeg_quality is not None and loaded.pixels.dtype != np.uint8:
                raise ValueError("16-bit image cannot be written as JPEG without losing depth; use PNG output")
            prompt = item.prompt(loaded.size)
            prompt.check_fits(*loaded.size)
            ready.append((item, loaded, prompt))
        except (ImageReadError, ValueError) as error:  # ItemError is a ValueError
            _record_failure(item, error, writer, summary)
    if not ready:
        return
    try:
        results = protector.protect_batch([loaded for _, loaded, _ in ready], [prompt for _, _, prompt in ready])
    except (RuntimeError, ValueError) as error:  # e.g. out of memory: report every image of the batch
        for item, _, _ in ready:
            _record_failure(item, error, writer, summary)
        return
    for (item, _, _), result in zip(ready, results):
        try:
            write_image(out_dir / item.output_path, result.pixels, result.alpha, jpeg_quality=jpeg_quality)
        except (OSError, ValueError) as error:
            _record_failure(item, error, writer, summary)
            continue
        writer.write(_success_record(item, result, protector, jpeg_quality))
        summary.protected += 1


def _record_failure(item: "ProtectItem", error: Exception, writer: ManifestWriter, summary: ProtectSummary) -> None:
    message = str(error) or type(error).__name__
    writer.write({"source": item.description, "output": item.output_path.as_posix(), "error": message})
    summary.failures.append((item.description, message))


def _success_record(
    item: "ProtectItem", result: ProtectionResult, protector: Protector, jpeg_quality: int | None
) -> dict[str, Any]:
    stats = result.stats
    return {
        "source": item.description,
        "output": item.output_path.as_posix(),
        "prompt": stats["prompt"],
        "num_boxes": stats["num_boxes"],
        "num_points": stats["num_points"],
        "num_objects": stats["num_objects"],
        "region_fraction": round(stats["region_fraction"], 6),
        "epsilon": {"fraction": protector.epsilon, "levels": stats["epsilon_levels"]},
        "epsilon_bg": {"fraction": protector.epsilon_bg, "levels": stats["epsilon_bg_levels"]},
        "linf_inside": stats["linf_inside"],
        "linf_outside": stats["linf_outside"],
        "psnr": stats["psnr"],
        "ssim": stats["ssim"],
        "format": "jpeg" if jpeg_quality is not None else "png",
        "jpeg_quality": jpeg_quality,
        "generator": protector.describe(),
    }
