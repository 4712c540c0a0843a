"""The two ways an image enters the generator's square input (``unseg.data.transforms.INPUT_FITS``):
geometry of the square resize, and the protector's noise under each fit."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unseg.data.transforms import INPUT_FITS, Letterbox, SquareResize
from unseg.protection import Protector
from unseg.protection.perturb import map_to_native


def test_square_resize_maps_pixels_points_and_noise_per_axis():
    fit = SquareResize(40, 100, 20)  # rows shrink by 2, columns by 5
    assert fit.resized == (20, 20) and fit.noise_crop(64) == (64, 64)
    np.testing.assert_allclose(fit.points_to_input(np.array([[50.0, 10.0], [100.0, 40.0]])), [[10, 5], [20, 20]])
    image = torch.zeros(1, 1, 40, 100)
    image[..., 10:30, 25:75] = 1  # a block whose corners the points map to
    placed = fit.image_to_input(image, mode="nearest")[0, 0]
    rows, cols = torch.nonzero(placed, as_tuple=True)
    corners = fit.points_to_input(np.array([[25.0, 10.0], [75.0, 30.0]]))
    assert (int(cols.min()), int(rows.min())) == tuple(corners[0].astype(int))
    assert (int(cols.max()) + 1, int(rows.max()) + 1) == tuple(corners[1].astype(int))
    grid = torch.randn(3, 8, 8)  # noise over the input goes back over the whole image, stretched per axis
    expected = F.interpolate(grid[None], size=(40, 100), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(map_to_native(grid, fit), expected, atol=1e-5, rtol=0)


def test_letterbox_and_square_fits_agree_on_square_images():
    letterbox, square = Letterbox(30, 30, 16), SquareResize(30, 30, 16)
    image = torch.rand(1, 3, 30, 30)
    torch.testing.assert_close(letterbox.image_to_input(image), square.image_to_input(image))
    grid = torch.randn(3, 16, 16)
    torch.testing.assert_close(map_to_native(grid, letterbox), map_to_native(grid, square))


@pytest.fixture(scope="module")
def protectors(tiny_generator_path):
    """Per fit, the tiny generator's raw noise (unsaturated: saturation's means depend on the pixel count)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {fit: Protector.load(str(tiny_generator_path), fit=fit, saturate=False) for fit in INPUT_FITS}


def test_square_fit_puts_the_pattern_at_the_same_relative_place_whatever_the_aspect(protectors):
    flat, wide = np.full((24, 24, 3), 128, np.uint8), np.full((24, 72, 3), 128, np.uint8)  # same content, 3x wider
    mask_flat, mask_wide = np.zeros((24, 24), bool), np.zeros((24, 72), bool)
    mask_flat[6:18, 6:18], mask_wide[6:18, 18:54] = True, True  # the same object, relatively
    noise = {fit: (protector.protect(flat, mask=mask_flat).noise, protector.protect(wide, mask=mask_wide).noise)
             for fit, protector in protectors.items()}
    # squashed, both inputs are the same, so every third column of the wide noise (the centre of
    # each 3-column group samples the same input position) is the narrow image's noise
    small, stretched = noise["square"]
    assert np.abs(stretched[:, 1::3] - small).max() < 0.01  # (the masks resize a little differently)
    small, boxed = noise["letterbox"]  # letterboxed, the wide image sits in a third of the input's rows
    assert np.abs(boxed[:, 1::3] - small).max() > 0.1


def test_square_fit_keeps_the_budget_and_is_recorded(tiny_generator_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        protector = Protector.load(str(tiny_generator_path), fit="square")
    image = np.random.default_rng(0).integers(0, 256, (30, 70, 3), dtype=np.uint8)
    mask = np.zeros((30, 70), bool)
    mask[5:25, 10:40] = True
    result = protector.protect(image, mask=mask)
    change = np.abs(result.pixels.astype(int) - image.astype(int)).max(axis=-1)
    assert change[mask].max() <= 8 and change[~mask].max() <= 2
    assert (change[mask] == 8).mean() > 0.9  # saturated: the whole budget spent (unless clipped at 0 / 255)
    assert protector.describe()["fit"] == "square"


def test_unknown_fit_is_refused(tiny_generator_path):
    with pytest.raises(ValueError, match="fit must be one of letterbox, square"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Protector.load(str(tiny_generator_path), fit="crop")
