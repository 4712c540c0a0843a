"""Protect-time refinement (unseg.protection.refine): exact budget, the attack raises the segmenter's
loss, determinism and batch independence, prompts without objects left alone, bad input refused."""

import warnings

import numpy as np
import pytest
import torch

from unseg.budget import Budget
from unseg.data.images import LoadedImage
from unseg.data.transforms import Letterbox, SquareResize
from unseg.models import CheckpointError, InteractiveSegmenter, SurrogateConfig, save_model
from unseg.models.losses import bce_dice_loss
from unseg.protection import ImagePrompt, Protector, measured_linf
from unseg.protection.perturb import Refinement
from unseg.protection.refine import DEFAULT_SURROGATE, RefineSchedule, Refiner, View


@pytest.fixture(scope="module")
def surrogate(tiny_sam):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return InteractiveSegmenter(SurrogateConfig(sam=tiny_sam))


@pytest.fixture(scope="module")
def refiner(surrogate):
    return Refiner(surrogate, RefineSchedule(steps=3))


@pytest.fixture(scope="module")
def protectors(tiny_generator_path, refiner):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = Protector.load(tiny_generator_path)
        return plain, Protector.load(tiny_generator_path, refiner=refiner)


def _scene(height=45, width=70, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    first = np.zeros((height, width), bool)
    first[5:25, 8:30] = True
    second = np.zeros((height, width), bool)
    second[20:40, 35:65] = True
    return image, [first, second]


def test_budget_exact_and_noise_changed(protectors):
    plain, refined = protectors
    image, objects = _scene()
    budget = Budget(8, 2)
    base = plain.protect(image, objects=objects)
    result = refined.protect(image, objects=objects)
    inside, outside = measured_linf(image, result.pixels, result.region)
    assert result.pixels.shape == image.shape and result.pixels.dtype == np.uint8
    assert inside == budget.levels()[0] and outside <= budget.levels()[1]
    assert not np.array_equal(result.pixels, base.pixels)
    # the generator's noise keeps its half: wherever the two noises agree, the refined one is it
    noise, kept = result.noise, base.noise
    assert set(np.unique(noise)) <= {-1.0, -0.5, 0.0, 0.5, 1.0}
    agree = np.abs(noise) == 1
    assert agree.any() and np.array_equal(noise[agree], kept[agree])
    assert refined.describe()["refine"]["steps"] == 3


@pytest.mark.parametrize("coarse", [False, True])
def test_attack_raises_the_segmenters_loss_in_every_view(refiner, coarse):
    image, objects = _scene()
    height, width = image.shape[:2]
    goals = [refiner.targets(ImagePrompt(objects=objects), np.logical_or(*objects), view)
             for view in refiner.views(height, width)]
    assert [len(goal.corners) for goal in goals] == [2, 2]
    work = Letterbox(height, width, 2 * refiner.input_size)  # a work grid larger than the segmenter's input
    cells = Letterbox(height, width, refiner.input_size // 2) if coarse else work  # or a grid coarser than it
    x = work.image_to_input(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    limit = torch.full((1, 1, cells.size, cells.size), 4 / 255)
    delta = refiner._attack(x, work, cells, limit, goals)
    assert delta.shape == (1, 3, cells.size, cells.size) and float(delta.abs().max()) <= 4 / 255 + 1e-7
    rows, cols = work.resized
    if coarse:  # the coarse cells, bilinearly upsampled onto the image's content
        cell_rows, cell_cols = cells.resized
        up = torch.nn.functional.interpolate(delta[..., :cell_rows, :cell_cols], size=(rows, cols), mode="bilinear",
                                             align_corners=False)
        delta = torch.nn.functional.pad(up, (0, work.size - cols, 0, work.size - rows))
    else:
        assert float((x + delta).min()) >= 0 and float((x + delta).max()) <= 1

    def loss(pixels, goal):
        with torch.no_grad():
            embedding, _ = refiner.surrogate.embed_images(goal.view.place(pixels.clamp(0, 1)[..., :rows, :cols]))
            logits = refiner.surrogate.decode_masks(embedding.expand(2, -1, -1, -1), goal.prompts()).masks
            return float(bce_dice_loss(logits, goal.targets, goal.valid.expand(2, -1, -1, -1)))

    for goal in goals:
        assert loss(x + delta, goal) > loss(x, goal)


def test_schedule_picks_the_views_and_the_grid(surrogate, protectors):
    plain, _ = protectors
    square = Refiner(surrogate, RefineSchedule(steps=2, views=("square",), grid=0.25))
    assert [view.sx != view.sy for view in square.views(45, 70)] == [True]  # stretched, not letterboxed
    assert square.describe()["views"] == ["square"] and square.describe()["grid"] == 0.25
    assert RefineSchedule().tag == "10x0.2@0.5:letterbox+square"
    assert RefineSchedule(share=1.0, views=("square",), grid=0.25).tag == "10x0.2@1:square:grid0.25"
    image, objects = _scene()
    native = plain.noise_batch([LoadedImage(image)], [ImagePrompt(objects=objects)])[0]
    refined = square.refine(image, ImagePrompt(objects=objects), native, Budget(8, 2))
    side = round(0.25 * square.input_size)  # the refinement lives on the coarse grid, mapped to native size
    assert refined.refinement.grid.shape == (3, side, side) and refined.refinement.box.size == side
    protected, _ = refined.protect(image, Budget(8, 2))
    inside, outside = measured_linf(image, protected, native.region)
    assert inside == 8 and outside <= 2


def test_views_place_the_image_as_victims_resize_it():
    letterbox, square = View.of(Letterbox(50, 100, 32)), View.of(SquareResize(50, 100, 32))
    assert letterbox.content(32) == (16, 32) and square.content(32) == (32, 32)
    assert letterbox.content(16) == (8, 16)
    image = torch.rand(1, 3, 50, 100)
    placed = letterbox.place(image)
    assert placed.shape == (1, 3, 32, 32) and float(placed[..., 16:, :].abs().max()) == 0  # padding below
    mask = np.zeros((50, 100), bool)
    mask[:, :50] = True  # the left half
    share = square.shrink(mask, 32)
    assert float(share[..., :, :16].min()) == 1 and float(share[..., :, 16:].max()) == 0


def test_deterministic_and_independent_of_batching(protectors):
    _, refined = protectors
    scenes = [_scene(seed=seed) for seed in (0, 1)]
    images = [LoadedImage(image) for image, _ in scenes]
    prompts = [ImagePrompt(objects=objects) for _, objects in scenes]
    together = refined.protect_batch(images, prompts)
    for (image, objects), batched in zip(scenes, together):
        alone = refined.protect(image, objects=objects)
        assert np.array_equal(alone.pixels, batched.pixels)


def test_box_prompt_attacks_the_segmenters_own_prediction(protectors, refiner):
    plain, refined = protectors
    image, _ = _scene()
    boxes = [[8, 5, 30, 25], [35, 20, 65, 40]]
    goal = refiner.targets(ImagePrompt(boxes=boxes), np.ones(image.shape[:2], bool), View.of(SquareResize(45, 70, 64)))
    assert goal.targets is None and goal.corners.shape == (2, 2, 2)
    assert torch.allclose(goal.corners[0], torch.tensor([[8 * 64 / 70, 5 * 64 / 45], [30 * 64 / 70, 25 * 64 / 45]]))
    result = refined.protect(image, box=boxes)
    assert not np.array_equal(result.pixels, plain.protect(image, box=boxes).pixels)
    inside, outside = measured_linf(image, result.pixels, result.region)
    assert inside <= 8 and outside <= 2


def test_nothing_to_attack_leaves_the_noise_alone(protectors):
    plain, refined = protectors
    image, _ = _scene()
    assert np.array_equal(refined.protect(image).pixels, plain.protect(image).pixels)
    tiny = np.zeros(image.shape[:2], bool)
    tiny[1, 1] = True  # one pixel off the cells' corners: under half a cell in every view
    assert np.array_equal(refined.protect(image, mask=tiny).pixels, plain.protect(image, mask=tiny).pixels)


def test_refinement_mix_stays_in_unit_range():
    grid = torch.sign(torch.randn(3, 16, 16))
    refinement = Refinement(grid, Letterbox(20, 30, 16), share=0.25)
    noise = torch.sign(torch.randn(20, 30, 3))
    mixed = refinement.mix(noise, 0, 20)
    assert mixed.shape == noise.shape and float(mixed.abs().max()) <= 1.0
    # 0.75 x ±1 plus 0.25 x (±1, or 0 where the mapped grid is exactly between two signs)
    assert set(torch.unique(mixed).tolist()) <= {-1.0, -0.75, -0.5, 0.5, 0.75, 1.0}
    assert torch.equal(mixed.sign(), noise.sign())  # the larger share decides every sign


def test_full_share_replaces_the_generator_noise():
    grid = torch.sign(torch.randn(3, 16, 16))
    refinement = Refinement(grid, Letterbox(20, 30, 16), share=1.0)
    first, second = torch.sign(torch.randn(20, 30, 3)), torch.sign(torch.randn(20, 30, 3))
    assert torch.equal(refinement.mix(first, 0, 20), refinement.mix(second, 0, 20))  # the generator's part is gone
    assert RefineSchedule(share=1.0).base_budget(Budget(8, 2)) == Budget(0, 0)


@pytest.mark.parametrize("kwargs", [{"steps": 0}, {"share": 0.0}, {"share": 1.5}, {"step_size": 0.0}, {"views": ()},
                                    {"views": ("square", "square")}, {"views": ("stretch",)}, {"grid": 0.0}])
def test_schedule_refuses_bad_values(kwargs):
    with pytest.raises(ValueError):
        RefineSchedule(**kwargs)


def test_load_refuses_missing_and_wrong_files(tmp_path, tiny_generator_path, surrogate):
    with pytest.raises(FileNotFoundError):
        Refiner.load(tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError):
        Refiner.load(tiny_generator_path)  # a generator, not a segmenter
    path = save_model(tmp_path / "segmenter.safetensors", surrogate.half(), {"trained_on": {"dataset": "x"}})
    surrogate.float()
    loaded = Refiner.load(path)
    assert next(loaded.surrogate.parameters()).dtype == torch.float32  # float16 files load as float32
    assert loaded.describe()["trained_on"] == {"dataset": "x"}


def test_shipped_segmenter_loads():
    if not DEFAULT_SURROGATE.is_file():
        pytest.skip("no shipped refinement segmenter")
    refiner = Refiner.load()
    assert refiner.metadata["trained_on"]["dataset"] == "camvid"
    assert refiner.input_size == 128


def test_objects_keyed_zero_stay_untouched(tiny_sam, refiner):
    from unseg.models import GeneratorConfig, build_generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        keyed = build_generator(GeneratorConfig(sam=tiny_sam, num_codes=4))
    protector = Protector(keyed, name="keyed", trained=False, refiner=refiner)
    image, (first, second) = _scene()
    prompt = ImagePrompt(objects=[first, second], keys=[0, 2])
    out = protector.protect_batch([LoadedImage(image)], [prompt])[0]
    assert np.array_equal(out.pixels[first & ~second], image[first & ~second])  # key 0: no noise at all
    assert (out.pixels[second] != image[second]).any()


def test_an_object_seen_in_one_view_only_is_attacked_there(protectors, refiner):
    plain, refined = protectors
    image = np.random.default_rng(3).integers(0, 256, (20, 200, 3), dtype=np.uint8)
    sliver = np.zeros((20, 200), bool)
    sliver[8:10, 50:70] = True  # 2 of 20 rows: whole cells of the square view, under half a cell in the letterbox
    seen = [refiner.targets(ImagePrompt(mask=sliver), sliver, view) is not None for view in refiner.views(20, 200)]
    assert seen == [False, True]
    result = refined.protect(image, mask=sliver)
    assert not np.array_equal(result.pixels, plain.protect(image, mask=sliver).pixels)
    inside, outside = measured_linf(image, result.pixels, result.region)
    assert inside <= 8 and outside <= 2
