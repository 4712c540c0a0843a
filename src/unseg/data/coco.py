"""The one reader of COCO instances files (polygons or RLE, through pycocotools), for
``unseg protect --coco`` (:func:`unseg.data.sources.coco_source`) and generator training
(:meth:`unseg.data.interactive.InteractiveDataset.from_coco`)."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class CocoInstances:
    """A COCO instances file, loaded once. Build with :meth:`read`."""

    path: Path
    coco: Any  # pycocotools.coco.COCO

    @classmethod
    def read(cls, path: str | Path) -> "CocoInstances":
        """Load ``path`` quietly (pycocotools prints progress); FileNotFoundError when it is
        missing, ValueError when it is not a COCO instances file."""
        from pycocotools.coco import COCO

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {path}")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                coco = COCO(str(path))
        except (json.JSONDecodeError, KeyError, TypeError, AssertionError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not a COCO instances file: {error!r}") from error
        return cls(path, coco)

    def category_ids(self) -> dict[str, int]:
        """Category name -> id."""
        return {category["name"]: int(category["id"]) for category in self.coco.loadCats(self.coco.getCatIds())}

    def images(self) -> list[dict[str, Any]]:
        """Every image entry (``id``, ``file_name``, ``height``, ``width``, ...), in file order."""
        return list(self.coco.imgs.values())

    def annotations(self, image_id: int, categories: set[int] | None = None, crowd: bool = True,
                    min_area: float = 0.0) -> list[dict[str, Any]]:
        """The image's instances, in file order: of ``categories`` only (None: all), without crowd
        regions unless ``crowd``, of area at least ``min_area`` pixels."""
        return [annotation for annotation in self.coco.imgToAnns.get(image_id, [])
                if (categories is None or annotation["category_id"] in categories)
                and (crowd or not annotation.get("iscrowd", 0)) and (min_area <= 0 or annotation["area"] >= min_area)]

    def mask(self, annotation: dict[str, Any]) -> np.ndarray:
        """``H x W`` bool mask of one instance (polygons or RLE rasterised at the image's size)."""
        return self.coco.annToMask(annotation).astype(bool)
