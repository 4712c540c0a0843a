"""The per-pixel budget holds exactly on integer images."""

import numpy as np
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
