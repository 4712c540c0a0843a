"""The per-pixel budget holds exactly on integer images."""

import numpy as np
import torch
import pytest

from unseg.budget import DEFAULT_BUDGET, Budget
from unseg.protection.budget import apply_budget, measured_linf, saturate_noise


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_bound_exact_inside_and_outside(dtype):
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    image = rng.integers(0, top + 1, size=(37, 53, 3)).astype(dtype)
    image[:3] = 0
    image[-3:] = top
    noise = rng.uniform(-1, 1, size=(37, 53, 3))
    noise[5] = 1.0
    region = np.zeros((37, 53), bool)
    region[10:25, 5:40] = True
    out = apply_budget(image, noise, region, Budget(8, 2))
    inside, outside = measured_linf(image, out, region)
    levels = Budget(8, 2).levels(top)
    assert levels == ((8, 2) if top == 255 else (2056, 514))
    assert inside <= levels[0] and outside <= levels[1]
    assert inside == levels[0]  # saturated noise reaches the budget
    assert out.dtype == dtype


def test_grayscale_gets_channel_mean_and_zero_budget_is_identity():
    image = np.full((8, 8, 1), 100, np.uint8)
    noise = np.ones((8, 8, 3))
    out = apply_budget(image, noise, np.ones((8, 8), bool), Budget(8, 0))
    assert (out == 108).all()
    assert (apply_budget(image, noise, np.zeros((8, 8), bool), Budget(8, 0)) == image).all()


def test_bad_inputs():
    with pytest.raises(TypeError):
        apply_budget(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 3)), np.zeros((4, 4), bool))
    with pytest.raises(ValueError):
        apply_budget(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3)), np.zeros((4, 4), bool))



def test_budget_validates_and_converts_its_units():
    assert DEFAULT_BUDGET == Budget(8, 2) and str(DEFAULT_BUDGET) == "ε 8/255, ε_bg 2/255"
    assert (DEFAULT_BUDGET.fraction, DEFAULT_BUDGET.fraction_bg) == (8 / 255, 2 / 255)
    assert Budget.from_fractions(8 / 255, 0.25 / 255) == Budget(8, 0.25)  # no 8.000000000000002
    assert Budget(8, 2).levels(65535) == (2056, 514) and Budget(0.5, 0.25).levels() == (0, 0)
    assert Budget(255, 255).levels(65535) == (65535, 65535)
    for bad in ((300, 2), (-1, 0), (8, -1), (float("nan"), 0), ("8", 2), (True, 0)):
        with pytest.raises(ValueError):
            Budget(*bad)
    with pytest.raises(ValueError, match="must not exceed"):
        Budget(2, 8)
    with pytest.raises(ValueError, match="fraction"):
        Budget.from_fractions(8, 2)  # levels passed where fractions are expected

def test_saturate_noise_keeps_the_pattern_drops_the_colour_cast_and_fills_the_budget():
    rng = np.random.default_rng(0)
    region = np.zeros((20, 30), bool)
    region[4:16, 5:25] = True
    pattern = np.where(rng.random((20, 30, 3)) < 0.5, 1.0, -1.0)
    cast = np.array([0.5, -0.4, 0.3])
    noise = np.where(region[..., None], cast + 0.3 * pattern, -0.2 + 0.1 * pattern).astype(np.float32)
    out = saturate_noise(noise, region)
    assert out.shape == noise.shape and set(np.unique(out)) <= {-1.0, 0.0, 1.0}
    agreement = (out == pattern).mean()  # the pattern's sign survives, the casts are gone
    assert agreement > 0.95, agreement
    assert np.abs(out[region].mean(0)).max() < 0.2
    assert not saturate_noise(np.full((4, 4, 3), 0.7, np.float32), np.ones((4, 4), bool)).any()  # flat: nothing
    with pytest.raises(ValueError, match="differ in size"):
        saturate_noise(noise, region[:10])


def test_saturation_per_segment_removes_each_segments_own_cast_and_leaves_zero_noise_zero():
    """Integer segment labels (protection's: region outside the objects, off the region, one per
    object): each segment loses its own channel means, a segment of zero noise stays zero, and a
    strip saturated with the whole image's means equals that strip of the whole."""
    from unseg.protection import perturb

    rng = np.random.default_rng(1)
    segments = np.zeros((24, 30), np.int64)
    segments[:, 20:] = 1
    segments[2:12, 2:12], segments[12:22, 6:16] = 2, 3
    pattern = np.where(rng.random((24, 30, 3)) < 0.5, 1.0, -1.0)
    casts = np.array([[0.2, 0.1, -0.1], [-0.3, 0.0, 0.2], [0.6, -0.5, 0.4], [0.0, 0.0, 0.0]])
    noise = (casts[segments] + 0.2 * pattern).astype(np.float32)
    noise[segments == 3] = 0.0  # a null-code object
    out = saturate_noise(noise, segments)
    live = segments != 3
    assert (out[live] == pattern[live]).mean() > 0.95  # every segment's cast removed, not one mean for all
    assert not out[segments == 3].any()
    two = saturate_noise(noise, segments < 2)  # one mean for segments 2 and 3: part of 2's cast stays
    assert (two[segments == 2] == pattern[segments == 2]).mean() < 0.9
    sums, counts = perturb.segment_channel_sums(torch.from_numpy(noise), torch.from_numpy(segments), 4)
    means = perturb.segment_channel_means(sums, counts).numpy()
    np.testing.assert_array_equal(saturate_noise(noise[5:17], segments[5:17], means), out[5:17])
