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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from unseg.data.images import ImageReadError, LoadedImage, atomic_write, read_image, remove_partial_files, write_image
from unseg.data.prompts import ImagePrompt
from unseg.data.sources import ProtectItem
from unseg.protection.protector import ProtectionResult, Protector

MANIFEST_NAME = "manifest.jsonl"
BATCH_PIXELS = 16_000_000  # a batch takes no further image once it holds this many pixels
IN_FLIGHT_PIXELS = 2 * BATCH_PIXELS  # decoded, protected or being written at once when overlapping
DEFAULT_WORKERS = 2  # decode / encode threads beside the protector


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
    source: Sequence[ProtectItem],
    out_dir: str | Path,
    protector: Protector,
    jpeg_quality: int | None = None,
    resume: bool = True,
    progress: bool = True,
    workers: int = DEFAULT_WORKERS,
) -> ProtectSummary:
    """Protect every item of ``source`` into ``out_dir`` (batches of ``protector.batch_size``).

    Outputs are written atomically (PNG unless ``jpeg_quality``); the manifest is
    ``out_dir/manifest.jsonl``. Item failures are recorded and returned, never raised.

    ``workers`` threads decode the next batch and encode the last one's outputs while the
    protector works on the current one (PIL releases the GIL), as long as the images in flight
    hold at most ``IN_FLIGHT_PIXELS``; a batch above that (a large image) goes through alone, as
    with ``workers=0`` (everything in this thread, one batch at a time). The outputs and the
    manifest do not depend on ``workers``.
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
        run = _Run(out_dir, protector, jpeg_quality, writer, summary, workers)
        for _ in run.batches(_plan(pending, protector.batch_size)):
            bar.update(summary.skipped + summary.protected + summary.failed - bar.n)
        bar.update(summary.skipped + summary.protected + summary.failed - bar.n)
    finally:
        bar.close()
        writer.close()
    return summary


Loaded = tuple[ProtectItem, LoadedImage, ImagePrompt]
Planned = list[tuple[ProtectItem, int]]  # items of one batch with their pixel counts


def _header_pixels(path: Path) -> int:
    """Width x height from the file's header (no decoding); 0 when it cannot be read (the load
    then fails and is recorded)."""
    try:
        with Image.open(path) as image:
            return image.size[0] * image.size[1]
    except (OSError, ValueError, SyntaxError):
        return 0


def _plan(items: list[ProtectItem], size: int) -> Iterator[Planned]:
    """Group items: a batch ends at ``size`` images or once it holds ``BATCH_PIXELS`` pixels."""
    batch: Planned = []
    pixels = 0
    for item in items:
        count = _header_pixels(item.image_path)
        batch.append((item, count))
        pixels += count
        if len(batch) == size or pixels >= BATCH_PIXELS:
            yield batch
            batch, pixels = [], 0
    if batch:
        yield batch


class _InlineExecutor:
    """``workers=0``: tasks run at once, in this thread."""

    def submit(self, function, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except BaseException as error:  # delivered by future.result(), as a pool would
            future.set_exception(error)
        return future

    def shutdown(self) -> None:
        pass


def _failed(error: Exception) -> Future:
    future: Future = Future()
    future.set_exception(error)
    return future


class _Run:
    """One protect_dataset run: loads one batch ahead and writes one batch behind on ``workers``
    threads, within ``IN_FLIGHT_PIXELS``. Every item's outcome (load failure, protection failure,
    write) joins one queue in item order, and the manifest is written from it, from this thread:
    the same records in the same order whatever ``workers`` is."""

    def __init__(self, out_dir: Path, protector: Protector, jpeg_quality: int | None, writer: ManifestWriter,
                 summary: ProtectSummary, workers: int) -> None:
        self.out_dir, self.protector, self.jpeg_quality = out_dir, protector, jpeg_quality
        self.writer, self.summary = writer, summary
        self.pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else _InlineExecutor()
        self.outcomes: list[tuple[ProtectItem, ProtectionResult | None, int, Future]] = []

    @property
    def writing(self) -> int:
        """Pixels of the outputs not yet written."""
        return sum(pixels for _, result, pixels, _ in self.outcomes if result is not None)

    def batches(self, plan: Iterator[Planned]) -> Iterator[None]:
        """Protect every planned batch; yields after each (for progress)."""
        try:
            upcoming = next(plan, None)
            loads = self._submit_loads(upcoming) if upcoming else None
            while upcoming is not None:
                current, upcoming = upcoming, next(plan, None)
                loaded = self._collect(current, loads)
                loads = None
                if upcoming is not None and self._fits(current, upcoming):
                    loads = self._submit_loads(upcoming)  # decoded while this batch is protected
                self._protect(loaded)
                del loaded
                if upcoming is not None and loads is None:
                    self._drain(0)  # too large to overlap: finish writing first
                    loads = self._submit_loads(upcoming)
                yield
            self._drain(0)
            yield
        finally:
            self.pool.shutdown()

    @staticmethod
    def _pixels(batch: Planned) -> int:
        return sum(pixels for _, pixels in batch)

    def _fits(self, current: Planned, upcoming: Planned) -> bool:
        return self._pixels(current) + self._pixels(upcoming) + self.writing <= IN_FLIGHT_PIXELS

    def _submit_loads(self, batch: Planned) -> list[Future]:
        return [self.pool.submit(_load, item, self.jpeg_quality) for item, _ in batch]

    def _collect(self, batch: Planned, loads: list[Future]) -> list[tuple[Loaded, int]]:
        """The batch's loaded items; a failed load (unreadable image, bad prompt) joins the
        outcomes as it is; any other error stops the run."""
        loaded = []
        for (item, pixels), future in zip(batch, loads):
            error = future.exception()
            if error is None:
                loaded.append((future.result(), pixels))
            elif isinstance(error, (ImageReadError, ValueError)):  # ItemError is a ValueError
                self.outcomes.append((item, None, 0, future))
            else:
                raise error
        return loaded

    def _protect(self, batch: list[tuple[Loaded, int]]) -> None:
        """Protect one batch and queue its outputs for writing."""
        items = [(item, pixels) for (item, _, _), pixels in batch]
        try:
            results = self.protector.protect_fitted([loaded for (_, loaded, _), _ in batch],
                                                    [prompt for (_, _, prompt), _ in batch])
        except (RuntimeError, ValueError) as error:  # e.g. out of memory: report every image of the batch
            self.outcomes.extend((item, None, 0, _failed(error)) for item, _ in items)
            return
        batch.clear()  # the inputs are no longer needed while the outputs are written
        for (item, pixels), result in zip(items, results):
            future = self.pool.submit(write_image, self.out_dir / item.output_path, result.pixels, result.alpha,
                                      self.jpeg_quality)
            self.outcomes.append((item, result, pixels, future))
        del results
        self._drain(IN_FLIGHT_PIXELS // 2)

    def _drain(self, keep: int) -> None:
        """Record outcomes, oldest first: all that are done, and more (waiting) until at most
        ``keep`` pixels are still being written."""
        while self.outcomes and (self.writing > keep or self.outcomes[0][3].done()):
            item, result, _, future = self.outcomes.pop(0)
            error = future.exception()  # waits for a write still running
            if error is None:
                self.writer.write(_success_record(item, result, self.protector, self.jpeg_quality))
                self.summary.protected += 1
            elif result is None or isinstance(error, (OSError, ValueError)):  # a failed load or batch, a bad write
                _record_failure(item, error, self.writer, self.summary)
            else:
                raise error  # anything else stops the run, as it would without the threads


def _load(item: ProtectItem, jpeg_quality: int | None) -> Loaded:
    """An item's image and prompt; raises ImageReadError / ValueError when either is unusable."""
    loaded = read_image(item.image_path)
    if jpeg_quality is not None and loaded.pixels.dtype != np.uint8:
        raise ValueError("16-bit image cannot be written as JPEG without losing depth; use PNG output")
    return item, loaded, item.prompt(loaded.size)  # checked against the image (ItemError)


def _record_failure(item: ProtectItem, error: Exception, writer: ManifestWriter, summary: ProtectSummary) -> None:
    message = str(error) or type(error).__name__
    writer.write({"source": item.description, "output": item.output_path.as_posix(), "error": message})
    summary.failures.append((item.description, message))


def _success_record(
    item: ProtectItem, result: ProtectionResult, protector: Protector, jpeg_quality: int | None
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
        "epsilon": {"fraction": protector.budget.fraction, "levels": stats["epsilon_levels"]},
        "epsilon_bg": {"fraction": protector.budget.fraction_bg, "levels": stats["epsilon_bg_levels"]},
        "linf_inside": stats["linf_inside"],
        "linf_outside": stats["linf_outside"],
        "psnr": stats["psnr"],
        "ssim": stats["ssim"],
        "format": "jpeg" if jpeg_quality is not None else "png",
        "jpeg_quality": jpeg_quality,
        "generator": protector.describe(),
    }
