"""Baseline noises: exact ε bound on odd-sized images, determinism, class-wise patterns, EM's min-min."""

import json
from functools import cache

import numpy as np
import pytest
import torch

from evaluation_helpers import NUM_CLASSES, VOID, toy_pair, write_toy_folder
from unseg.baselines import BASELINES, NoiseSample, build_baseline
from unseg.baselines.error_minimizing import ErrorMinimizingNoise, MinMinSchedule
from unseg.budget import Budget
from unseg.data.images import read_image
from unseg.data.segmentation import SegmentationFolder
from unseg.evaluation.methods import MethodOptions, protect_split
from unseg.protection.budget import apply_budget
from unseg.protection.quality import psnr

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_EM = MinMinSchedule(work_size=(32, 32), rounds=1, train_steps=1, pgd_steps=2, batch_size=4)
BUDGET = Budget(6, 1)  # not the default, so a maker ignoring its budget would show


def _sample(height: int, width: int, seed: int) -> NoiseSample:
    pixels, mask = toy_pair(height, width, seed)
    pixels[0, :] = 255  # saturated rows: the budget must still hold after clipping to [0, 255]
    pixels[1, :] = 0
    region = (mask == 1) | (mask == 2)
    return NoiseSample(pixels=pixels, mask=mask.astype(np.int64), region=region, seed=seed)


@cache
def _maker(name: str, seed: int = 0):
    """The baseline ``name`` at the test budget (cached: makers hold no per-call state; AR setup takes ~1 s)."""
    return build_baseline(name, NUM_CLASSES, seed=seed, budget=BUDGET, em_schedule=TINY_EM)


def test_registry_has_every_baseline_the_protocol_names():
    assert {"random", "sign", "synper", "ar", "cuda", "em"} <= set(BASELINES)
    with pytest.raises(KeyError, match="unknown baseline"):
        build_baseline("nope", NUM_CLASSES)


@pytest.mark.parametrize("name", sorted(set(BASELINES) - {"em"}))  # em: through protect_split below (slow)
def test_noise_is_unit_bounded_and_budget_is_exact_on_odd_sizes(name):
    samples = [_sample(37, 53, 1), _sample(29, 41, 2)]
    noises = _maker(name)(samples)
    assert len(noises) == len(samples)
    for sample, noise in zip(samples, noises):
        assert noise.shape == (*sample.pixels.shape[:2], 3)
        assert np.isfinite(noise).all() and np.abs(noise).max() <= 1.0
        protected = apply_budget(sample.pixels, noise, sample.region, BUDGET)
        change = np.abs(protected.astype(int) - sample.pixels.astype(int)).max(axis=2)
        assert BUDGET.levels() == (6, 1)
        assert change[sample.region].max() <= 6 and change[~sample.region].max() <= 1
        assert change[sample.region].max() > 0, "the noise must change the image"


PER_IMAGE_SEED = {"random", "sign"}  # seeded by the image (NoiseSample.seed); the others by the maker's seed


@pytest.mark.parametrize("name", ["random", "sign", "synper", "ar", "cuda"])
def test_noise_is_deterministic_for_a_seed(name):
    def noise(maker_seed: int, image_seed: int) -> np.ndarray:  # a fresh maker and sample every call
        maker = build_baseline(name, NUM_CLASSES, seed=maker_seed, budget=BUDGET)
        sample = _sample(37, 53, 1)
        sample.seed = image_seed  # same pixels and mask, only the seed varies
        return maker([sample])[0]

    first = noise(3, 1)
    np.testing.assert_array_equal(first, noise(3, 1))
    other = noise(3, 2) if name in PER_IMAGE_SEED else noise(4, 1)
    assert not np.array_equal(first, other), "another seed must give other noise"


