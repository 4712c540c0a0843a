"""The Protector API: exact budget for every prompt type, size and pixel format; determinism."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from unseg.budget import Budget
from unseg.data.images import LoadedImage
from unseg.models import save_model
from unseg.protection import ImagePrompt, Protector, measured_linf
from unseg.protection.budget import saturate_noise



@pytest.fixture(scope="module")
def tiny_path(tiny_generator_path):
    return tiny_generator_path


@pytest.fixture(scope="module")
def protector(tiny_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Protector.load(tiny_path)


def _image(height, width, channels=3, dtype=np.uint8, seed=0):
    high = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, high + 1, (height, width, channels), dtype=dtype)


def _prompts(height, width):
    mask = np.zeros((height, width), bool)
    mask[: max(1, height // 2), : max(1, width // 2)] = True
    box = [0, 0, max(1, width * 0.6), max(1, height * 0.6)]
    point = [[width / 2, height / 2]]
    return {
        "mask": dict(mask=mask),
        "box": dict(box=box),
        "boxes": dict(box=[box, [width * 0.5, height * 0.5, width, height]]),
        "points": dict(points=[point[0], [0, 0]], point_labels=[1, 0]),
        "box+points": dict(box=box, points=point),
        "mask+box": dict(mask=mask, box=box),
        "none": {},
    }


@pytest.mark.parametrize("height,width", [(37, 53), (1, 7), (300, 17), (64, 64)])
def test_bound_holds_for_every_prompt_and_size(protector, height, width):
    image = _image(height, width)
    for kind, prompt in _prompts(height, width).items():
        result = protector.protect(image, **prompt)
        diff = np.abs(result.pixels.astype(int) - image.astype(int)).max(axis=2)
        assert result.pixels.shape == image.shape and result.pixels.dtype == np.uint8
        assert (diff[result.region] <= 8).all() and (diff[~result.region] <= 2).all(), kind
        assert result.noise.shape == (height, width, 3) and np.abs(result.noise).max() <= 1
        assert result.stats["prompt"] == kind.replace("boxes", "box")
        inside, outside = measured_linf(image, result.pixels, result.region)
        assert (inside, outside) == (result.stats["linf_inside"], result.stats["linf_outside"])


def test_region_follows_the_prompt_and_inside_exceeds_background(protector):
    image = _image(48, 80)
    mask = np.zeros((48, 80), bool)
    mask[10:30, 20:50] = True
    by_mask = protector.protect(image, mask=mask)
    assert np.array_equal(by_mask.region, mask)
    assert by_mask.stats["linf_inside"] > 2 and by_mask.stats["linf_outside"] <= 2
    by_box = protector.protect(image, box=[20.5, 10, 50, 30])
    expected = np.zeros_like(mask)
    expected[10:30, 20:50] = True
    assert np.array_equal(by_box.region, expected)
    by_point = protector.protect(image, points=[[40, 20]])
    assert by_point.region[20, 40]  # the disc around a positive point is always protected
    nothing = protector.protect(image)
    assert not nothing.region.any() and nothing.stats["num_objects"] == 0
    assert np.abs(nothing.pixels.astype(int) - image).max() <= 2


def test_pixel_formats_are_kept(protector):
    gray16 = _image(33, 21, channels=1, dtype=np.uint16)
    result = protector.protect(gray16, box=[2, 2, 15, 20])
    assert result.pixels.dtype == np.uint16 and result.pixels.shape == gray16.shape
    diff = np.abs(result.pixels.astype(int) - gray16.astype(int))[..., 0]
    assert diff.max() > 8  # 16-bit levels: 8/255 of 65535 = 2056
    assert (diff[result.region] <= 2056).all() and (diff[~result.region] <= 514).all()
    gray2d = _image(20, 30, channels=1)[..., 0]
    assert protector.protect(gray2d).pixels.shape == (20, 30)
    rgba = np.dstack([_image(25, 26), np.full((25, 26), 7, np.uint8)])
    result = protector.protect(rgba, box=[0, 0, 10, 10])
    assert (result.alpha == 7).all() and result.pixels.shape == (25, 26, 3)
    pil = protector.protect(Image.fromarray(rgba), box=[0, 0, 10, 10])
    assert np.array_equal(pil.pixels, result.pixels)


def test_deterministic_and_independent_of_batching(tiny_path, protector):
    images = [_image(40, 50, seed=1), _image(30, 70, seed=2), _image(64, 20, seed=3), _image(33, 45, seed=4),
              _image(50, 50, seed=5)]
    mask = np.zeros((33, 45), bool)
    mask[3:20, 5:30] = True
    prompts = [ImagePrompt(boxes=[[1, 1, 20, 20]]), ImagePrompt(points=[[5, 5]]), ImagePrompt(),
               ImagePrompt(mask=mask, points=[[10, 10], [40, 30]], point_labels=[1, 0]),  # 2 tokens, like the box
               ImagePrompt(boxes=[[0, 0, 30, 30], [20, 20, 50, 50]], points=[[25, 25]])]
    batched = protector.protect_batch([LoadedImage(i) for i in images], prompts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = Protector.load(tiny_path)  # built independently of the batch's protector
    for image, prompt, result in zip(images, prompts, batched, strict=True):
        single = again.protect_batch([LoadedImage(image)], [prompt])[0]
        assert np.array_equal(result.pixels, single.pixels), prompt.kind
        assert np.array_equal(result.noise, single.noise) and result.stats == single.stats, prompt.kind
    rerun = protector.protect_batch([LoadedImage(i) for i in images], prompts)
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(batched, rerun))


def test_preset_is_seeded_and_flagged_untrained():
    with pytest.warns(UserWarning, match="UNTRAINED"):
        first = Protector.load("small", seed=3)
    with pytest.warns(UserWarning, match="UNTRAINED"):
        second = Protector.load("small", seed=3)
    assert not first.trained
    for a, b in zip(first.generator.parameters(), second.generator.parameters()):
        assert torch.equal(a, b)


def test_bad_input_is_rejected(protector):
    image = _image(20, 20)
    with pytest.raises(ValueError, match="does not match image"):
        protector.protect(image, mask=np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="x1 > x0"):
        protector.protect(image, box=[10, 10, 5, 15])
    with pytest.raises(ValueError, match="outside"):
        protector.protect(image, points=[[30, 5]])
    with pytest.raises(TypeError, match="uint8 or uint16"):
        protector.protect(image.astype(np.float32))
    with pytest.raises(TypeError, match="Budget"):
        Protector(protector.generator, name="x", trained=False, budget=(8, 2))
    with pytest.raises(FileNotFoundError, match="neither a preset"):
        Protector.load("no_such_file.safetensors")


@pytest.fixture(scope="module")
def raw_protector(tiny_path):
    """The same generator without noise saturation: per-object noise can be compared directly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Protector.load(tiny_path, saturate=False)


