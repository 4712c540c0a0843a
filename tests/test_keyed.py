"""Keyed noise: codes per object key, distinct between neighbours, identical for the same key, exact budget."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from unseg.data.images import LoadedImage
from unseg.data.prompts import ImagePrompt
from unseg.models import GeneratorConfig, PromptBatch, build_generator
from unseg.models.config import code_index
from unseg.models.generator import CODE_COLOURS, CODE_SCALE, UNCODED, initial_codes
from unseg.protection.protector import Protector
from unseg.training.bilevel import saturated
from unseg.training.keyed import code_labels, scene_objects

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def keyed(tiny_sam) -> GeneratorConfig:
    """The tiny SAM with 6 noise codes (null + 5), 16 cells of a 2 x 2 tile: a 32 px noise map."""
    return GeneratorConfig(sam=tiny_sam, noise_upscale=-1, num_codes=6, code_cells=16, code_tile=2)


def _protector(config: GeneratorConfig, seed: int = 0) -> Protector:
    torch.manual_seed(seed)
    return Protector(build_generator(config), name="tiny-keyed", trained=False)


def _image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(30, 225, (height, width, 3), dtype=np.uint8)


def _halves(height: int = 48, width: int = 64) -> tuple[np.ndarray, np.ndarray]:
    left = np.zeros((height, width), bool)
    left[:, : width // 2] = True
    return left, ~left


def test_initial_codes_differ_even_up_to_translation_and_code_zero_is_null():
    """The probed family: code k = texture k mod 5 in colour k // 5; no code is a shift of another."""
    codes = initial_codes(16, 4)
    assert codes.shape == (16, 3, 4, 4)
    assert torch.count_nonzero(codes[0]) == 0
    assert set(codes[1:].unique().tolist()) == {-1.0, 1.0}
    checker = torch.tensor([[1.0, 1, -1, -1], [1, 1, -1, -1], [-1, -1, 1, 1], [-1, -1, 1, 1]])
    rows = torch.tensor([[1.0], [1], [-1], [-1]]).expand(4, 4)
    torch.testing.assert_close(codes[1], rows.expand(3, 4, 4))  # horizontal stripes in (+, +, +)
    torch.testing.assert_close(codes[5], checker * torch.tensor([1.0, -1, 1]).view(3, 1, 1))  # checker, (+, -, +)
    torch.testing.assert_close(codes[10], checker * torch.tensor([1.0, 1, -1]).view(3, 1, 1))  # checker, (+, +, -)
    for i in range(1, 16):
        for j in range(1, 16):
            if i != j:
                shifts = [torch.roll(codes[i], (dy, dx), dims=(1, 2)) for dy in range(4) for dx in range(4)]
                assert not any(torch.equal(shifted, codes[j]) for shifted in shifts), (i, j)
    assert len(initial_codes(12, 2)) == 12  # 3 textures x 4 colours fit a 2-cell tile (no diagonals)
    with pytest.raises(ValueError, match="at most 12 codes"):
        initial_codes(16, 2)


