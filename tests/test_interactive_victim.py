"""The interactive victim's samples and its prompt-only references: box-fill and the inscribed ellipse."""

import torch

from unseg.data.segmentation import DatasetSpec
from unseg.evaluation.interactive import box_fill_iou, box_masks, ellipse_masks, object_samples, prompt_only_ious
from unseg.evaluation.training import SplitTensors

SPEC = DatasetSpec(name="toy", num_classes=3, ignore_index=None, class_names=("bg", "square", "triangle"),
                   objects="foreground", primary_metric="miou")


def _split() -> SplitTensors:
    masks = torch.zeros(2, 40, 40, dtype=torch.long)
    masks[0, 8:24, 10:30] = 1  # a rectangle fills its box exactly
    rows, cols = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    masks[1][(rows >= 4) & (cols >= 4) & (cols - 4 <= rows - 4) & (rows < 36)] = 2  # a right triangle: half its box
    return SplitTensors(torch.randint(0, 255, (2, 3, 40, 40), dtype=torch.uint8), masks)


def test_box_fill_of_a_rectangle_is_the_object_and_of_a_triangle_about_half():
    samples = object_samples(_split(), SPEC, size=64, max_objects=3, generator=torch.Generator().manual_seed(0))
    assert len(samples) == 2
    boxes = box_masks(samples)
    assert boxes.shape == samples.targets.shape == (2, 1, 32, 32)
    by_area = sorted(range(2), key=lambda i: -float((samples.targets[i] * boxes[i]).sum() / boxes[i].sum()))
    rectangle, triangle = by_area
    inter = float((boxes[rectangle] * samples.targets[rectangle]).sum())
    union = float(((boxes[rectangle] + samples.targets[rectangle]) > 0).sum())
    assert inter / union > 0.9  # box fill = the object, up to one row of resampling at the edges
    overlap = float((boxes[triangle] * samples.targets[triangle]).sum() / boxes[triangle].sum())
    assert 0.45 < overlap < 0.62  # a triangle covers about half of its box
    pooled = box_fill_iou(samples)
    inter = float((boxes * samples.targets).sum())
    union = float(((boxes + samples.targets) > 0).sum())
    assert abs(pooled - 100 * inter / union) < 1e-6


def test_ellipse_prior_fills_pi_over_four_of_its_box_and_beats_box_fill_on_a_disc():
    masks = torch.zeros(1, 80, 80, dtype=torch.long)
    rows, cols = torch.meshgrid(torch.arange(80), torch.arange(80), indexing="ij")
    masks[0][(rows - 40) ** 2 + (cols - 36) ** 2 <= 24 ** 2] = 1  # a disc of radius 24
    split = SplitTensors(torch.zeros(1, 3, 80, 80, dtype=torch.uint8), masks)
    samples = object_samples(split, SPEC, size=128, max_objects=1, generator=torch.Generator().manual_seed(0))
    ellipse, boxes = ellipse_masks(samples), box_masks(samples)
    assert ellipse.shape == boxes.shape == samples.targets.shape
    assert (ellipse <= boxes).all()  # inside its box
    assert abs(float(ellipse.sum() / boxes.sum()) - torch.pi / 4) < 0.03
    scores = prompt_only_ious(samples)
    assert scores["ellipse_iou"] > 90 and scores["ellipse_iou"] > scores["box_fill_iou"] + 15
    assert scores["box_fill_iou"] == box_fill_iou(samples)


def test_a_trained_interactive_victim_reports_its_test_objects_prompt_only_baselines():
    import numpy as np

    from unseg.evaluation.interactive import object_samples as samples_of
    from unseg.evaluation.training import TrainSchedule, train_victim
    from unseg.evaluation.victims import parse_victim

    split = _split()
    result = train_victim(parse_victim("sam"), SPEC, split, split, TrainSchedule(epochs=1, batch_size=2),
                          torch.device("cpu"), seed=0, progress=None)
    size = 128  # the sam victim's input side
    expected = prompt_only_ious(samples_of(split, SPEC, size, max_objects=3, generator=torch.Generator().manual_seed(1)))
    assert {k: result.final[k] for k in expected} == expected
    assert 0 <= result.final["iou"] <= 100 and result.final["objects"] == 2
    assert np.isfinite(result.history[0]["loss"])


def test_sam_victim_presets_set_the_input_side_and_unknown_ones_are_refused():
    import pytest

    from unseg.evaluation.training import TrainSchedule, train_victim
    from unseg.evaluation.victims import build_victim, parse_victim

    assert parse_victim("sam").encoder is None and build_victim(parse_victim("sam"), 2).config.sam.img_size == 128
    victim = parse_victim("sam@small_256")
    assert victim.interactive and victim.encoder == "small_256"
    model = build_victim(victim, 2)
    assert model.config.sam.img_size == 256 and model.config.sam.embedding_size == 16  # the small grid, 2x the pixels
    split = _split()
    result = train_victim(victim, SPEC, split, split, TrainSchedule(epochs=1, batch_size=2), torch.device("cpu"),
                          seed=0, progress=None)
    expected = prompt_only_ious(object_samples(split, SPEC, 256, max_objects=3, generator=torch.Generator().manual_seed(1)))
    assert {k: result.final[k] for k in expected} == expected  # its test objects were cut at 256 px
    with pytest.raises(ValueError, match="unknown sam victim preset 'huge'"):
        parse_victim("sam@huge")