def test_saturation_is_the_raw_noise_projected(protector, raw_protector):
    image = _image(45, 61, seed=7)
    mask = np.zeros((45, 61), bool)
    mask[5:30, 10:50] = True
    raw = raw_protector.protect(image, mask=mask)
    saturated = protector.protect(image, mask=mask)
    assert protector.saturate and not raw_protector.saturate
    assert np.array_equal(saturated.noise, saturate_noise(raw.noise, raw.region))
    assert set(np.unique(saturated.noise)) <= {-1.0, 0.0, 1.0} and len(np.unique(raw.noise)) > 100
    change = np.abs(saturated.pixels.astype(int) - image.astype(int))
    assert saturated.stats["linf_inside"] == 8 and saturated.stats["linf_outside"] == 2
    assert (change[mask] == 8).mean() > 0.9  # the whole budget is spent (except where 0/255 clips)


def test_objects_get_their_own_noise(raw_protector):
    protector = raw_protector
    image = _image(45, 61, seed=4)
    first, second = np.zeros((45, 61), bool), np.zeros((45, 61), bool)
    first[2:20, 3:30], second[25:44, 35:60] = True, True
    composed = protector.protect(image, objects=[first, second])
    union = protector.protect(image, mask=first | second)
    alone = protector.protect(image, mask=first)
    assert composed.stats["num_objects"] == 2 and np.array_equal(composed.region, first | second)
    outside = ~(first | second)
    assert np.array_equal(composed.noise[outside], union.noise[outside])
    assert np.allclose(composed.noise[first], alone.noise[first], atol=1e-5)
    assert not np.allclose(composed.noise[second], union.noise[second], atol=1e-5)
    levels = np.abs(composed.pixels.astype(int) - image.astype(int)).max(axis=2)
    assert levels[first | second].max() <= 8 and levels[outside].max() <= 2
    neighbour = LoadedImage(_image(30, 30, seed=5))
    batched = protector.protect_batch([neighbour, LoadedImage(image)],
                                      [ImagePrompt(boxes=[[1, 1, 9, 9]]), ImagePrompt(objects=[first, second])])
    assert np.array_equal(batched[1].pixels, composed.pixels)
    with pytest.raises(ValueError, match="match image 20x20"):
        protector.protect(_image(20, 20), objects=[first])


