"""Protecting a whole dataset: batches, atomic outputs, a resumable JSONL manifest.

Each processed image gets one manifest line (flushed and fsynced): the input, the output, the
prompt, the budget, the measured L∞ change, PSNR/SSIM and the generator. Failed images get a
line with an ``error`` and do not stop the run. With ``resume`` an image is skipped when its
output file exists and the manifest records it as protected.

The manifest holds one final record per image (keyed by its output path): when a run starts and
when it ends, the file is rewritten (atomically) keeping only each image's latest record, so a
retried image's success replaces its earlier error and reruns never repeat lines. A run killed
midway may leave a retried image's old and new lines until the next run; :func:`read_manifest`
reads the latest either way. A run also first deletes the ``.partial`` files of killed writes
(:func:`unseg.data.images.remove_partial_files`) under its output folder.

A batch holds at most ``protector.batch_size`` images and ends once it holds ``BATCH_PIXELS``
pixels, so a large image goes through alone and memory stays bounded by the largest image
(README, "Large images").
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

from unseg.data.images import ImageReadError, LoadedImage, atomic_write, read_image, remove_partial_files, write_image
from unseg.protection.protector import ImagePrompt, ProtectionResult, Protector

if TYPE_CHECKING:  # sources imports the protector; a runtime import here would be circular
    from unseg.data.sources import ProtectItem

MANIFEST_NAME = "manifest.jsonl"
BATCH_PIXELS = 16_000_000  # a batch takes no further image once it holds this many pixels


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
    """The latest record of each image (by output path), oldest first; a truncated (unparseable)
    last line from an interrupted run is ignored."""
    return list(_final_records(_read_lines(path)).values())


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """Every record line of a manifest, in file order (a truncated last line ignored)."""
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


def _final_records(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Output path -> the last record for it, ordered by when that record was written."""
    final: dict[str, dict[str, Any]] = {}
    for record in records:
        final.pop(record["output"], None)
        final[record["output"]] = record
    return final


class ManifestWriter:
    """Appends one JSON line per image, flushed and fsynced; keeps one record per image.

    Opening and closing rewrite the file atomically with each image's latest record when it holds
    anything else (repeated images, a line cut short by a killed run).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._compact()
        self._written = set(_final_records(_read_lines(path)))
        self._repeated = False
        self._handle = path.open("a", encoding="utf-8")

    def _compact(self) -> None:
        """Rewrite the file with one (the latest) record per image if it holds more lines or a partial one."""
        if not self.path.is_file():
            return
        records = _read_lines(self.path)
        final = _final_records(records)
        data = self.path.read_bytes()
        if len(final) == len(records) and (not data or data.endswith(b"\n")):
            return
        text = "".join(json.dumps(record, sort_keys=True) + "\n" for record in final.values())
        atomic_write(self.path, lambda tmp: _write_synced(tmp, text))

    def write(self, record: dict[str, Any]) -> None:
        self._repeated |= record["output"] in self._written
        self._written.add(record["output"])
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()
        if self._repeated:
            self._compact()


def _write_synced(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


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
    if out_dir.is_dir():
        remove_partial_files(out_dir)
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
        for batch in _batches(pending, protector.batch_size, jpeg_quality, writer, summary):
            _protect_batch(batch, out_dir, protector, jpeg_quality, writer, summary)
            bar.update(summary.skipped + summary.protected + summary.failed - bar.n)
        bar.update(summary.skipped + summary.protected + summary.failed - bar.n)  # failed loads after the last batch
    finally:
        bar.close()
        writer.close()
    return summary


Loaded = tuple["ProtectItem", LoadedImage, ImagePrompt]


def _batches(items: list["ProtectItem"], size: int, jpeg_quality: int | None, writer: ManifestWriter,
             summary: ProtectSummary) -> Iterator[list[Loaded]]:
    """Load items and group them: a batch ends at ``size`` images or once it holds ``BATCH_PIXELS``
    pixels. Items that cannot be loaded are recorded as failed here."""
    batch: list[Loaded] = []
    pixels = 0
    for item in items:
        loaded = _load(item, jpeg_quality, writer, summary)
        if loaded is None:
            continue
        batch.append(loaded)
        pixels += loaded[1].size[0] * loaded[1].size[1]
        del loaded  # the batch alone holds it (the caller empties the batch after protecting it)
        if len(batch) == size or pixels >= BATCH_PIXELS:
            yield batch
            batch, pixels = [], 0
    if batch:
        yield batch


def _load(item: "ProtectItem", jpeg_quality: int | None, writer: ManifestWriter, summary: ProtectSummary
          ) -> Loaded | None:
    """An item's image and prompt, or None (failure recorded) when either is unusable."""
    try:
        loaded = read_image(item.image_path)
        if jpeg_quality is not None and loaded.pixels.dtype != np.uint8:
            raise ValueError("16-bit image cannot be written as JPEG without losing depth; use PNG output")
        prompt = item.prompt(loaded.size)
        prompt.check_fits(*loaded.size)
        return item, loaded, prompt
    except (ImageReadError, ValueError) as error:  # ItemError is a ValueError
        _record_failure(item, error, writer, summary)
        return None


def _protect_batch(
    batch: list[Loaded],
    out_dir: Path,
    protector: Protector,
    jpeg_quality: int | None,
    writer: ManifestWriter,
    summary: ProtectSummary,
) -> None:
    """Protect and write one batch of loaded items; per-item failures are recorded, not raised."""
    try:
        results = protector.protect_batch([loaded for _, loaded, _ in batch], [prompt for _, _, prompt in batch])
    except (RuntimeError, ValueError) as error:  # e.g. out of memory: report every image of the batch
        for item, _, _ in batch:
            _record_failure(item, error, writer, summary)
        return
    items = [item for item, _, _ in batch]
    batch.clear()  # the inputs are no longer needed while the outputs are written
    for index, item in enumerate(items):
        result, results[index] = results[index], None
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
        "keyed": stats["keyed"],
        "keying": stats["keying"],
        "keys": stats["keys"],
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
