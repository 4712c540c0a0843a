"""Prompt sources: mask folders, COCO files, box/point files; per-item and whole-source errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from unseg.data.sources import (
    ItemError,
    SourceError,
    coco_source,
    folder_source,
    prompts_source,
    read_class_names,
)


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _rgb(height, width):
    return np.zeros((height, width, 3), np.uint8)


def _by_name(items):
    return {item.description: item for item in items}


def test_folder_source_classes_ignore_and_layout(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    _write(images / "a.jpg", _rgb(4, 6))
    _write(images / "city" / "b.png", _rgb(4, 6))
    _write(images / "c.png", _rgb(4, 6))
    _write(images / "d.png", _rgb(5, 5))
    labels = np.array([[0, 1, 1, 3, 3, 255]] * 4, np.uint8)
    _write(masks / "a.png", labels)
    _write(masks / "city" / "b.png", (labels == 1).astype(np.uint8) * 255)  # binary 0/255
    _write(masks / "d.png", np.zeros((4, 4), np.uint8))

    items = _by_name(folder_source(images, masks, ignore_index=[255]))
    assert sorted(items) == ["a.jpg", "c.png", "city/b.png", "d.png"]
    assert items["a.jpg"].output_path == Path("a.png")
    assert items["city/b.png"].output_path == Path("city/b.png")
    everything = items["a.jpg"].prompt((4, 6))
    assert everything.mask[0].tolist() == [False, True, True, True, True, False]
    assert everything.num_objects == 2
    assert items["city/b.png"].prompt((4, 6)).kind == "none"  # its 255s are ignored here
    binary = _by_name(folder_source(images, masks))["city/b.png"].prompt((4, 6))
    assert binary.mask[0].tolist() == [False, True, True, False, False, False]
    with pytest.raises(ItemError, match="no mask for c"):
        items["c.png"].prompt((4, 6))
    with pytest.raises(ItemError, match="mask 4x4 does not match image 5x5"):
        items["d.png"].prompt((5, 5))

    names = {"background": 0, "road": 1, "car": 3}
    only_cars = _by_name(folder_source(images, masks, classes=["car"], class_names=names, jpeg=True))
    assert only_cars["a.jpg"].output_path == Path("a.jpg")
    assert only_cars["a.jpg"].prompt((4, 6)).mask[0].tolist() == [False, False, False, True, True, False]
    no_object = _by_name(folder_source(images, masks, classes=[7]))["a.jpg"].prompt((4, 6))
    assert no_object.kind == "none"
    with pytest.raises(SourceError, match="unknown class 'bus'"):
        folder_source(images, masks, classes=["bus"], class_names=names)
    with pytest.raises(SourceError, match="unknown class id 9"):
        folder_source(images, masks, classes=[9], class_names=names)


def test_class_names_files(tmp_path):
    (tmp_path / "names.txt").write_text("sky\nroad\n\ncar\n")
    assert read_class_names(tmp_path / "names.txt") == {"sky": 0, "road": 1, "car": 3}
    (tmp_path / "ids.txt").write_text("1 road\n5: traffic light\n")
    assert read_class_names(tmp_path / "ids.txt") == {"road": 1, "traffic light": 5}
    (tmp_path / "names.json").write_text(json.dumps({"3": "car"}))
    assert read_class_names(tmp_path / "names.json") == {"car": 3}


def _coco_file(tmp_path: Path) -> Path:
    rle = np.zeros((10, 12), np.uint8, order="F")
    rle[6:9, 0:4] = 1
    encoded = mask_utils.encode(rle)
    encoded["counts"] = encoded["counts"].decode()
    data = {
        "images": [{"id": 1, "file_name": "x.png", "height": 10, "width": 12},
                   {"id": 2, "file_name": "missing.png", "height": 10, "width": 12}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 5, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 12, "bbox": [2, 1, 4, 3],
             "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]]},
            {"id": 2, "image_id": 1, "category_id": 5, "iscrowd": 1, "area": 12, "bbox": [0, 6, 4, 3],
             "segmentation": encoded},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_polygons_and_rle(tmp_path):
    images = tmp_path / "images"
    _write(images / "x.png", _rgb(10, 12))
    _write(images / "extra.png", _rgb(3, 3))
    coco = _coco_file(tmp_path)
    items = _by_name(coco_source(images, coco))
    assert sorted(items) == ["extra.png", "missing.png", "x.png"]
    prompt = items["x.png"].prompt((10, 12))
    assert prompt.num_objects == 2
    assert prompt.mask[7, 1] and prompt.mask[2, 4] and not prompt.mask[0, 11]
    assert items["extra.png"].prompt((3, 3)).kind == "none"
    dogs = _by_name(coco_source(images, coco, classes=["dog"]))["x.png"].prompt((10, 12))
    assert dogs.mask[7, 1] and not dogs.mask[2, 4] and dogs.num_objects == 1
    with pytest.raises(ItemError, match="does not match image"):
        items["x.png"].prompt((10, 13))
    with pytest.raises(SourceError, match="unknown class 'horse'"):
        coco_source(images, coco, classes=["horse"])
    with pytest.raises(SourceError, match="unknown class id 2"):
        coco_source(images, coco, classes=["2"])


def test_prompts_json_and_csv(tmp_path):
    images = tmp_path / "images"
    _write(images / "a.png", _rgb(20, 20))
    _write(images / "b.png", _rgb(20, 20))
    (tmp_path / "p.json").write_text(json.dumps({"a.png": {"boxes": [[1, 2, 10, 12], [0, 0, 3, 3]],
                                                           "points": [[5, 5]], "point_labels": [0]}}))
    items = _by_name(prompts_source(images, tmp_path / "p.json"))
    prompt = items["a.png"].prompt((20, 20))
    assert prompt.num_boxes == 2 and prompt.point_labels.tolist() == [0]
    assert items["b.png"].prompt((20, 20)).kind == "none"

    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\na.png,1,2,10,12\na.png,0,0,3,3\n")
    assert _by_name(prompts_source(images, tmp_path / "boxes.csv"))["a.png"].prompt((20, 20)).num_boxes == 2
    (tmp_path / "points.csv").write_text("image,x,y,label\nb.png,4,5,1\nb.png,6,7,0\n")
    points = _by_name(prompts_source(images, tmp_path / "points.csv"))["b.png"].prompt((20, 20))
    assert points.points.tolist() == [[4, 5], [6, 7]] and points.point_labels.tolist() == [1, 0]

    bad = {"bad.json": "{not json", "header.csv": "file,a,b\nx,1,2\n", "value.csv": "image,x,y\na.png,one,2\n",
           "box.json": json.dumps({"a.png": {"boxes": [[5, 5, 1, 1]]}}), "prompts.txt": "a.png 1 2"}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(SourceError):
            prompts_source(images, tmp_path / name)


def test_camvid_masks_with_void_ignored(shared_data):
    root = shared_data / "camvid"
    items = folder_source(root / "images", root / "masks", ignore_index=[11], classes=[8])
    assert len(items) == 701
    prompt = next(item for item in items if item.description.endswith(".jpg")).prompt((288, 384))
    assert prompt.mask is None or prompt.mask.shape == (288, 384)


def test_objects_are_keyed_by_class_or_by_instance(tmp_path):
    """Class-index masks and COCO key each object by its class / category id (the same class, the
    same noise code everywhere); ``keying="instance"`` keys them 1, 2, ... within the image."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    _write(images / "a.png", _rgb(4, 6))
    _write(masks / "a.png", np.array([[0, 1, 1, 3, 3, 7]] * 4, np.uint8))
    by_class = folder_source(images, masks)[0].prompt((4, 6))
    assert by_class.keys == [1, 3, 7] and by_class.keying == "class"
    assert [int(m[0].argmax()) for m in by_class.objects] == [1, 3, 5]
    by_instance = folder_source(images, masks, keying="instance")[0].prompt((4, 6))
    assert by_instance.keys == [1, 2, 3] and by_instance.keying == "instance"
    with pytest.raises(SourceError, match="keying must be"):
        folder_source(images, masks, keying="colour")
    _write(tmp_path / "coco" / "x.png", _rgb(10, 12))
    coco = _coco_file(tmp_path)
    assert _by_name(coco_source(tmp_path / "coco", coco))["x.png"].prompt((10, 12)).keys == [1, 5]
    assert _by_name(coco_source(tmp_path / "coco", coco, keying="instance"))["x.png"].prompt((10, 12)).keys == [1, 2]