def test_shipped_default_generator_is_trained_and_bounded():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UNTRAINED warning
        shipped = Protector.load("default")
    assert shipped.trained and shipped.metadata["epsilon_train"] <= shipped.metadata["recommended_epsilon"]
    image = _image(67, 91, seed=6)
    result = shipped.protect(image, box=[10, 5, 60, 50])
    levels = np.abs(result.pixels.astype(int) - image.astype(int)).max(axis=2)
    assert levels[result.region].max() <= 8 and levels[~result.region].max() <= 2
    assert result.region[5:50, 10:60].all() and result.region.sum() == 45 * 50


def test_shipped_default_generator_keys_adjacent_classes_apart():
    """The shipped generator is keyed: two touching class regions get different textures, the same
    class id the same texture in another image, every object pixel the full ε."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shipped = Protector.load("default")
    assert shipped.generator.config.num_codes > 0
    left = np.zeros((96, 128), bool)
    left[:, :64] = True
    right = ~left
    image = (_image(96, 128, seed=3) // 2 + 64).astype(np.uint8)  # mid-range: no clipping at 0 / 255
    result = shipped.protect_batch([LoadedImage(image)], [ImagePrompt(objects=[left, right], keys=[1, 3])])[0]
    change = result.pixels.astype(int) - image.astype(int)
    assert (np.abs(change) == 8).all()
    other = (_image(96, 128, seed=4) // 2 + 64).astype(np.uint8)
    again = shipped.protect_batch([LoadedImage(other)], [ImagePrompt(objects=[left, right], keys=[3, 1])])[0]
    signs, swapped = np.sign(change), np.sign(again.pixels.astype(int) - other.astype(int))
    assert (signs[:, :64] != signs[:, 64:]).mean() > 0.3  # keys 1 and 3: different textures side by side
    # the codes are image-independent tilings: key 3 on the left of `other` repeats key 3 on the right of `image`
    assert (swapped[:, :64] == signs[:, 64:]).mean() > 0.9 and (swapped[:, 64:] == signs[:, :64]).mean() > 0.9


def test_a_checkpoints_stored_protection_budget_is_the_default(tmp_path, protector):
    """``unseg train`` stores ``epsilon.protect`` in generator.safetensors; Protector.load uses it
    unless a budget is given (and a file that stores none gets the default 8 / 2)."""
    path = save_model(tmp_path / "stored.safetensors", protector.generator,
                      {"trained": False, "recommended_epsilon": 4 / 255, "recommended_epsilon_bg": 1 / 255})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stored = Protector.load(path)
        given = Protector.load(path, budget=Budget(6, 2))
    assert stored.budget == Budget(4, 1) and given.budget == Budget(6, 2) and protector.budget == Budget(8, 2)
    image = _image(40, 50, seed=9)
    result = stored.protect(image, box=[5, 5, 30, 30])
    change = np.abs(result.pixels.astype(int) - image.astype(int)).max(axis=2)
    assert change[result.region].max() == 4 and change[~result.region].max() == 1
    assert (result.stats["epsilon_levels"], result.stats["epsilon_bg_levels"]) == (4, 1)
    assert stored.with_budget(Budget(2, 0)).generator is stored.generator
