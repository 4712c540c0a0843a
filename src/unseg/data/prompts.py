"""What to protect in an image: :class:`ImagePrompt` (a mask, boxes, points or per-object masks in
image pixel coordinates), as every prompt source builds it (:mod:`unseg.data.sources`, the
``unseg serve`` page, the evaluation's class regions) and :class:`unseg.protection.Protector`
reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_KEY = 1  # the key of an object whose source names none (a box, points, a binary mask)


@dataclass
class ImagePrompt:
    """What to protect in one image, in image pixel coordinates.

    Attributes:
        mask: ``H x W`` bool region of the object(s), or None.
        boxes: ``K x 4`` boxes (x0, y0, x1, y1), or None.
        points: ``K x 2`` points (x, y), or None.
        point_labels: ``K`` labels, 1 positive / 0 negative; None means all positive.
        num_objects: how many objects the prompt covers, when the source knows (instances or
            labelled regions in a mask); else derived (1 per mask, box or positive point).
        objects: optional list of ``H x W`` bool masks, one per object (instances, class regions).
            Each object then gets the noise the generator makes for its own mask prompt (one
            decoder pass per object, the image is encoded once); the rest of the image keeps the
            noise of the whole prompt. ``mask`` defaults to their union.
        image_size: (height, width) of the image the masks were drawn for (a mask file's size, a
            COCO entry's), when the source knows it: :meth:`check_fits` then rejects another image
            size even when no object was selected.
        keys: optional integer key per entry of ``objects`` (class id, instance index): a keyed
            generator gives each key its own noise code (key 0 = the null code, no noise), so
            adjacent objects of different keys get different textures; None = every object
            ``DEFAULT_KEY``. Empty objects are dropped together with their keys.
        key: the key of the whole prompt (a mask, boxes or points without ``objects``); default 1.
        keying: how the source chose the keys ("class", "instance"), recorded in the manifest.

    An empty prompt (all None) means the image has no object: only ε_bg applies.
    """

    mask: np.ndarray | None = None
    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    num_objects: int | None = None
    objects: list[np.ndarray] | None = None
    image_size: tuple[int, int] | None = None
    keys: list[int] | None = None
    key: int = DEFAULT_KEY
    keying: str | None = None

    def __post_init__(self) -> None:
        if self.key < 0:
            raise ValueError(f"key must be >= 0, got {self.key}")
        if self.keys is not None:
            if self.objects is None or len(self.keys) != len(self.objects):
                raise ValueError("keys need objects, one key per object")
            if any(int(k) < 0 for k in self.keys):
                raise ValueError(f"object keys must be >= 0, got {list(self.keys)}")
        if self.objects is not None:
            keys = [DEFAULT_KEY] * len(self.objects) if self.keys is None else [int(k) for k in self.keys]
            kept = [(mask, k) for mask, k in zip((np.asarray(m).astype(bool) for m in self.objects), keys) if mask.any()]
            if any(mask.ndim != 2 or mask.shape != kept[0][0].shape for mask, _ in kept):
                raise ValueError("objects must be H x W masks of one size")
            self.objects = [mask for mask, _ in kept] or None  # no non-empty object: as if none were given
            self.keys = [k for _, k in kept] if self.keys is not None and kept else None
        if self.objects is not None:
            if self.mask is None:
                self.mask = np.logical_or.reduce(self.objects)
            if self.num_objects is None:
                self.num_objects = len(self.objects)
        if self.mask is not None:
            self.mask = np.asarray(self.mask).astype(bool)
            if self.mask.ndim != 2:
                raise ValueError(f"mask must be H x W, got shape {self.mask.shape}")
            if not self.mask.any():
                self.mask = None  # an empty mask selects nothing
        if self.boxes is not None:
            self.boxes = _finite(np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4), "boxes")
            bad = (self.boxes[:, 2] <= self.boxes[:, 0]) | (self.boxes[:, 3] <= self.boxes[:, 1])
            if bad.any():
                raise ValueError(f"boxes need x1 > x0 and y1 > y0, got {self.boxes[bad][0].tolist()}")
            if not len(self.boxes):
                self.boxes = None
        if self.points is not None:
            self.points = _finite(np.asarray(self.points, dtype=np.float64).reshape(-1, 2), "points")
            labels = np.ones(len(self.points), np.int64) if self.point_labels is None else self.point_labels
            labels = np.asarray(labels).reshape(-1)
            if labels.shape != (len(self.points),) or not np.isin(labels, (0, 1)).all():
                raise ValueError(f"point_labels must be one 0/1 label per point, got {labels.tolist()}")
            self.point_labels = labels.astype(np.int64)
            if not len(self.points):
                self.points, self.point_labels = None, None
        elif self.point_labels is not None:
            raise ValueError("point_labels given without points")

    @property
    def kind(self) -> str:
        """"mask", "box", "points", combinations joined by "+", or "none"."""
        parts = [name for name, value in (("mask", self.mask), ("box", self.boxes), ("points", self.points))
                 if value is not None]
        return "+".join(parts) or "none"

    @property
    def object_count(self) -> int:
        """Objects the prompt names: ``num_objects`` when the source knows, else 1 for a mask, one
        per box, else one per positive point; 0 for an empty prompt."""
        if self.kind == "none":
            return 0
        if self.num_objects is not None:
            return self.num_objects
        if self.mask is not None:
            return 1
        if self.boxes is not None:
            return self.num_boxes
        return int((self.point_labels == 1).sum())

    @property
    def num_boxes(self) -> int:
        return 0 if self.boxes is None else len(self.boxes)

    @property
    def num_points(self) -> int:
        return 0 if self.points is None else len(self.points)

    def check_fits(self, height: int, width: int) -> None:
        """Raise ValueError if the mask size differs from the image or a box/point lies outside it.

        The one check of a prompt against its image: :meth:`unseg.data.sources.ProtectItem.prompt`
        runs it for every item, :meth:`unseg.protection.Protector.protect_batch` for API input.
        """
        if self.image_size is not None and tuple(self.image_size) != (height, width):
            raise ValueError(f"mask {self.image_size[1]}x{self.image_size[0]} does not match image {width}x{height}")
        if self.mask is not None and self.mask.shape != (height, width):
            raise ValueError(f"mask {self.mask.shape[1]}x{self.mask.shape[0]} does not match image {width}x{height}")
        if self.objects is not None and self.objects[0].shape != (height, width):
            raise ValueError(f"object masks {self.objects[0].shape[1]}x{self.objects[0].shape[0]} do not match "
                             f"image {width}x{height}")
        if self.boxes is not None:
            outside = (self.boxes[:, 2] <= 0) | (self.boxes[:, 3] <= 0) | (self.boxes[:, 0] >= width) | (
                self.boxes[:, 1] >= height)
            if outside.any():
                raise ValueError(f"box {self.boxes[outside][0].tolist()} lies outside the {width}x{height} image")
        if self.points is not None:
            x, y = self.points[:, 0], self.points[:, 1]
            outside = (x < 0) | (y < 0) | (x >= width) | (y >= height)
            if outside.any():
                raise ValueError(f"point {self.points[outside][0].tolist()} lies outside the {width}x{height} image")


def _finite(array: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(array).all():
        raise ValueError(f"{what} must be finite numbers")
    return array
