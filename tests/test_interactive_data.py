"""Interactive training samples: objects of class masks / COCO files, letterbox, augmentation."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training_helpers import write_png
from unseg.data.folders import read_split
from unseg.data.interactive import (
    WHOLE_REGION,
    Augmentation,
    InteractiveDataset,
    class_objects,
    object_mask,
)

HEIGHT, WIDTH = 20, 30


def _labels() -> np.ndarray:
    """20x30 class mask; areas: class 1 = 36 + 48 (two pieces), 2 = 24, 3 = 4 (tiny),
    4 = 4 + 4 (two tiny pieces, 8 together), 11 (void) = 60, background 0 = the remaining 420."""
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    labels[2:8, 2:8] = 1
    labels[12:18, 20:28] = 1
    labels[2:6, 14:20] = 2
    labels[15:17, 4:6] = 3
    labels[10:12, 10:12] = 4
    labels[10:12, 14:16] = 4
    labels[18:20, :] = 11
    return labels


def _folder(tmp_path: Path, labels: np.ndarray, stems=("a",)) -> tuple[Path, Path]:
    """images/ + masks/ with one picture per stem whose red channel marks class 1."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    for stem in stems:
        picture = np.zeros((*labels.shape, 3), np.uint8)
        picture[..., 0] = np.where(labels == 1, 255, 0)
        picture[..., 1] = np.linspace(0, 255, labels.shape[1], dtype=np.uint8)[None, :]  # left-right gradient
        write_png(images / f"{stem}.png", picture)
        write_png(masks / f"{stem}.png", labels)
    return images, masks


def _refs(objects) -> set[tuple[int, int, int]]:
    return {(o.class_id, o.component, o.area) for o in objects}


def test_class_regions_components_ignore_and_min_area():
    labels = _labels()
    expected = {(0, 1, 420), (1, WHOLE_REGION, 84), (1, 1, 36), (1, 2, 48), (2, 1, 24), (4, WHOLE_REGION, 8)}
    objects = class_objects(labels, image_index=5, ignore_index=11, min_area=6)
    assert _refs(objects) == expected
    assert {o.image_index for o in objects} == {5}
    # without an ignore index the void strip is an ordinary object; min_area 1 keeps every piece
    assert (11, 1, 60) in _refs(class_objects(labels, 0, None, 6))
    small = _refs(class_objects(labels, 0, 11, 1))
    assert {(3, 1, 4), (4, 1, 4), (4, 2, 4)} <= small and all(c != 11 for c, _, _ in small)
    # a higher threshold drops the smaller class-1 piece but keeps the whole class-1 region
    assert _refs(class_objects(labels, 0, 11, 40)) == {(0, 1, 420), (1, WHOLE_REGION, 84), (1, 2, 48)}
    for ref in objects:
        binary = object_mask(labels, ref)
        assert binary.sum() == ref.area
        assert (labels[binary] == ref.class_id).all()


def test_folder_dataset_objects_and_letterboxed_items(tmp_path):
    labels = _labels()
    images, masks = _folder(tmp_path, labels, stems=("a", "b"))
    (tmp_path / "split.txt").write_text("# training stems\nb\n\n")
    assert read_split(tmp_path / "split.txt") == ["b"]
    dataset = InteractiveDataset.from_folder(images, masks, size=WIDTH, split_file=tmp_path / "split.txt",
                                             ignore_index=11, min_area=6 / labels.size)
    assert len(dataset) == 6 and [p.name for p in dataset.image_paths] == ["b.png"]
    assert "split.txt" in dataset.description
    both = InteractiveDataset.from_folder(images, masks, size=WIDTH, ignore_index=11, min_area=6 / labels.size)
    assert len(both) == 12
    for index, ref in enumerate(dataset.objects):
        item = dataset[index]
        assert item["image"].shape == (3, WIDTH, WIDTH) and item["mask"].shape == item["valid"].shape == (1, WIDTH, WIDTH)
        # the width is the long side: scale 1, content in the top 20 rows, zero padding below
        assert torch.equal(item["mask"][0, :HEIGHT].bool(), torch.from_numpy(object_mask(labels, ref)))
        assert item["mask"][0, HEIGHT:].sum() == 0 and item["image"][:, HEIGHT:].abs().sum() == 0
        assert item["valid"][0, :HEIGHT].min() == 1 and item["valid"][0, HEIGHT:].max() == 0
        assert item["image"][0, :HEIGHT].numpy() == pytest.approx(np.where(labels == 1, 1.0, 0.0), abs=1e-5)


@pytest.mark.parametrize(("shape", "content"), [((48, 64), (24, 32)), ((64, 48), (32, 24)), ((40, 40), (32, 32))])
def test_letterbox_valid_area_follows_aspect_ratio(tmp_path, shape, content):
    labels = np.zeros(shape, np.uint8)
    labels[5:20, 5:20] = 1
    images, masks = _folder(tmp_path, labels)
    item = InteractiveDataset.from_folder(images, masks, size=32, min_area=0.01)[0]
    valid = item["valid"][0]
    assert valid.sum() == content[0] * content[1]
    assert valid[: content[0], : content[1]].min() == 1
    assert (item["mask"] <= item["valid"]).all()  # the object never lies on padding


def _red_iou(item) -> float:
    """IoU between the object mask and the red (class-1) pixels of the augmented image."""
    red = item["image"][0] > 0.5
    mask = item["mask"][0] > 0.5
    return ((red & mask).sum() / (red | mask).sum()).item()


