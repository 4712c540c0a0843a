"""Training prompts sampled from true masks: types per sample, geometry, and the unprompted share."""

import torch

from unseg.models.prompts import PADDING, POSITIVE
from unseg.training.prompts import (
    PromptSampling,
    generator_prompt_types,
    mask_boxes,
    prompt_batch,
    surrogate_prompt_types,
)


def _masks() -> torch.Tensor:
    masks = torch.zeros(3, 1, 32, 32)
    masks[0, 0, 4:10, 6:20] = 1
    masks[1, 0, 20:30, 2:5] = 1
    masks[2, 0, 0:32, 16:32] = 1
    return masks


def test_generator_types_are_non_empty_subsets_and_surrogate_types_one_each():
    rng = torch.Generator().manual_seed(0)
    generator_types = generator_prompt_types(4000, rng)
    assert generator_types.any(dim=1).all()
    assert len({tuple(row.tolist()) for row in generator_types}) == 7  # every non-empty subset occurs
    surrogate_types = surrogate_prompt_types(4000, rng)
    assert (surrogate_types.sum(dim=1) == 1).all()


def test_unprompted_share_gives_rows_without_any_prompt():
    rng = torch.Generator().manual_seed(1)
    types = surrogate_prompt_types(4000, rng, unprompted=0.5)
    none = ~types.any(dim=1)
    assert (types.sum(dim=1) <= 1).all() and 0.45 < none.float().mean() < 0.55
    assert not (~surrogate_prompt_types(500, rng, unprompted=0.0).any(dim=1)).any()
    assert not surrogate_prompt_types(500, rng, unprompted=1.0).any()

    use = torch.tensor([[False, False, False], [True, False, False], [False, False, True]])
    prompts = prompt_batch(_masks(), use, PromptSampling(num_points=4), rng)
    assert (prompts.labels[0] == PADDING).all() and not prompts.has_mask[0] and prompts.masks[0].sum() == 0
    assert (prompts.labels[1, :2] != PADDING).all() and (prompts.labels[1, 2:] == PADDING).all()
    assert prompts.has_mask[2] and prompts.masks[2].sum() > 0


def test_prompt_geometry_follows_the_mask():
    masks = _masks()
    rng = torch.Generator().manual_seed(2)
    every = torch.ones(3, 3, dtype=torch.bool)
    prompts = prompt_batch(masks, every, PromptSampling(num_points=6, box_jitter=0.0), rng)
    assert torch.equal(prompts.coords[:, :2].flatten(1), mask_boxes(masks))  # no jitter: the tight box
    assert torch.equal(mask_boxes(masks)[0], torch.tensor([6.0, 4.0, 19.0, 9.0]))
    points = prompts.coords[:, 2:].long()
    assert (prompts.labels[:, 2:] == POSITIVE).all()
    for i in range(3):
        assert masks[i, 0, points[i, :, 1], points[i, :, 0]].eq(1).all()  # every point on the object
        overlap = (prompts.masks[i] * masks[i]).sum() / masks[i].sum()
        assert overlap > 0.5  # the noisy mask is a perturbed copy, not something else
