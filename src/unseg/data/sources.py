"""Where images to protect and their prompts come from: mask folders, COCO files, box/point files.

Every source is a list of :class:`ProtectItem`. An item's prompt is built lazily (reading a mask
file, rasterising COCO polygons) so that a problem with one item is reported for that item and
the rest still get processed. Problems with the source as a whole (unknown class, unreadable
prompts file) raise :class:`SourceError` before any work is done.

Prompts files (``--prompts``):

* JSON: ``{"sub/image.jpg": {"boxes": [[x0, y0, x1, y1], ...], "points": [[x, y], ...],
  "point_labels": [1, 0, ...]}, ...}``; keys are paths relative to the images folder, every
  field optional, ``point_labels`` defaults to all positive (1).
* CSV with a header row. Box rows: columns ``image,x0,y0,x1,y1``. Point rows: columns
  ``image,x,y`` and optionally ``label`` (1 positive, 0 negative). One row per box or point;
  an image may have many rows. Coordinates are image pixels, x to the right, y down.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unseg.data.coco import CocoInstances
from unseg.data.folders import MaskFolder, list_images
from unseg.data.images import ImageReadError, read_mask
from unseg.data.prompts import ImagePrompt


class SourceError(ValueError):
    """A source as a whole is unusable (bad folder, unknown class, malformed prompts file)."""


class ItemError(ValueError):
    """One item cannot be protected (missing or mismatched mask, ...); the others continue."""


PromptBuilder = Callable[[], ImagePrompt]


@dataclass
class ProtectItem:
    """One image to protect.

    Attributes:
        image_path: the input image file.
        output_path: where its protected version goes, relative to the output folder (mirrors the
            input folder layout; suffix .png, or .jpg for JPEG output).
        description: short human-readable origin (relative input path), used in reports.
        build_prompt: returns the image's :class:`ImagePrompt` (read lazily) or raises
            :class:`ItemError`.
    """

    image_path: Path
    output_path: Path
    description: str
    build_prompt: PromptBuilder

    def prompt(self, size: tuple[int, int]) -> ImagePrompt:
        """The prompt for the item's image of ``size`` = (height, width), checked against it
        (:meth:`ImagePrompt.check_fits`); a mismatch raises :class:`ItemError`."""
        prompt = self.build_prompt()
        try:
            prompt.check_fits(*size)
        except ValueError as error:
            raise ItemError(str(error)) from None
        return prompt


def _no_prompt() -> ImagePrompt:
    return ImagePrompt()


def _failing(message: str) -> PromptBuilder:
    def build() -> ImagePrompt:
        raise ItemError(message)

    return build


def _relatives(images_dir: Path, exclude: Iterable[Path]) -> list[Path]:
    """Image paths under ``images_dir`` relative to it (:func:`unseg.data.folders.list_images`)."""
    try:
        return [path.relative_to(images_dir) for path in list_images(images_dir, exclude)]
    except FileNotFoundError as error:
        raise SourceError(str(error)) from None


def output_path_for(relative: Path, jpeg: bool) -> Path:
    """Output path mirroring ``relative`` with the output format's suffix."""
    return relative.with_suffix(".jpg" if jpeg else ".png")


def _items(
    images_dir: Path, relatives: Sequence[Path], builders: dict[Path, PromptBuilder], jpeg: bool
) -> list[ProtectItem]:
    """Items for ``relatives``; two inputs that would write the same output become item errors."""
    items, owners = [], {}
    for relative in relatives:
        output = output_path_for(relative, jpeg)
        builder = builders.get(relative, _no_prompt)
        if output in owners:
            builder = _failing(f"output {output.as_posix()} would overwrite the output of {owners[output]}")
        else:
            owners[output] = relative.as_posix()
        items.append(ProtectItem(images_dir / relative, output, relative.as_posix(), builder))
    return items