def test_flat_codes_keep_the_binary_texture_and_give_neighbouring_keys_different_colours():
    """``"flat"`` (v9): code 1 (binary masks, boxes, points) is v8's code 1; code k >= 2 is the flat
    colour ±CODE_COLOURS[(k // 2) mod 4] (+ for odd k): neighbouring keys differ, 8 colours."""
    codes, textures = initial_codes(16, 4, "flat"), initial_codes(16, 4)
    assert codes.shape == (16, 3, 4, 4) and torch.count_nonzero(codes[0]) == 0
    torch.testing.assert_close(codes[1], textures[1])
    colours = [tuple(codes[k, :, 0, 0].tolist()) for k in range(2, 16)]
    for k, colour in zip(range(2, 16), colours):
        assert (codes[k] == codes[k, :, :1, :1]).all()  # flat
        assert colour == tuple((1.0 if k % 2 else -1.0) * c for c in CODE_COLOURS[(k // 2) % 4])
    assert all(a != b for a, b in zip(colours, colours[1:]))  # neighbouring keys
    assert len(set(colours)) == 8 and colours[0] == colours[8]  # keys 2 and 10 share a colour
    with pytest.raises(ValueError, match="code_family"):
        GeneratorConfig(num_codes=4, code_family="plaid")


@pytest.mark.parametrize("tile", [2, 4])
def test_checker_codes_are_flat_codes_with_a_checkerboard_binary_key(tile):
    """``"checker"`` (v10): the flat family, but code 1 is a checkerboard in colour 1 (magenta):
    squares of half a tile, each the sign-flip of its four neighbours in all three channels."""
    codes, flat = initial_codes(12, tile, "checker"), initial_codes(12, tile, "flat")
    torch.testing.assert_close(codes[2:], flat[2:])
    assert torch.count_nonzero(codes[0]) == 0
    one, half = codes[1], tile // 2
    assert set(one.abs().flatten().tolist()) == {1.0}
    for axis in (1, 2):  # squares of half a tile
        torch.testing.assert_close(torch.roll(one, half, dims=axis), -one)
    assert one[0, 0, 0] == -one[1, 0, 0] == one[2, 0, 0]  # magenta / green
    assert GeneratorConfig(num_codes=4, code_family="checker").flat_codes


def test_luma_checker_codes_differ_from_checker_codes_only_in_the_binary_key_colour():
    """``"luma_checker"``: the v10 checkerboard in yellow/blue (+, +, −), whose ITU-R 601 luma keeps
    0.772 of the amplitude where magenta/green keeps 0.174 (a gray-converting victim's view)."""
    luma_weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    luma, checker = initial_codes(12, 4, "luma_checker"), initial_codes(12, 4, "checker")
    torch.testing.assert_close(luma[2:], checker[2:])
    torch.testing.assert_close(luma[1], checker[1][0:1] * torch.tensor([1.0, 1, -1]).view(3, 1, 1))
    assert (luma[1] * luma_weights).sum(0).abs().unique().tolist() == pytest.approx([0.772])
    assert (checker[1] * luma_weights).sum(0).abs().unique().tolist() == pytest.approx([0.174])


def test_checker_family_protects_a_binary_mask_with_a_magenta_green_checker(keyed):
    """A binary mask (key 1) under ``"checker"`` codes: every object pixel moves by exactly
    ±(ε, −ε, ε) — magenta or green — and both occur; off the object at most ε_bg."""
    left, _ = _halves()
    image = _image()
    protected = _protector(replace(keyed, code_family="checker")).protect_batch([LoadedImage(image)], [ImagePrompt(mask=left)])[0]
    change = protected.pixels.astype(int) - image.astype(int)
    inside = {tuple(v) for v in change[left].tolist()}
    assert inside == {(8, -8, 8), (-8, 8, -8)}
    assert np.abs(change[~left]).max() <= 2


@pytest.mark.parametrize("bits", [8, 16])
def test_a_gray_image_keeps_the_whole_budget_in_the_checker_pattern(keyed, bits):
    """A one-channel image under ``"checker"`` codes: the magenta/green checker's channel mean
    (±1/3) is taken to its sign (``perturb.to_gray``), so every object pixel moves by exactly ±ε
    in the checker's pattern (not ±ε/3) and the output stays one-channel at its bit depth."""
    left, _ = _halves()
    scale = 257 if bits == 16 else 1
    gray = (_image()[..., 0].astype(np.uint16) * scale).astype(np.uint8 if bits == 8 else np.uint16)
    protector = _protector(replace(keyed, code_family="checker"))
    protected = protector.protect(gray, mask=left)
    assert protected.pixels.shape == gray.shape and protected.pixels.dtype == gray.dtype
    change = protected.pixels.astype(int) - gray.astype(int)
    levels = protector.budget.levels(scale * 255)
    assert set(np.unique(change[left]).tolist()) == {-levels[0], levels[0]}
    assert np.abs(change[~left]).max() <= levels[1]
    noise = protector.noise_batch([LoadedImage(gray[..., None])], [ImagePrompt(mask=left)])[0].full()
    assert np.array_equal(np.sign(change[left]), noise[left][:, 0])  # (+, -, +) -> +, (-, +, -) -> -


def test_a_gray_image_saved_as_rgb_stays_gray_with_the_whole_budget(keyed):
    """Three equal channels (a gray scan saved as RGB) get the gray image's noise on every channel:
    the output is still gray, each object pixel moves by ±ε, as the one-channel copy does; an image
    with colour keeps its colour noise."""
    left, _ = _halves()
    gray = _image()[..., 0]
    protector = _protector(replace(keyed, code_family="checker"))
    as_rgb = protector.protect(np.repeat(gray[..., None], 3, axis=2), mask=left).pixels
    assert (as_rgb == as_rgb[..., :1]).all()
    assert np.array_equal(as_rgb[..., 0], protector.protect(gray, mask=left).pixels)
    colour = _image()
    colour_change = protector.protect(colour, mask=left).pixels.astype(int) - colour
    assert {tuple(v) for v in colour_change[left].tolist()} == {(8, -8, 8), (-8, 8, -8)}


def test_flat_codes_survive_saturation_exactly(keyed):
    """With ``"flat"`` codes saturation keeps each object's colour (every pixel of a key moves by
    the same ±ε per channel), key 1 keeps a texture, the background stays within ε_bg; with the v8
    textures no object is flat."""
    left, right = _halves()
    right[:, -8:] = False  # a background strip
    image = _image()
    prompt = ImagePrompt(objects=[left, right], keys=[2, 3])
    flat = _protector(replace(keyed, code_family="flat")).protect_batch([LoadedImage(image)], [prompt])[0]
    change = flat.pixels.astype(int) - image.astype(int)
    for mask, key in ((left, 2), (right, 3)):
        expected = 8 * (1 if key % 2 else -1) * np.array(CODE_COLOURS[(key // 2) % 4])
        assert (change[mask] == expected).all()
    assert np.abs(change[~(left | right)]).max() <= 2
    one = _protector(replace(keyed, code_family="flat")).protect_batch([LoadedImage(image)], [ImagePrompt(mask=left)])[0]
    assert len(np.unique((one.pixels.astype(int) - image.astype(int))[left][:, 0])) == 2  # key 1: a texture
    texture = _protector(keyed).protect_batch([LoadedImage(image)], [prompt])[0]
    change = texture.pixels.astype(int) - image.astype(int)
    assert all(len(np.unique(change[left][:, c])) == 2 for c in range(3))


def test_code_index_keeps_zero_null_and_wraps_other_keys():
    assert code_index(0, 16) == 0
    assert [code_index(k, 16) for k in (1, 15, 16, 31)] == [1, 15, 1, 1]
    with pytest.raises(ValueError, match=">= 0"):
        code_index(-1, 16)
    with pytest.raises(ValueError, match="num_codes"):
        GeneratorConfig(num_codes=1)


def test_generator_codes_set_the_noise_sign_and_the_null_code_is_zero(keyed, tiny_sam):
    torch.manual_seed(0)
    generator = build_generator(keyed).eval()
    assert generator.config.noise_size == 32
    images = torch.rand(1, 3, 64, 64).expand(4, -1, -1, -1)
    prompts = PromptBatch(coords=torch.zeros(4, 0, 2), labels=torch.zeros(4, 0, dtype=torch.long))
    with torch.no_grad():
        noise = generator(images, prompts, torch.tensor([1, 2, 0, UNCODED])).noise
    assert noise.shape == (4, 3, 32, 32) and noise.abs().max() <= 1
    assert not torch.equal(noise[0].sign(), noise[1].sign())  # another key, another texture
    assert torch.count_nonzero(noise[2]) == 0  # the null code
    assert torch.count_nonzero(noise[3]) > 0  # uncoded: the head's own noise
    expected = generator.code_maps(torch.tensor([1])).sign()[0]  # the code dominates the sign at init
    assert (noise[0].sign() == expected).float().mean() > 0.95
    with pytest.raises(ValueError, match="no noise codes"):
        build_generator(GeneratorConfig(sam=tiny_sam)).decode(generator.encode(images[:1]), prompts.__class__(
            coords=torch.zeros(1, 0, 2), labels=torch.zeros(1, 0, dtype=torch.long)), torch.tensor([1]))


def test_adjacent_objects_of_different_keys_get_different_noise_and_the_budget_is_exact(keyed):
    protector = _protector(keyed)
    left, right = _halves()
    image = _image()
    result = protector.protect_batch([LoadedImage(image)], [ImagePrompt(objects=[left, right], keys=[3, 4])])[0]
    noise = result.noise
    assert set(np.unique(noise)) <= {-1.0, 0.0, 1.0}
    change = result.pixels.astype(int) - image.astype(int)
    assert (np.abs(change[left | right]) == 8).all()  # saturated: the full ε on every object pixel and channel
    # the two halves carry different codes: compare each half's sign pattern with the other's, in place
    a, b = noise[:, :32], noise[:, 32:]
    assert (a != b).mean() > 0.3
    assert result.stats["keys"] == [3, 4] and result.stats["keyed"]


def test_the_same_key_gives_the_same_texture_across_objects_and_reruns(keyed):
    protector = _protector(keyed)
    left, right = _halves()
    image = _image()
    first = protector.protect_batch([LoadedImage(image)], [ImagePrompt(objects=[left, right], keys=[5, 5])])[0]
    again = _protector(keyed).protect_batch([LoadedImage(image)], [ImagePrompt(objects=[left, right], keys=[5, 5])])[0]
    np.testing.assert_array_equal(first.pixels, again.pixels)
    code = first.noise
    # one key, one tiled code: the texture repeats with the code's period (2 cells of 64/16 px = 8 px)
    inside = code[4:44, 4:28]
    assert (inside[:, :16] == inside[:, 8:24]).mean() > 0.9
    assert (code[:, :32] == code[:, 32:]).mean() > 0.9  # both halves read the same code


def test_null_key_objects_are_untouched_and_the_background_keeps_eps_bg(keyed):
    protector = _protector(keyed)
    left, right = _halves()
    top = left.copy()
    top[24:] = False  # objects cover the top-left quarter (null key) and the right half (key 2)
    image = _image()
    result = protector.protect_batch([LoadedImage(image)], [ImagePrompt(objects=[top, right], keys=[0, 2])])[0]
    change = np.abs(result.pixels.astype(int) - image.astype(int))
    assert change[top].max() == 0
    assert (change[right] == 8).all()
    background = ~(top | right)
    assert 0 < change[background].max() <= 2


def test_training_saturation_of_objects_is_sign_forward_identity_backward():
    """Keyed training saturates each object's noise with the protection path's straight-through
    saturation (:func:`unseg.training.bilevel.saturated`): its own mask's channel means removed,
    the sign forward, the identity backward; a null-code object (zero noise) stays zero."""
    noise = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]] * 3]).float().requires_grad_(True)
    masks = torch.ones(1, 1, 2, 2)
    out = saturated(noise, masks, straight_through=True)
    assert out[0, 0].tolist() == [[-1.0, -1.0], [1.0, 1.0]]
    weights = torch.arange(12.0).view(1, 3, 2, 2)
    (out * weights).sum().backward()  # backward: the gradient of (noise - its mean), i.e. w - mean(w)
    torch.testing.assert_close(noise.grad, weights - weights.mean((2, 3), keepdim=True))
    zero = saturated(torch.zeros(1, 3, 2, 2), masks, straight_through=True)
    assert torch.count_nonzero(zero) == 0


def test_training_saturation_keeps_flat_codes_on_the_objects():
    """With flat codes (``flat_region``) training keeps the object's channel means, as protection
    does: a flat positive object stays +1 instead of vanishing; off the mask the means still go."""
    noise = torch.full((1, 3, 2, 2), 0.7)
    noise[..., 1, :] = torch.tensor([0.1, 0.3])  # the second row is off the object
    masks = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    out = saturated(noise, masks, flat_region=True)
    assert out[0, :, 0].eq(1).all()  # flat code kept
    assert out[0, :, 1].tolist() == [[-1.0, 1.0]] * 3  # off the object: centred, then the sign
    assert torch.count_nonzero(saturated(noise, masks)[0, :, 0]) == 0  # without: the flat code vanishes


def test_scene_objects_and_code_labels():
    labels = torch.tensor([[[0, 0, 3], [-1, 3, 3]], [[-1, -1, -1], [2, 2, -1]]])
    rows, keys, masks = scene_objects(labels)
    assert rows.tolist() == [0, 0, 1] and keys.tolist() == [0, 3, 2]
    assert masks.shape == (3, 1, 2, 3) and masks[1, 0].tolist() == [[0, 0, 1], [0, 1, 1]]
    assert code_labels(labels, 3)[0].tolist() == [[0, 0, 1], [-1, 1, 1]]  # 3 -> 1 + (3 - 1) % 2


def _keyed_run_config(tmp_path, **sections):
    """The tiny training setup of ``training_helpers`` with a keyed generator (4 codes) and the
    multi-class code reader."""
    import json

    from training_helpers import TINY_SAM as TRAINING_SAM
    from training_helpers import tiny_config

    generator = tmp_path / "keyed_generator.json"
    generator.parent.mkdir(parents=True, exist_ok=True)
    generator.write_text(json.dumps({"sam": TRAINING_SAM, "noise_dim": 8, "noise_upscale": 1, "num_codes": 4,
                                     "code_cells": 8, "code_tile": 2}))
    model = {"generator": str(generator), "semantic_surrogate": "unet@resnet18", "semantic_size": 32}
    return tiny_config(tmp_path, model=model, **sections)


def test_keyed_training_runs_on_scenes_logs_in_bulk_and_trains_the_codes(tmp_path):
    """``unseg train`` with a keyed generator: whole scenes, step losses read every
    ``output.log_every`` steps, code accuracies at eval rounds, the codes move at their own rate, the
    code reader restarts every ``schedule.surrogate_reset_every`` rounds; and what it refuses."""
    from unseg.models import load_model
    from unseg.training import runner
    from unseg.training.config import ConfigError
    from unseg.training.keyed import KeyedTrainer
    from unseg.training.metrics_log import read_metrics

    config = _keyed_run_config(tmp_path, schedule={"rounds": 3, "eval_every": 3, "checkpoint_every": 3,
                                                   "surrogate_reset_every": 2},
                               output={"log_every": 4})
    resets = []
    original = KeyedTrainer.reset_semantic
    KeyedTrainer.reset_semantic = lambda self, round_index: resets.append(round_index) or original(self, round_index)
    try:
        result = runner.run_training(config)
    finally:
        KeyedTrainer.reset_semantic = original
    assert resets == [2]
    rows = read_metrics(result.out_dir / "metrics.csv")
    steps = [r for r in rows if r["phase"] != "eval"]
    assert [r["phase"] for r in steps] == ["surrogate", "generator"] * 3
    assert all(float(r["semantic_loss"]) > 0 for r in steps if r["phase"] == "surrogate")
    assert all(float(r["generator_semantic_loss"]) > 0 for r in steps if r["phase"] == "generator")
    (evaluation,) = [r for r in rows if r["phase"] == "eval"]
    assert all(0 <= float(evaluation[f"code_accuracy_{k}"]) <= 1 for k in ("protected", "clean"))
    generator, _ = load_model(result.out_dir / "generator.safetensors", kind="generator")
    assert generator.config.keyed and generator.noise_codes.shape == (4, 3, 2, 2)
    assert not torch.equal(generator.noise_codes.detach(), CODE_SCALE * initial_codes(4, 2))  # trained (code_lr)
    with pytest.raises(ConfigError, match="check-steps"):
        runner.run_training(_keyed_run_config(tmp_path / "check", output={"check_steps": 2}))