def test_random_noise_is_seeded_per_image():
    a, b = _sample(37, 53, 1), _sample(37, 53, 2)
    b.pixels, b.mask = a.pixels, a.mask  # same content, different per-image seed
    noise_a, noise_b = _maker("random")([a, b])
    assert not np.array_equal(noise_a, noise_b)
    assert set(np.unique(_maker("sign")([a])[0])) == {-1.0, 1.0}  # sign noise spends the full budget


def _half_masks(height: int, width: int) -> dict[str, np.ndarray]:
    left = np.zeros((height, width), np.int64)
    right = np.ones((height, width), np.int64)
    mixed = left.copy()
    mixed[:, width // 2 :] = 1
    return {"zeros": left, "ones": right, "mixed": mixed}


@pytest.mark.parametrize("name", ["synper", "ar", "cuda"])
def test_classwise_noise_uses_one_pattern_per_class(name):
    """The noise at a pixel depends only on that pixel's class (and, for CUDA, the image)."""
    pixels = _sample(37, 53, 1).pixels
    masks = _half_masks(37, 53)
    maker = _maker(name)
    noise = {key: maker([NoiseSample(pixels, mask, np.ones_like(mask, bool), 0)])[0] for key, mask in masks.items()}
    half = 53 // 2
    np.testing.assert_array_equal(noise["mixed"][:, :half], noise["zeros"][:, :half])
    np.testing.assert_array_equal(noise["mixed"][:, half:], noise["ones"][:, half:])
    assert not np.array_equal(noise["zeros"], noise["ones"])
    void = np.full((37, 53), VOID, np.int64)
    noise_void = maker([NoiseSample(pixels, void, np.zeros((37, 53), bool), 0)])[0]
    assert not np.array_equal(noise_void, noise["zeros"]) and not np.array_equal(noise_void, noise["ones"])


@pytest.mark.parametrize("name, period", [("synper", 8), ("ar", 32)])
def test_image_independent_patterns_are_tiled(name, period):
    """SynPer/AR noise ignores the image content and repeats with the pattern side."""
    mask = np.zeros((70, 75), np.int64)
    maker = _maker(name)
    first = maker([NoiseSample(_sample(70, 75, 1).pixels, mask, mask == 0, 1)])[0]
    other = maker([NoiseSample(_sample(70, 75, 2).pixels, mask, mask == 0, 2)])[0]
    np.testing.assert_array_equal(first, other)
    np.testing.assert_array_equal(first[period : 2 * period, :period], first[:period, :period])
    np.testing.assert_array_equal(first[:period, period : 2 * period], first[:period, :period])


def test_cuda_noise_depends_on_the_image():
    mask = np.zeros((37, 53), np.int64)
    maker = _maker("cuda")
    a = maker([NoiseSample(_sample(37, 53, 1).pixels, mask, mask == 0, 0)])[0]
    b = maker([NoiseSample(_sample(37, 53, 2).pixels, mask, mask == 0, 0)])[0]
    assert not np.array_equal(a, b)


def test_error_minimising_noise_lowers_the_surrogate_loss():
    """One min-min round: PGD on the noise must reduce the (fixed) surrogate's loss on its images."""
    samples = [_sample(37, 53, i) for i in range(4)]
    maker = ErrorMinimizingNoise(NUM_CLASSES, seed=0, budget=Budget(8, 2),
                                 schedule=MinMinSchedule(work_size=(32, 32), pgd_steps=3, batch_size=4))
    torch.manual_seed(0)
    images, labels, budget = maker._stack(samples)
    assert images.shape == (4, 3, 32, 32) and labels.shape == (4, 32, 32)
    assert set(labels.unique().tolist()) <= set(range(NUM_CLASSES + 1))  # void -> extra index, ignored
    import segmentation_models_pytorch as smp

    surrogate = smp.Unet("resnet18", encoder_weights=None, classes=NUM_CLASSES)
    unit = maker._minimise_noise(surrogate, images, labels, budget, torch.zeros_like(images))
    assert unit.abs().max() <= 1.0 and unit.abs().max() > 0
    surrogate.eval()
    with torch.no_grad():
        before = float(maker._loss(surrogate, images, labels))
        after = float(maker._loss(surrogate, (images + unit * budget).clamp(0, 1), labels))
    assert after < before
    assert all(p.requires_grad for p in surrogate.parameters())  # restored for the next training step


def test_protect_split_bounds_every_baseline_and_records_timing(tmp_path):
    """Through the protocol's own path: each baseline's written PNGs obey ε / ε_bg; timing is recorded."""
    folder = SegmentationFolder(write_toy_folder(tmp_path / "data", train=3, test=1))
    stems = folder.stems("train")
    options = MethodOptions(budget=BUDGET, seed=0, em_schedule=TINY_EM)
    for name in sorted(BASELINES):
        target, info = protect_split(name, folder, stems, tmp_path / "cache", options, progress=False)
        assert info["generated"] == 3 and info["images"] == 3
        assert info["seconds"] > 0 and info["seconds_per_image"] == pytest.approx(info["seconds"] / 3)
        assert (info["epsilon_levels"], info["epsilon_bg_levels"]) == (6, 1)
        assert json.loads((target / "protection.json").read_text())["method"] == name
        for stem in stems:
            original = folder.read_image(stem).rgb8().astype(int)
            protected = read_image(target / f"{stem}.png").rgb8().astype(int)
            region = folder.spec.object_region(folder.read_mask(stem))
            change = np.abs(protected - original).max(axis=2)
            assert change[region].max() <= 6 and change[~region].max() <= 1, name
        assert info["max_linf_inside"] <= 6 and info["max_linf_outside"] <= 1
        psnrs = [psnr(folder.read_image(stem).rgb8(), read_image(target / f"{stem}.png").rgb8()) or 99.0
                 for stem in stems]
        assert info["mean_psnr"] == pytest.approx(np.mean(psnrs)), name  # the mean over the written images
    # a rerun reuses the cache: nothing is generated again
    _, again = protect_split("random", folder, stems, tmp_path / "cache", options, progress=False)
    assert again["generated"] == 3


def test_pattern_is_one_checker_with_the_sign_flipped_off_the_object():
    """The hand-made bar: squares of period/2 px, colour (+, -, +), negated off the region, image-independent,
    and the exact budget on the object (every object pixel moves by the full ε)."""
    from unseg.baselines.pattern import CheckerPattern

    sample = _sample(70, 75, 1)
    sample.pixels[:2] = 128  # no clipping on the rows the test reads
    noise = CheckerPattern(period=16)([sample])[0]
    assert set(np.unique(noise)) == {-1.0, 1.0}
    np.testing.assert_array_equal(noise[..., 0], -noise[..., 1])  # colour (+, -, +)
    np.testing.assert_array_equal(noise[..., 0], noise[..., 2])
    sign = np.where(sample.region, 1.0, -1.0)
    unsigned = noise[..., 0] * sign
    np.testing.assert_array_equal(unsigned[:8, :8], 1.0)  # one square of 8 px ...
    np.testing.assert_array_equal(unsigned[:8, 8:16], -1.0)  # ... then the opposite phase
    np.testing.assert_array_equal(unsigned[16:24, :16], unsigned[:8, :16])  # period 16
    other = _sample(70, 75, 2)
    other.region = sample.region
    np.testing.assert_array_equal(CheckerPattern(period=16)([other])[0], noise)  # ignores the pixels
    protected = apply_budget(sample.pixels, noise, sample.region, BUDGET)
    change = np.abs(protected.astype(int) - sample.pixels.astype(int))
    unclipped = (sample.pixels > 10) & (sample.pixels < 245)
    assert (change[sample.region][unclipped[sample.region]] == 6).all()
    assert (change[~sample.region][unclipped[~sample.region]] == 1).all()
    with pytest.raises(ValueError, match="period"):
        CheckerPattern(period=1)
