"""Defences: image transforms (shape, dtype, effect), name parsing, the clean/protected mixtures, and the PGD
attack adversarial training uses."""

import numpy as np
import pytest
import torch

from evaluation_helpers import write_toy_folder
from unseg.data.images import write_image
from unseg.data.segmentation import SegmentationFolder
from unseg.evaluation.config import EvaluationConfig
from unseg.evaluation.defences import bit_depth, clean_subset, gaussian_blur, grayscale, jpeg, parse_defence
from unseg.evaluation.protocol import plan_cells, training_images
from unseg.evaluation.training import pgd_attack


def _noisy(height: int = 37, width: int = 53, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", ["jpeg75", "blur1", "bits3", "gray"])
def test_image_transforms_keep_shape_and_dtype_and_change_noise(name):
    pixels = _noisy()
    out = parse_defence(name).image_transform(pixels.copy())
    assert out.shape == pixels.shape and out.dtype == np.uint8
    assert not np.array_equal(out, pixels)


def test_jpeg_error_grows_as_quality_drops():
    pixels = _noisy()
    errors = [np.abs(jpeg(q)(pixels).astype(int) - pixels).mean() for q in (95, 50, 10)]
    assert errors[0] < errors[1] < errors[2]


def test_blur_smooths_and_leaves_flat_images_alone():
    pixels = _noisy()
    assert gaussian_blur(2)(pixels).std() < 0.5 * pixels.std()
    flat = np.full((20, 30, 3), 77, np.uint8)
    np.testing.assert_array_equal(gaussian_blur(2)(flat), flat)


def test_bit_depth_maps_to_bin_centres():
    pixels = _noisy()
    assert set(np.unique(bit_depth(1)(pixels))) == {64, 192}
    assert len(np.unique(bit_depth(3)(pixels))) <= 8
    np.testing.assert_array_equal(bit_depth(8)(pixels), pixels)  # 8 bits: identity
    assert bit_depth(2)(np.array([[[0, 63, 64]]], np.uint8)).tolist() == [[[32, 32, 96]]]


def test_grayscale_replicates_luma():
    pixels = _noisy()
    out = grayscale(pixels)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    assert int(grayscale(red)[0, 0, 0]) == pytest.approx(0.299 * 255, abs=1)


def test_training_time_and_mixture_flags():
    assert parse_defence("none").image_transform is None
    assert parse_defence("augment").augment
    assert parse_defence("advtrain").adversarial_epsilon == pytest.approx(4 / 255)
    assert parse_defence("advtrain8").adversarial_epsilon == pytest.approx(8 / 255)
    mix = parse_defence("mix20")
    assert mix.clean_fraction == pytest.approx(0.2) and mix.is_mixture and not mix.clean_only
    part = parse_defence("cleanpart20")
    assert part.clean_fraction == pytest.approx(0.2) and part.clean_only and not part.is_mixture


@pytest.mark.parametrize("name", ["", "foo", "jpeg", "jpeg0", "jpeg101", "bits0", "bits9", "mix101", "cleanpart0", "blur", "Gray"])
def test_bad_defence_names_raise(name):
    with pytest.raises(ValueError):
        parse_defence(name)


def test_unknown_defence_message_lists_the_names():
    with pytest.raises(ValueError, match="unknown defence 'foo'.*jpeg<Q>"):
        parse_defence("foo")
    with pytest.raises(ValueError, match="JPEG quality"):
        parse_defence("jpeg0")


@pytest.mark.parametrize("count, percent, expected", [(10, 20, 2), (10, 60, 6), (7, 50, 4), (5, 0, 0), (5, 100, 5)])
def test_clean_subset_size_is_rounded_fraction(count, percent, expected):
    subset = clean_subset(count, percent / 100, seed=0)
    assert len(subset) == expected
    assert len(set(subset.tolist())) == expected and all(0 <= i < count for i in subset)
    assert subset.tolist() == sorted(subset.tolist())
    np.testing.assert_array_equal(subset, clean_subset(count, percent / 100, seed=0))


def test_clean_subset_depends_on_seed():
    assert any(not np.array_equal(clean_subset(50, 0.2, 0), clean_subset(50, 0.2, s)) for s in range(1, 4))


def test_plan_adds_the_clean_part_reference_for_mixtures():
    config = EvaluationConfig(datasets=("camvid",), victims=("unet",), methods=("clean", "random"), defences=("none", "mix20", "mix0"))
    keys = [cell.key for cell in plan_cells(config)]
    assert keys == ["camvid|unet|clean|none", "camvid|unet|clean|cleanpart20",
                    "camvid|unet|random|none", "camvid|unet|random|mix20", "camvid|unet|random|mix0"]


def test_mixture_training_images_are_the_seeded_clean_subset(tmp_path):
    """mix50 of 4 images: the 2 images of clean_subset are clean, the rest protected; cleanpart50 keeps only those 2."""
    folder = SegmentationFolder(write_toy_folder(tmp_path, train=4, test=1))
    stems = folder.stems("train")
    protected = tmp_path / "protected"
    for stem in stems:  # a stand-in "protected" copy: the image inverted
        write_image(protected / f"{stem}.png", 255 - folder.read_image(stem).rgb8())
    clean_index = set(clean_subset(4, 0.5, seed=7).tolist())
    used, images = training_images(folder, stems, protected, parse_defence("mix50"), seed=7)
    assert used == stems
    for i, (stem, pixels) in enumerate(zip(stems, images)):
        original = folder.read_image(stem).rgb8()
        np.testing.assert_array_equal(pixels, original if i in clean_index else 255 - original)
    used, images = training_images(folder, stems, protected, parse_defence("cleanpart50"), seed=7)
    assert used == [stems[i] for i in sorted(clean_index)]
    for stem, pixels in zip(used, images):
        np.testing.assert_array_equal(pixels, folder.read_image(stem).rgb8())
    # an image defence applies after the mixing, to every training image
    _, gray = training_images(folder, stems, protected, parse_defence("gray"), seed=7)
    assert all((g[..., 0] == g[..., 2]).all() for g in gray)


def _linear_model():
    model = torch.nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1))
    return model


def test_pgd_attack_from_the_images_takes_signed_steps_of_the_given_size():
    model = _linear_model().train()
    images = torch.full((2, 3, 4, 4), 0.5)
    out = pgd_attack(model, model, images, lambda y: y.sum(), epsilon=0.1, steps=1, generator=None, step=0.03)
    expected = images + 0.03 * torch.tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1)  # sign of the weights
    assert torch.allclose(out, expected)
    assert model.training  # the model's mode is restored


def test_pgd_attack_stays_within_epsilon_and_the_pixel_range_and_raises_the_loss():
    model = _linear_model()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    images[0, :, :2] = 1.0  # pixels at the range's edge
    out = pgd_attack(model, model, images, lambda y: y.sum(), epsilon=8 / 255, steps=5,
                     generator=torch.Generator().manual_seed(1))
    assert float((out - images).abs().max()) <= 8 / 255 + 1e-6
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert float(model(out).sum()) > float(model(images).sum())
