"""The image-free layout prior: a per-pixel majority vote of the training labels, scored on the test masks."""

import pytest
import torch

from unseg.data.segmentation import CAMVID, KVASIR_SEG
from unseg.evaluation.priors import layout_prior, layout_prior_scores


def top_bottom(n: int, top: int, bottom: int, height: int = 8, width: int = 6) -> torch.Tensor:
    masks = torch.full((n, height, width), bottom, dtype=torch.long)
    masks[:, : height // 2] = top
    return masks


def test_prior_is_the_per_pixel_majority_and_ignored_labels_do_not_vote():
    train = torch.cat([top_bottom(3, 0, 3), top_bottom(2, 3, 0)])  # sky over road 3 times, the reverse twice
    train[:, 0, 0] = CAMVID.ignore_index  # void everywhere at (0, 0) ...
    train[0, 0, 0] = 5  # ... except one tree vote
    prior = layout_prior(train, CAMVID)
    assert prior.shape == (8, 6)
    assert prior[0, 0] == 5
    assert (prior[:4].flatten()[1:] == 0).all() and (prior[4:] == 3).all()


def test_a_layout_only_task_is_solved_and_a_swapped_one_scores_zero():
    train = top_bottom(4, 0, 3)
    same = layout_prior_scores(train, top_bottom(2, 0, 3), CAMVID)
    assert same["miou"] == pytest.approx(100.0)
    assert same["per_class_iou"][0] == pytest.approx(100.0) and same["per_class_iou"][1] is None
    swapped = layout_prior_scores(train, top_bottom(2, 3, 0), CAMVID)
    assert swapped["miou"] == pytest.approx(0.0)


def test_binary_prior_of_a_rarely_placed_object_is_all_background():
    train = torch.zeros(5, 8, 8, dtype=torch.long)
    train[0, 3:5, 3:5] = 1  # the object covers the centre in one image of five: background wins there too
    assert (layout_prior(train, KVASIR_SEG) == 0).all()
    scores = layout_prior_scores(train, torch.ones(2, 8, 8, dtype=torch.long), KVASIR_SEG)
    assert scores["iou"] == pytest.approx(0.0) and scores["dice"] == pytest.approx(0.0)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="differ in size"):
        layout_prior_scores(top_bottom(2, 0, 3), top_bottom(2, 0, 3, height=4), CAMVID)
    with pytest.raises(ValueError, match="non-empty"):
        layout_prior(torch.zeros(0, 4, 4, dtype=torch.long), CAMVID)
