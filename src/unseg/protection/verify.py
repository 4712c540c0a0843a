"""Checking a protected folder before it is published: ``unseg verify ORIGINALS PROTECTED``.

For every original image the protected copy must exist, be stored losslessly (decided from
the file's content, not its name: a JPEG renamed ``.png`` fails), have the original's size and
pixel layout (channels, bit depth, alpha — the alpha channel unchanged), and keep the budget:
``|protected - original| <= round(max·ε)`` on the protected region and ``<= round(max·ε_bg)``
elsewhere, on every pixel and channel.

Where the region comes from, best first:

* ``masks`` (same folder layout and stems as ``unseg protect --masks``, read by the same reader,
  :func:`unseg.data.sources.folder_source`): the exact region, both bounds checked exactly;
* the protected folder's ``manifest.jsonl`` (written by ``unseg protect`` and ``unseg serve``):
  it records each image's prompt and the fraction of the image its region covered, not the
  region itself. An image recorded with no prompt (``prompt: none``) must keep ε_bg everywhere,
  exactly; for the others every pixel is checked against ε, and at most the recorded region
  fraction of the pixels may change by more than ε_bg (a count check: *where* is not known);
* nothing: every pixel against ε only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from unseg.data.folders import find_by_stem
from unseg.data.images import ImageReadError, LoadedImage, read_image
from unseg.budget import DEFAULT_BUDGET, Budget

LOSSLESS_FORMATS = ("PNG", "TIFF", "BMP", "WEBP")  # TIFF and WebP only without lossy compression
LOSSY_TIFF_COMPRESSIONS = ("jpeg", "tiff_jpeg", "webp")
MANIFEST_NAME = "manifest.jsonl"  # as written by unseg.protection.pipeline

REGION_MASKS = "masks"
REGION_MANIFEST_NONE = "manifest: no prompt"
REGION_MANIFEST_FRACTION = "manifest: region size"
REGION_GLOBAL = "none: ε everywhere"


@dataclass(frozen=True)
class Violation:
    """One reason a protected file must not be published.

    Attributes:
        kind: ``missing``, ``unreadable``, ``lossy``, ``size``, ``mode``, ``alpha``, ``mask``,
            ``inside`` (ε exceeded on the region, or anywhere without a region), ``outside``
            (ε_bg exceeded off the region) or ``region`` (more pixels above ε_bg than the
            manifest's region covers).
        message: one human-readable line.
    """

    kind: str
    message: str


@dataclass
class FileCheck:
    """The check of one original and its protected copy.

    Attributes:
        source: the original, relative to the originals folder.
        output: the protected file found, relative to the protected folder (None: missing).
        format: the protected file's format as read from its content (``PNG``, ``JPEG``, ...).
        size: protected (width, height).
        mode: protected pixel layout, e.g. ``RGB 8-bit``, ``gray 16-bit``, ``RGBA 8-bit``.
        region: where the region came from (``REGION_*``).
        linf_inside / linf_outside: largest change in levels on / off the region (off only when
            the region is known; without one ``linf_inside`` is the largest change anywhere).
        budget_inside / budget_outside: the bounds in levels at the image's bit depth.
        changed_fraction: fraction of pixels that differ from the original at all.
        violations: everything wrong; empty means the file may be published.
    """

    source: str
    output: str | None = None
    format: str | None = None
    size: tuple[int, int] | None = None
    mode: str | None = None
    region: str = REGION_GLOBAL
    linf_inside: int | None = None
    linf_outside: int | None = None
    budget_inside: int | None = None
    budget_outside: int | None = None
    changed_fraction: float | None = None
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, kind: str, message: str) -> None:
        self.violations.append(Violation(kind, message))


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_protected`: one :class:`FileCheck` per original, in file order."""

    originals: Path
    protected: Path
    budget: Budget
    checks: list[FileCheck]

    @property
    def violations(self) -> list[tuple[str, Violation]]:
        """(source, violation) for every problem of every file."""
        return [(check.source, violation) for check in self.checks for violation in check.violations]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and not self.violations

    def __str__(self) -> str:
        bad = sum(not check.ok for check in self.checks)
        return f"{len(self.checks) - bad} of {len(self.checks)} protected files pass, {bad} fail"


def verify_protected(
    originals: str | Path,
    protected: str | Path,
    *,
    masks: str | Path | None = None,
    budget: Budget = DEFAULT_BUDGET,
    classes: Sequence[str | int] | None = None,
    class_names: dict[str, int] | None = None,
    ignore_index: Iterable[int] = (),
) -> VerifyReport:
    """Check every image under ``originals`` against its protected copy under ``protected``.

    ``budget``: the ε / ε_bg to check (8/255, 2/255 by default); ``masks``, ``classes``,
    ``class_names`` and ``ignore_index`` select the region exactly as ``unseg protect --masks`` does.
    The protected copy of ``sub/a.jpg`` is the manifest's output for that source, else
    ``sub/a.png``, else any image file ``sub/a.*``.
    """
    from unseg.data.sources import SourceError, folder_source, plain_source

    originals, protected = Path(originals), Path(protected)
    if not protected.is_dir():
        raise SourceError(f"protected folder not found: {protected}")
    exclude = [protected] + ([Path(masks)] if masks is not None else [])
    if masks is not None:
        items = folder_source(originals, Path(masks), classes=classes, class_names=class_names,
                              ignore_index=ignore_index, exclude=exclude)
    else:
        items = plain_source(originals, exclude=exclude)
    manifest = _manifest_records(protected)
    checks = []
    for item in items:
        check = FileCheck(source=item.description)
        record = manifest.get(item.description)
        path = _protected_file(protected, Path(item.description), record)
        if path is None:
            check.add("missing", "no protected file")
        else:
            check.output = path.relative_to(protected).as_posix()
            _check_file(check, item, path, record, masks is not None, budget)
        checks.append(check)
    return VerifyReport(originals, protected, budget, checks)


def _manifest_records(protected: Path) -> dict[str, dict[str, Any]]:
    """Successful manifest records by source (the last one wins, as a rerun appends)."""
    from unseg.protection.pipeline import read_manifest

    path = protected / MANIFEST_NAME
    try:
        records = read_manifest(path)
    except ValueError:
        return {}
    return {record["source"]: record for record in records if "error" not in record and "source" in record}


def _protected_file(protected: Path, relative: Path, record: dict[str, Any] | None) -> Path | None:
    if record is not None and record.get("output"):
        candidate = protected / record["output"]
        if candidate.resolve().is_relative_to(protected.resolve()) and candidate.is_file():
            return candidate
    return find_by_stem(protected / relative.parent, relative.stem, (".png",))


def file_format(path: Path) -> tuple[str, bool]:
    """(format name, whether it is stored losslessly), from the file's content.

    PNG and BMP are lossless; TIFF unless its compression is JPEG (or WebP); WebP only as VP8L
    (its lossless bitstream). Anything else (JPEG, GIF's palette, ...) counts as lossy.
    Raises :class:`ImageReadError` when the file is not an image.
    """
    try:
        with Image.open(path) as image:
            name = image.format or "unknown"
            compression = str(image.info.get("compression", "")).lower()
    except (UnidentifiedImageError, OSError) as error:
        raise ImageReadError(f"not a readable image ({error})") from error
    if name == "TIFF":
        return name, compression not in LOSSY_TIFF_COMPRESSIONS
    if name == "WEBP":
        lossless = _webp_is_lossless(path)
        return ("WEBP lossless" if lossless else "WEBP lossy"), lossless
    return name, name in LOSSLESS_FORMATS


def _webp_is_lossless(path: Path) -> bool:
    """True when the RIFF WebP file's image chunk is VP8L (and there is no lossy VP8 chunk)."""
    data = path.read_bytes()
    chunks, offset = set(), 12
    while offset + 8 <= len(data):
        tag, size = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        chunks.add(tag)
        offset += 8 + size + (size & 1)
    return b"VP8L" in chunks and b"VP8 " not in chunks


def describe_layout(loaded: LoadedImage) -> str:
    """``RGB 8-bit``, ``gray 16-bit``, ``RGBA 8-bit``, ... of a decoded image."""
    colour = "gray" if loaded.pixels.shape[2] == 1 else "RGB"
    if loaded.alpha is not None:
        colour += "A" if colour == "RGB" else "+alpha"
    return f"{colour} {8 * loaded.pixels.dtype.itemsize}-bit"


def _check_file(check: FileCheck, item, path: Path, record: dict[str, Any] | None, have_masks: bool,
                budget: Budget) -> None:
    """Fill ``check`` for one (original, protected) pair."""
    from unseg.data.sources import ItemError

    try:
        check.format, lossless = file_format(path)
        copy = read_image(path)
    except ImageReadError as error:
        check.add("unreadable", f"protected file {check.output}: {error}")
        return
    check.size = (copy.size[1], copy.size[0])
    check.mode = describe_layout(copy)
    if not lossless:
        check.add("lossy", f"{check.format} is lossy: the exact bound and the noise do not survive it; "
                           "publish the lossless PNG")
    try:
        original = read_image(item.image_path)
    except ImageReadError as error:
        check.add("unreadable", f"original: {error}")
        return
    if copy.size != original.size:
        check.add("size", f"size {copy.size[1]}x{copy.size[0]}, original {original.size[1]}x{original.size[0]}")
        return
    if describe_layout(copy) != describe_layout(original):
        check.add("mode", f"mode {describe_layout(copy)}, original {describe_layout(original)}")
        return
    if original.alpha is not None and not np.array_equal(original.alpha, copy.alpha):
        check.add("alpha", "alpha channel differs from the original's")
    max_value = int(np.iinfo(original.pixels.dtype).max)
    check.budget_inside, check.budget_outside = budget.levels(max_value)
    change = np.abs(copy.pixels.astype(np.int64) - original.pixels.astype(np.int64)).max(axis=2)
    check.changed_fraction = float((change > 0).mean())
    region = None
    if have_masks:
        try:
            prompt = item.prompt(original.size)
        except ItemError as error:
            check.add("mask", f"mask: {error}")
            prompt = None
        if prompt is not None:
            check.region = REGION_MASKS
            region = prompt.mask if prompt.mask is not None else np.zeros(original.size, bool)
    elif record is not None and record.get("prompt") == "none":
        check.region, region = REGION_MANIFEST_NONE, np.zeros(original.size, bool)
    elif record is not None and "region_fraction" in record:
        check.region = REGION_MANIFEST_FRACTION
    if region is not None:
        check.linf_inside = int(change[region].max()) if region.any() else 0
        check.linf_outside = int(change[~region].max()) if (~region).any() else 0
    else:
        check.linf_inside = int(change.max())
    if check.linf_inside > check.budget_inside:
        where = "on the region" if region is not None and region.any() else "somewhere"
        check.add("inside", f"change of {check.linf_inside} levels {where}, budget ε = {check.budget_inside}")
    if check.linf_outside is not None and check.linf_outside > check.budget_outside:
        check.add("outside", f"change of {check.linf_outside} levels off the region, budget ε_bg = "
                             f"{check.budget_outside}")
    if check.region == REGION_MANIFEST_FRACTION:
        above = int((change > check.budget_outside).sum())
        allowed = math.ceil((float(record["region_fraction"]) + 1e-6) * change.size)
        if above > allowed:
            check.add("region", f"{above} pixels change by more than ε_bg = {check.budget_outside} levels, but the "
                                f"manifest's region covers only {allowed}")