def test_flip_mirrors_image_and_mask_together(tmp_path):
    labels = np.zeros((24, 32), np.uint8)
    labels[4:14, 2:10] = 1  # off-centre: a flip moves it
    images, masks = _folder(tmp_path, labels)
    plain = InteractiveDataset.from_folder(images, masks, size=32, min_area=0.01)
    flipped = InteractiveDataset.from_folder(images, masks, size=32, min_area=0.01,
                                             augmentation=Augmentation(flip_probability=1.0, scale_min=1, scale_max=1))
    index = next(i for i, ref in enumerate(plain.objects) if ref.class_id == 1)
    a, b = plain[index], flipped[index]
    assert not torch.equal(a["mask"], b["mask"])
    # the content spans the full width (wide image), so the flip is an exact mirror of the whole input
    assert torch.equal(b["mask"], a["mask"].flip(-1))
    assert torch.allclose(b["image"], a["image"].flip(-1))
    assert torch.equal(b["valid"], a["valid"])
    assert _red_iou(b) == pytest.approx(1.0)


def test_scale_jitter_keeps_mask_on_image_and_object_in_crop(tmp_path):
    labels = np.zeros((48, 64), np.uint8)
    labels[30:44, 42:62] = 1  # object near the bottom-right corner: crops must keep it
    images, masks = _folder(tmp_path, labels)
    dataset = InteractiveDataset.from_folder(images, masks, size=32, min_area=0.01, seed=4,
                                             augmentation=Augmentation(flip_probability=0.5, scale_min=0.5,
                                                                       scale_max=2.5))
    index = next(i for i, ref in enumerate(dataset.objects) if ref.class_id == 1)
    sides, flips = set(), set()
    for epoch in range(12):
        dataset.set_epoch(epoch)
        item = dataset[index]
        assert item["mask"].shape == (1, 32, 32)
        assert item["mask"].sum() > 0
        assert _red_iou(item) > 0.6  # misaligned image/mask would not overlap at all
        sides.add(int(item["valid"].sum()))
        row = item["image"][1, 0][item["valid"][0, 0] > 0]
        flips.add(bool(row[0] > row[-1]))  # the green gradient runs right-to-left after a flip
    assert len(sides) > 2 and flips == {True, False}  # scales and flips really vary with the epoch
    dataset.set_epoch(3)
    again = dataset[index]
    dataset.set_epoch(3)
    assert all(torch.equal(again[k], dataset[index][k]) for k in again)


def test_dataset_errors(tmp_path):
    labels = np.zeros((10, 10), np.uint8)
    images, masks = _folder(tmp_path, labels)
    with pytest.raises(ValueError, match="no objects found"):
        InteractiveDataset.from_folder(images, masks, size=16, ignore_index=0)
    with pytest.raises(FileNotFoundError, match="split file not found"):
        InteractiveDataset.from_folder(images, masks, size=16, split_file=tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="no image for stem 'zz'"):
        (tmp_path / "s.txt").write_text("zz\n")
        InteractiveDataset.from_folder(images, masks, size=16, split_file=tmp_path / "s.txt")
    write_png(masks / "a.png", np.ones((12, 10), np.uint8))  # mask no longer fits its image
    dataset = InteractiveDataset.from_folder(images, masks, size=16)
    with pytest.raises(ValueError, match="sizes differ"):
        dataset[0]


def test_coco_instances_become_objects(tmp_path):
    picture = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    picture[2:12, 4:16, 0] = 255
    write_png(tmp_path / "images" / "x.png", picture)
    annotations = [
        {"id": 7, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 120, "bbox": [4, 2, 12, 10],
         "segmentation": [[4, 2, 16, 2, 16, 12, 4, 12]]},
        {"id": 8, "image_id": 1, "category_id": 3, "iscrowd": 1, "area": 40, "bbox": [20, 2, 8, 5],
         "segmentation": [[20, 2, 28, 2, 28, 7, 20, 7]]},
        {"id": 9, "image_id": 1, "category_id": 5, "iscrowd": 0, "area": 1, "bbox": [25, 15, 1, 1],
         "segmentation": [[25, 15, 26, 15, 26, 16, 25, 16]]},
    ]
    data = {"images": [{"id": 1, "file_name": "x.png", "height": HEIGHT, "width": WIDTH},
                       {"id": 2, "file_name": "empty.png", "height": HEIGHT, "width": WIDTH}],
            "categories": [{"id": 3, "name": "box"}, {"id": 5, "name": "dot"}],
            "annotations": annotations}
    (tmp_path / "instances.json").write_text(json.dumps(data))
    dataset = InteractiveDataset.from_coco(tmp_path / "instances.json", tmp_path / "images", size=WIDTH,
                                           min_area=0.01)
    # crowd and too-small instances are skipped; images without objects are not indexed
    assert [(o.class_id, o.component, o.area) for o in dataset.objects] == [(3, 7, 120)]
    assert [p.name for p in dataset.image_paths] == ["x.png"]
    item = dataset[0]
    assert _red_iou(item) > 0.9
    assert abs(item["mask"].sum().item() - 120) <= 12
    with pytest.raises(FileNotFoundError, match="COCO annotation file not found"):
        InteractiveDataset.from_coco(tmp_path / "none.json", tmp_path / "images", size=WIDTH)