def read_class_names(path: Path) -> dict[str, int]:
    """Class name -> id from a text file (one name per line, line number = id, or "id name" lines)
    or a JSON object (``{"name": id}`` or ``{"id": "name"}``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SourceError(f"cannot read class names file {path}: {error}") from error
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SourceError(f"{path} is not valid JSON: {error}") from error
        if not isinstance(data, dict):
            raise SourceError(f"{path}: expected a JSON object of class names")
        try:
            if all(isinstance(value, int) for value in data.values()):
                return {str(name): int(value) for name, value in data.items()}
            return {str(name): int(key) for key, name in data.items()}
        except ValueError as error:
            raise SourceError(f"{path}: class ids must be integers ({error})") from error
    names: dict[str, int] = {}
    for index, line in enumerate(line.strip() for line in text.splitlines()):
        if not line:
            continue
        head, _, rest = line.partition(" ")
        if rest.strip() and head.rstrip(":").isdigit():
            names[rest.strip()] = int(head.rstrip(":"))
        else:
            names[line] = index
    return names


def resolve_classes(classes: Sequence[str | int] | None, class_names: dict[str, int] | None) -> set[int] | None:
    """Chosen class ids from ids and/or names; unknown names or ids raise :class:`SourceError`."""
    if not classes:
        return None
    chosen = set()
    for value in classes:
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            class_id = int(text)
            if class_id < 0:
                raise SourceError(f"class id must be non-negative, got {class_id}")
            if class_names is not None and class_id not in class_names.values():
                raise SourceError(f"unknown class id {class_id}; known ids: {sorted(set(class_names.values()))}")
            chosen.add(class_id)
        elif class_names is not None and text in class_names:
            chosen.add(class_names[text])
        else:
            known = f"known names: {sorted(class_names)}" if class_names else "no class names given (use ids)"
            raise SourceError(f"unknown class {text!r}; {known}")
    return chosen


KEYINGS = ("class", "instance")  # what an object's noise key is: its class id, or its index in the image


def object_keys(labels: Sequence[int], keying: str) -> list[int]:
    """Keys of objects with these labels (class ids, or instance ids of an instance mask / COCO
    annotation order): ``class`` -> the label itself (the same class gets the same noise code in
    every image: a semantic victim's shortcut); ``instance`` -> 1, 2, ... in order (neighbouring
    instances get different codes: an instance victim's shortcut). Key 0 is the null code."""
    if keying not in KEYINGS:
        raise SourceError(f"keying must be one of {KEYINGS}, got {keying!r}")
    return [int(label) for label in labels] if keying == "class" else list(range(1, len(labels) + 1))


def _mask_prompt(mask_path: Path | None, stem: str, classes: set[int] | None, ignore: set[int],
                 keying: str = "class") -> PromptBuilder:
    def build() -> ImagePrompt:
        if mask_path is None:
            raise ItemError(f"no mask for {stem}")
        try:
            labels = read_mask(mask_path, dtype=None)  # the file's own integer type: large masks stay small
        except ImageReadError as error:
            raise ItemError(str(error)) from error
        present = set(_labels_present(labels).tolist()) - ignore
        selected = (present - {0}) if classes is None else (present & classes)
        chosen = sorted(selected)
        return ImagePrompt(objects=[labels == label for label in chosen], keys=object_keys(chosen, keying),
                           keying=keying, num_objects=len(chosen), image_size=labels.shape)

    return build


def _labels_present(labels: np.ndarray) -> np.ndarray:
    """The distinct values of a label map; for 8/16-bit values by counting (no sorted copy of a
    large mask, which ``np.unique`` makes)."""
    if labels.size and 0 <= labels.min() and labels.max() < 1 << 16:
        return np.flatnonzero(np.bincount(labels.reshape(-1)))
    return np.unique(labels)


def folder_source(
    images_dir: Path,
    masks_dir: Path,
    *,
    classes: Sequence[str | int] | None = None,
    class_names: dict[str, int] | None = None,
    ignore_index: Iterable[int] = (),
    jpeg: bool = False,
    exclude: Iterable[Path] = (),
    keying: str = "class",
) -> list[ProtectItem]:
    """Images with masks matched by stem (binary 0/1, 0/255, class-index or instance-id PNGs).

    The region is every non-zero, non-ignored label, or only ``classes`` when given (ids, or
    names looked up in ``class_names``). Each selected label present is one object with its own
    generator pass (``ImagePrompt.objects``) and noise key (:func:`object_keys`: ``class`` for
    class-index masks, ``instance`` for instance-id masks); ``num_objects`` counts them.
    """
    object_keys([], keying)  # validate early
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    if not masks_dir.is_dir():
        raise SourceError(f"masks folder not found: {masks_dir}")
    folder = MaskFolder(images_dir, masks_dir)
    chosen = resolve_classes(classes, class_names)
    ignore = {int(value) for value in ignore_index}
    relatives = _relatives(images_dir, [masks_dir, *exclude])
    builders = {rel: _mask_prompt(folder.mask_path(rel), rel.stem, chosen, ignore, keying) for rel in relatives}
    return _items(images_dir, relatives, builders, jpeg)


def plain_source(images_dir: Path, *, jpeg: bool = False, exclude: Iterable[Path] = ()) -> list[ProtectItem]:
    """Images without prompts: each gets the background budget only."""
    images_dir = Path(images_dir)
    return _items(images_dir, _relatives(images_dir, exclude), {}, jpeg)


def coco_source(
    images_dir: Path,
    coco_file: Path,
    *,
    classes: Sequence[str | int] | None = None,
    jpeg: bool = False,
    exclude: Iterable[Path] = (),
    keying: str = "class",
) -> list[ProtectItem]:
    """Images of a COCO instances file (polygons or RLE); region = union of the selected instances.

    Each instance (thing or stuff annotation) is one object; its noise key is its category id
    (``keying="class"``, the default: semantic and instance victims both learn classes) or its
    index in the image (``"instance"``), see :func:`object_keys`.

    ``classes`` are category ids or names (from the file's categories). Images in the folder
    that the file does not list get the background budget only; images the file lists but the
    folder lacks are item errors.
    """
    object_keys([], keying)  # validate early
    images_dir, coco_file = Path(images_dir), Path(coco_file)
    try:
        coco = CocoInstances.read(coco_file)
    except (FileNotFoundError, ValueError) as error:
        raise SourceError(str(error)) from None
    names = coco.category_ids()
    chosen = resolve_classes(classes, names)
    chosen_ids = set(names.values()) if chosen is None else chosen
    builders: dict[Path, PromptBuilder] = {}
    for info in coco.images():
        relative = Path(info["file_name"])
        builders[relative] = _coco_prompt(coco, info, coco.annotations(info["id"], chosen_ids), keying)
    relatives = sorted(set(_relatives(images_dir, exclude)) | set(builders))
    return _items(images_dir, relatives, builders, jpeg)


def _coco_prompt(coco: CocoInstances, info: dict, annotations: list[dict], keying: str = "class") -> PromptBuilder:
    def build() -> ImagePrompt:
        keys = object_keys([int(annotation["category_id"]) for annotation in annotations], keying)
        return ImagePrompt(objects=[coco.mask(annotation) for annotation in annotations], keys=keys, keying=keying,
                           num_objects=len(annotations), image_size=(int(info["height"]), int(info["width"])))

    return build


def prompts_source(
    images_dir: Path, prompts_file: Path, *, jpeg: bool = False, exclude: Iterable[Path] = ()
) -> list[ProtectItem]:
    """Images with box/point prompts from a JSON or CSV file (format in the module docstring).

    Images not in the file get the background budget only; entries whose image is missing are
    item errors.
    """
    images_dir, prompts_file = Path(images_dir), Path(prompts_file)
    entries = read_prompts_file(prompts_file)
    builders: dict[Path, PromptBuilder] = {Path(name): _fixed(prompt) for name, prompt in entries.items()}
    on_disk = _relatives(images_dir, exclude)
    relatives = sorted(set(on_disk) | set(builders))
    return _items(images_dir, relatives, builders, jpeg)


def _fixed(prompt: ImagePrompt) -> PromptBuilder:
    return lambda: prompt


def read_prompts_file(path: Path) -> dict[str, ImagePrompt]:
    """Image name -> prompt from a JSON or CSV prompts file; malformed files raise :class:`SourceError`."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"prompts file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(f"cannot read prompts file {path}: {error}") from error
    try:
        if path.suffix.lower() == ".json":
            raw = _json_prompts(text)
        elif path.suffix.lower() == ".csv":
            raw = _csv_prompts(text)
        else:
            raise SourceError("prompts file must end in .json or .csv")
        return {name: ImagePrompt(**fields) for name, fields in raw.items()}
    except (ValueError, TypeError) as error:
        raise SourceError(f"bad prompts file {path}: {error}") from error


def _json_prompts(text: str) -> dict[str, dict[str, Any]]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError('expected {"image name": {"boxes": [...], "points": [...], "point_labels": [...]}}')
    result = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or set(entry) - {"boxes", "points", "point_labels"}:
            raise ValueError(f"entry {name!r} must be an object with keys boxes / points / point_labels")
        fields = {key: np.asarray(value, dtype=np.float64) for key, value in entry.items() if value is not None}
        if "boxes" in fields and (fields["boxes"].ndim != 2 or fields["boxes"].shape[1] != 4):
            raise ValueError(f"entry {name!r}: boxes must be a list of [x0, y0, x1, y1]")
        if "points" in fields and (fields["points"].ndim != 2 or fields["points"].shape[1] != 2):
            raise ValueError(f"entry {name!r}: points must be a list of [x, y]")
        result[name] = fields
    return result


BOX_COLUMNS = ("image", "x0", "y0", "x1", "y1")
POINT_COLUMNS = ("image", "x", "y")


def _csv_prompts(text: str) -> dict[str, dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    header = tuple(name.strip() for name in (reader.fieldnames or ()))
    if set(BOX_COLUMNS) <= set(header):
        kind = "boxes"
    elif set(POINT_COLUMNS) <= set(header):
        kind = "points"
    else:
        raise ValueError(f"CSV header must be {','.join(BOX_COLUMNS)} or {','.join(POINT_COLUMNS)}[,label], got {header}")
    rows: dict[str, dict[str, list]] = {}
    for line, row in enumerate(reader, start=2):
        row = {key.strip(): (value or "").strip() for key, value in row.items() if key is not None}
        try:
            entry = rows.setdefault(row["image"], {kind: []} if kind == "boxes" else {"points": [], "point_labels": []})
            if kind == "boxes":
                entry["boxes"].append([float(row[column]) for column in BOX_COLUMNS[1:]])
            else:
                entry["points"].append([float(row["x"]), float(row["y"])])
                entry["point_labels"].append(int(row["label"]) if row.get("label") else 1)
        except (KeyError, ValueError) as error:
            raise ValueError(f"line {line}: {error}") from error
        if not row["image"]:
            raise ValueError(f"line {line}: empty image name")
    return rows
