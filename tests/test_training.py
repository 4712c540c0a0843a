"""``unseg train``: losses fall on tiny data, exact resume, clear config errors, the written outputs.

Everything runs on a generated folder of eight 48x64 images with the tiny 32 px networks of
``training_helpers`` (a run of a few rounds takes about a second on CPU).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from training_helpers import tiny_config
from unseg.budget import Budget
from unseg.cli.main import app
from unseg.models import NoiseGenerator, build_surrogate, load_model, save_model
from unseg.protection.protector import Protector
from unseg.training import runner
from unseg.training.batches import collate
from unseg.protection.budget import saturate_noise
from unseg.training.bilevel import BilevelTrainer, perturb, rescale_through, resize_images, saturated
from unseg.models.prompts import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, PADDING
from unseg.training.prompts import prompt_batch, surrogate_prompts
from unseg.training.checkpointing import load_training_state, read_training_metadata
from unseg.resume import restore_rng
from unseg.data.interactive import Augmentation
from unseg.training.config import (
    ConfigError,
    PromptSampling,
    TrainConfig,
    apply_overrides,
    default_config_path,
    load_config,
    valid_keys,
)
from unseg.training.metrics_log import COLUMNS, read_metrics

RUNNER = CliRunner()
REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trainer_and_batch(tmp_path, **sections):
    """A fresh trainer of the tiny networks and one fixed batch of 9 un-augmented objects."""
    config = tiny_config(tmp_path, **sections)
    dataset = runner.build_dataset(config, 32, "train", augment=False)
    batch = collate([dataset[i] for i in range(0, len(dataset), 2)])
    runner.seed_everything(0)
    generator, surrogate, semantic = runner.build_networks(config, CPU)
    return BilevelTrainer(generator, surrogate, config, CPU, semantic=semantic), batch


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- the two phases lower their losses ---------------------------------------------------------
FAST = {"optimiser": {"generator_lr": 3e-3, "surrogate_lr": 3e-3}, "epsilon": {"train": 16 / 255, "train_bg": 4 / 255},
        # the tiny 32 px surrogate input has no detail to spare; a barely trained surrogate
        # without prompts answers almost the same for any input, so the generator gets no gradient
        "data": {"surrogate_rescale_min": 1.0}, "prompts": {"surrogate_unprompted": 0.0}}


def test_surrogate_steps_lower_the_surrogate_loss_and_leave_the_generator_alone(tmp_path):
    trainer, batch = _trainer_and_batch(tmp_path, **FAST)
    generator_before = _weights(trainer.generator_module)
    surrogate_before = _weights(trainer.surrogate_module)
    # same step index = same prompts, so the returned (pre-update) losses track one fixed objective
    losses = [float(trainer.surrogate_step(batch, step=0)["surrogate_loss"]) for _ in range(12)]
    assert losses[-1] < losses[0] - 0.05, losses
    assert sum(b > a for a, b in zip(losses, losses[1:])) <= 2, losses
    assert _same(_weights(trainer.generator_module), generator_before)
    assert not _same(_weights(trainer.surrogate_module), surrogate_before)


def test_generator_steps_lower_the_generator_loss_against_a_frozen_surrogate(tmp_path):
    trainer, batch = _trainer_and_batch(tmp_path, **FAST)
    for _ in range(8):  # a surrogate that already reacts to its input
        trainer.surrogate_step(batch, step=0)
    surrogate_before = _weights(trainer.surrogate_module)
    generator_before = _weights(trainer.generator_module)
    results = [{k: float(v) for k, v in trainer.generator_step(batch, step=1).items()} for _ in range(12)]
    losses = [r["generator_loss"] for r in results]
    assert losses[-1] < losses[0] - 2e-3, losses
    assert sum(b > a for a, b in zip(losses, losses[1:])) <= 2, losses
    assert all(np.isfinite(r["generator_mask_loss"]) and r["generator_mask_loss"] > 0 for r in results)
    assert _same(_weights(trainer.surrogate_module), surrogate_before)
    assert all(p.requires_grad for p in trainer.surrogate_module.parameters())  # unfrozen again
    assert not _same(_weights(trainer.generator_module), generator_before)


# --- the adversarial objective ------------------------------------------------------------------
ADVERSARIAL = {"loss": {"objective": "adversarial", "generator_mask_weight": 0.0}}


def test_adversarial_surrogate_steps_learn_the_clean_images_whatever_the_generator(tmp_path):
    first, batch = _trainer_and_batch(tmp_path, **FAST, loss=ADVERSARIAL["loss"])
    second, _ = _trainer_and_batch(tmp_path, **FAST, loss=ADVERSARIAL["loss"])
    second.surrogate_module.load_state_dict(first.surrogate_module.state_dict())
    with torch.no_grad():  # another generator: its noise must not reach the surrogate
        for parameter in second.generator_module.parameters():
            parameter.add_(0.5)
    losses = [float(first.surrogate_step(batch, step=0)["surrogate_loss"]) for _ in range(3)]
    others = [float(second.surrogate_step(batch, step=0)["surrogate_loss"]) for _ in range(3)]
    assert losses == others
    assert _same(_weights(first.surrogate_module), _weights(second.surrogate_module))
    minmin, _ = _trainer_and_batch(tmp_path, **FAST)  # min-min: the same surrogate learns x + δ instead
    minmin.surrogate_module.load_state_dict(second.surrogate_module.state_dict())
    first.surrogate_step(batch, step=1)
    minmin.surrogate_step(batch, step=1)
    assert not _same(_weights(first.surrogate_module), _weights(minmin.surrogate_module))


def test_adversarial_generator_step_moves_the_generator_against_min_min(tmp_path):
    """Same state, same batch: the adversarial step's loss is min-min's negated, so Adam's first
    step (lr x sign of the gradient) moves every generator parameter the opposite way."""
    adversarial, batch = _trainer_and_batch(tmp_path, **FAST, loss=ADVERSARIAL["loss"])
    minmin, _ = _trainer_and_batch(tmp_path, **FAST, loss={"generator_mask_weight": 0.0})
    for _ in range(4):  # a surrogate that reacts to its input
        adversarial.surrogate_step(batch, step=0)
    minmin.surrogate_module.load_state_dict(adversarial.surrogate_module.state_dict())
    before = _weights(adversarial.generator_module)
    assert _same(before, _weights(minmin.generator_module))
    losses = [float(t.generator_step(batch, step=1)["generator_loss"]) for t in (adversarial, minmin)]
    assert losses[0] == pytest.approx(losses[1])  # the loss is reported as computed, not negated
    moved = 0
    for name, start in before.items():
        up = adversarial.generator_module.state_dict()[name] - start
        down = minmin.generator_module.state_dict()[name] - start
        changed = (up.abs() > 1e-7) & (down.abs() > 1e-7)
        assert torch.all(torch.sign(up[changed]) == -torch.sign(down[changed])), name
        moved += int(changed.sum())
    assert moved > 100


def test_adversarial_generator_steps_raise_a_frozen_surrogate_loss(tmp_path):
    trainer, batch = _trainer_and_batch(tmp_path, **FAST, loss=ADVERSARIAL["loss"])
    for _ in range(8):
        trainer.surrogate_step(batch, step=0)
    surrogate_before = _weights(trainer.surrogate_module)
    losses = [float(trainer.generator_step(batch, step=1)["generator_loss"]) for _ in range(12)]
    assert losses[-1] > losses[0] + 2e-3, losses
    assert _same(_weights(trainer.surrogate_module), surrogate_before)


def test_box_surrogate_prompts_are_corners_and_the_filled_box(tmp_path):
    config = tiny_config(tmp_path, prompts={"surrogate_prompt": "box", "surrogate_unprompted": 0.5, "box_jitter": 0.0})
    dataset = runner.build_dataset(config, 32, "train", augment=False)
    masks = collate([dataset[i] for i in range(len(dataset))])["mask"]
    prompts = surrogate_prompts(masks, config.prompts, torch.Generator().manual_seed(0))
    prompted = prompts.labels[:, 0] == BOX_TOP_LEFT
    assert 0 < int(prompted.sum()) < len(masks)  # about half get no prompt at all
    assert torch.equal(prompts.has_mask, prompted)
    assert torch.all(prompts.labels[prompted, 1] == BOX_BOTTOM_RIGHT)
    assert torch.all(prompts.labels[:, 2:] == PADDING) and torch.all(prompts.labels[~prompted] == PADDING)
    assert torch.all(prompts.masks[~prompted] == 0)
    for mask, box, corners in zip(masks[prompted], prompts.masks[prompted], prompts.coords[prompted]):
        ys, xs = torch.nonzero(mask[0] > 0.5, as_tuple=True)  # the tight box (corners: first and last pixel), filled
        expected = torch.zeros_like(box[0])
        expected[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = 1
        assert torch.equal(box[0], expected)
        assert torch.equal(corners[:2], torch.tensor([[xs.min(), ys.min()], [xs.max(), ys.max()]]).float())


def test_warmup_rounds_run_surrogate_steps_only(tmp_path):
    config = tiny_config(tmp_path, schedule={"warmup_rounds": 2}, loss={"objective": "adversarial"})
    runner.run_training(config)
    steps = [r for r in read_metrics(tmp_path / "run" / "metrics.csv") if r["phase"] != "eval"]
    assert [r["phase"] for r in steps] == ["surrogate"] * 4 + ["surrogate", "generator"] * 2


def test_the_adversarial_objective_refuses_a_min_min_target(tmp_path):
    with pytest.raises(ConfigError, match="loss.target applies to min-min only"):
        tiny_config(tmp_path, loss={"objective": "adversarial", "target": "ones"})


def test_keyed_generators_refuse_the_adversarial_objective(tmp_path):
    config = tiny_config(tmp_path, loss={"objective": "adversarial"})
    keyed = config.model.generator.replace(".json", "_keyed.json")
    Path(keyed).write_text(json.dumps({**json.loads(Path(config.model.generator).read_text()), "num_codes": 4,
                                       "code_cells": 8, "code_tile": 2}))
    with pytest.raises(ConfigError, match="min-min only"):
        runner.run_training(apply_overrides(config, [f"model.generator={keyed}", "output.check_steps=0"]))


def test_surrogate_weights_start_the_surrogate_and_stay_frozen_without_surrogate_steps(tmp_path):
    trained, _ = _trainer_and_batch(tmp_path / "a", **FAST)
    path = save_model(tmp_path / "surrogate.safetensors", trained.surrogate_module)
    config = tiny_config(tmp_path / "b", model={"surrogate_weights": str(path)}, loss={"objective": "adversarial"},
                         schedule={"rounds": 2, "surrogate_steps": 0, "generator_steps": 1})
    runner.seed_everything(1)  # another initialisation: only the file can make the weights equal
    _, surrogate, _ = runner.build_networks(config, CPU)
    assert _same(_weights(surrogate), _weights(trained.surrogate_module))
    runner.run_training(config)
    state = _trainer_and_batch(tmp_path / "c", model={"surrogate_weights": str(path)})[0]
    load_training_state(Path(config.output.dir) / "checkpoint_last.safetensors", state)
    assert _same(_weights(state.surrogate_module), _weights(trained.surrogate_module))
    phases = [r["phase"] for r in read_metrics(Path(config.output.dir) / "metrics.csv") if r["phase"] != "eval"]
    assert phases == ["generator", "generator"]


def test_surrogate_weights_must_be_a_surrogate_of_the_configured_layout(tmp_path):
    trainer, _ = _trainer_and_batch(tmp_path / "a")
    generator_file = save_model(tmp_path / "generator.safetensors", trainer.generator_module)
    with pytest.raises(ConfigError, match="surrogate_weights: .*holds a generator"):
        runner.build_networks(tiny_config(tmp_path / "b", model={"surrogate_weights": str(generator_file)}), CPU)
    with pytest.raises(ConfigError, match="surrogate_weights: checkpoint not found"):
        runner.build_networks(tiny_config(tmp_path / "c", model={"surrogate_weights": str(tmp_path / "no")}), CPU)
    other = build_surrogate("small")  # the 128 px layout, not the tiny 32 px one
    with pytest.raises(ConfigError, match="another surrogate layout"):
        runner.build_networks(tiny_config(tmp_path / "d", model={
            "surrogate_weights": str(save_model(tmp_path / "small.safetensors", other))}), CPU)


SEMANTIC = {"model": {"semantic_surrogate": "unet@resnet18", "semantic_size": 32}}


def test_semantic_surrogate_learns_in_surrogate_steps_and_stays_frozen_in_generator_steps(tmp_path):
    trainer, batch = _trainer_and_batch(tmp_path, **FAST, **SEMANTIC)
    semantic = trainer.semantic_module
    generator_before = _weights(trainer.generator_module)
    semantic_before = _weights(semantic)
    losses = [float(trainer.surrogate_step(batch, step=0)["semantic_loss"]) for _ in range(12)]
    assert losses[-1] < losses[0] - 0.05, losses
    assert _same(_weights(trainer.generator_module), generator_before)
    assert not _same(_weights(semantic), semantic_before)

    semantic_before = _weights(semantic)  # parameters and batch-norm statistics
    results = [{k: float(v) for k, v in trainer.generator_step(batch, step=1).items()} for _ in range(12)]
    losses = [r["generator_semantic_loss"] for r in results]
    assert losses[-1] < losses[0] - 2e-3, losses
    assert _same(_weights(semantic), semantic_before)
    assert all(p.requires_grad for p in semantic.parameters())
    ious = trainer.evaluate([batch])
    assert set(ious) == {"iou_protected", "iou_clean", "semantic_iou_protected", "semantic_iou_clean"}
    assert all(0 <= v <= 1 for v in ious.values())


def test_semantic_surrogate_weight_zero_leaves_the_generator_objective_unchanged(tmp_path):
    plain, batch = _trainer_and_batch(tmp_path, **FAST)
    weightless, _ = _trainer_and_batch(tmp_path, **FAST, model=SEMANTIC["model"], loss={"semantic_weight": 0.0})
    weightless.generator_module.load_state_dict(plain.generator_module.state_dict())
    weightless.surrogate_module.load_state_dict(plain.surrogate_module.state_dict())
    plain.generator_step(batch, step=1)
    weightless.generator_step(batch, step=1)
    assert _same(_weights(plain.generator_module), _weights(weightless.generator_module))


def test_saturated_perturbation_spends_the_whole_budget_as_protection_does(tmp_path):
    trainer, batch = _trainer_and_batch(tmp_path)
    every = torch.ones(batch["mask"].shape[0], 3, dtype=torch.bool)
    prompts = prompt_batch(batch["mask"], every, trainer.sampling, torch.Generator().manual_seed(0))
    images = torch.full_like(batch["image"], 0.5)  # no clamping at 0 or 1
    masks, valid = batch["mask"], torch.ones_like(batch["mask"])
    with torch.no_grad():
        raw, output = perturb(trainer.generator_module, images, masks, valid, prompts, Budget(8, 2))
        full, _ = perturb(trainer.generator_module, images, masks, valid, prompts, Budget(8, 2), saturate=True)
    levels = ((full - images).abs() * 255).round()
    inside = masks.expand_as(levels) > 0.5
    # ±ε everywhere, 0 only where the noise equals its region's mean (e.g. a one-pixel region)
    assert set(levels[inside].unique().tolist()) == {0, 8} and (levels[inside] == 8).float().mean() > 0.95
    assert set(levels[~inside].unique().tolist()) <= {0, 2} and (levels[~inside] == 2).float().mean() > 0.95
    assert (raw - images).abs()[inside].mean() < 0.9 * 8 / 255  # the raw tanh noise does not
    expected = saturate_noise(output.noise[0].permute(1, 2, 0).numpy(), masks[0, 0].numpy() > 0.5)
    assert torch.equal(saturated(output.noise[:1], masks[:1])[0], torch.from_numpy(expected).permute(2, 0, 1))


def test_saturation_in_training_is_straight_through(tmp_path):
    """``epsilon.saturate``: generator steps see the saturated noise protection applies (forward: the
    sign) and still get a gradient (backward: identity through the centred noise)."""
    trainer, batch = _trainer_and_batch(tmp_path, epsilon={"saturate": True})
    every = torch.ones(batch["mask"].shape[0], 3, dtype=torch.bool)
    prompts = prompt_batch(batch["mask"], every, trainer.sampling, torch.Generator().manual_seed(0))
    images, masks, valid = batch["image"], batch["mask"], batch["valid"]
    generator = trainer.generator_module
    with torch.no_grad():
        hard, _ = perturb(generator, images, masks, valid, prompts, Budget(8, 2), saturate=True)
    soft, _ = perturb(generator, images, masks, valid, prompts, Budget(8, 2), saturate=True)
    assert torch.equal(soft.detach(), hard)
    generator.zero_grad(set_to_none=True)
    soft.sum().backward()
    grads = [p.grad for p in generator.noise_head.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    plain, _ = _trainer_and_batch(tmp_path)  # the same initial networks, raw noise
    assert _same(_weights(plain.generator_module), _weights(generator))
    trainer.generator_step(batch, 0)
    plain.generator_step(batch, 0)
    assert not _same(_weights(plain.generator_module), _weights(generator))  # the switch reaches the step


def test_rescale_through_keeps_coarse_texture_and_erases_pixel_texture():
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    fine = ((x + y) % 2 * 2 - 1).expand(1, 3, 64, 64)  # period 2 px
    coarse = torch.sign(torch.sin(2 * np.pi * x / 16) * torch.sin(2 * np.pi * y / 16)).expand(1, 3, 64, 64)
    assert torch.equal(rescale_through(fine, 1.0), fine)
    assert rescale_through(fine, 0.5).abs().mean() < 0.05
    kept = rescale_through(coarse, 0.5)
    assert kept.shape == coarse.shape and torch.corrcoef(torch.stack([kept.flatten(), coarse.flatten()]))[0, 1] > 0.8


def test_surrogate_input_rescale_depends_on_the_step_only(tmp_path):
    trainer, batch = _trainer_and_batch(tmp_path, data={"surrogate_rescale_min": 0.25})
    images = torch.rand(2, 3, 64, 64)
    assert trainer.surrogate_size == 32
    first = trainer.surrogate_input(images, step=5)
    assert first.shape == (2, 3, 32, 32) and torch.equal(first, trainer.surrogate_input(images, step=5))
    assert any(not torch.equal(first, trainer.surrogate_input(images, step=s)) for s in range(6, 12))
    plain, _ = _trainer_and_batch(tmp_path, data={"surrogate_rescale_min": 1.0})
    assert torch.equal(plain.surrogate_input(images, step=5), resize_images(images, 32))


def test_generator_loss_is_flat_without_a_learning_rate(tmp_path):
    """Control for the test above: the decrease comes from the updates, not from the measurement."""
    trainer, batch = _trainer_and_batch(tmp_path, optimiser={"generator_lr": 1e-12}, epsilon=FAST["epsilon"])
    losses = [float(trainer.generator_step(batch, step=1)["generator_loss"]) for _ in range(3)]
    assert max(losses) - min(losses) < 1e-5


# --- a whole run: outputs ----------------------------------------------------------------------
def test_run_outputs_generator_metrics_and_summary(tmp_path):
    config = tiny_config(tmp_path)
    result = runner.run_training(config)
    out = tmp_path / "run"
    assert result.out_dir == out and (result.rounds, result.steps) == (4, 8)
    for name in ("generator.safetensors", "checkpoint_last.safetensors", "metrics.csv", "metrics.png",
                 "config.toml", "summary.json"):
        assert (out / name).is_file(), name
    assert load_config(out / "config.toml") == config

    generator, meta = load_model(out / "generator.safetensors", kind="generator")
    assert isinstance(generator, NoiseGenerator) and generator.config.sam.img_size == 32
    assert meta["epsilon_train"] == pytest.approx(8 / 255) and meta["epsilon_bg_train"] == pytest.approx(2 / 255)
    assert meta["recommended_epsilon"] == pytest.approx(8 / 255)
    assert meta["recommended_epsilon_bg"] == pytest.approx(2 / 255)
    assert (meta["round"], meta["step"], meta["seed"]) == (4, 8, 3)
    assert meta["train_config"]["schedule"]["rounds"] == 4
    state = load_file(str(out / "checkpoint_last.safetensors"))
    assert all(torch.equal(v, state[f"generator.{k}"]) for k, v in generator.state_dict().items())

    protector = Protector.load(out / "generator.safetensors")
    assert protector.trained and protector.input_size == 32 and protector.budget == Budget(8, 2)
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 10:40] = True
    protected = protector.protect(image, mask=mask).pixels
    change = np.abs(protected.astype(int) - image.astype(int))
    assert protected.shape == image.shape and 0 < change.max() <= 8

    rows = read_metrics(out / "metrics.csv")
    assert tuple(rows[0]) == COLUMNS
    for column in ("surrogate_loss", "generator_loss", "iou_protected", "iou_clean"):
        assert column in COLUMNS  # the curves README.md describes
    steps = [r for r in rows if r["phase"] != "eval"]
    assert [int(r["step"]) for r in steps] == list(range(8))
    assert [r["phase"] for r in steps] == ["surrogate", "generator"] * 4
    assert all(float(r["surrogate_loss"]) > 0 for r in steps if r["phase"] == "surrogate")
    assert all(r["generator_loss"] and r["generator_mask_loss"] for r in steps if r["phase"] == "generator")
    lrs = [float(r["generator_lr"]) for r in steps]
    assert lrs == pytest.approx([3e-4] * 6 + [3e-5] * 2)  # x0.1 from round int(0.75 * 4) = 3 on
    evals = [r for r in rows if r["phase"] == "eval"]
    assert [int(r["step"]) for r in evals] == [3, 7]  # eval_every = 2 rounds
    assert all(0 <= float(r[k]) <= 1 for r in evals for k in ("iou_protected", "iou_clean"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 4 and summary["train_objects"] == 18 and summary["val_objects"] == 6
    assert summary["last"]["generator_loss"] == pytest.approx(float(steps[-1]["generator_loss"]))


@pytest.mark.parametrize("sections", [{}, SEMANTIC], ids=["interactive", "with_semantic"])
def test_protection_check_reports_ious(tmp_path, sections):
    config = tiny_config(tmp_path, schedule={"rounds": 1}, output={"check_steps": 2}, **sections)
    check = runner.run_training(config).check
    assert check["check_steps"] == 2 and np.isfinite(check["check_final_loss"])
    names = ["iou_protected", "iou_clean"] + (["semantic_iou_protected", "semantic_iou_clean"] if sections else [])
    assert sorted(check) == sorted([f"check_{n}" for n in names] + ["check_steps", "check_final_loss"])
    assert all(0 <= check[f"check_{n}"] <= 1 for n in names)
    _, meta = load_model(tmp_path / "run" / "generator.safetensors")
    assert meta["protection_check"] == pytest.approx(check)


# --- exact resume ------------------------------------------------------------------------------
class Interrupted(Exception):
    """Stands in for a crash right after a checkpoint was written."""


def _without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.mark.parametrize("sections", [{}, SEMANTIC], ids=["interactive", "with_semantic"])
def test_resume_after_interruption_repeats_the_uninterrupted_run(tmp_path, monkeypatch, sections):
    # 4 rounds, checkpoint every 2, lr decay at round 3: the resumed half crosses the decay
    straight = tiny_config(tmp_path, output={"dir": str(tmp_path / "straight")}, **sections)
    runner.run_training(straight)

    broken = tiny_config(tmp_path, output={"dir": str(tmp_path / "broken")}, **sections)
    save = runner._Run.save

    def save_then_crash(self, round_index, extra=None):
        save(self, round_index, extra)
        if round_index == 2:
            raise Interrupted

    monkeypatch.setattr(runner._Run, "save", save_then_crash)
    with pytest.raises(Interrupted):
        runner.run_training(broken)
    monkeypatch.undo()
    checkpoint = tmp_path / "broken" / "checkpoint_last.safetensors"
    assert read_training_metadata(checkpoint)["round"] == 2
    half = load_file(str(checkpoint))
    assert not _same(half, load_file(str(tmp_path / "straight" / "checkpoint_last.safetensors")))

    # no --config: the run's own stored config (output dir included) is used
    result = RUNNER.invoke(app, ["train", "--resume", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert "trained 4 rounds (8 steps)" in result.output
    for name in ("generator.safetensors", "checkpoint_last.safetensors"):
        a = load_file(str(tmp_path / "straight" / name))
        b = load_file(str(tmp_path / "broken" / name))
        assert _same(a, b), name  # weights, Adam moments, RNG states: bit for bit
    rows_a = read_metrics(tmp_path / "straight" / "metrics.csv")
    rows_b = read_metrics(tmp_path / "broken" / "metrics.csv")
    assert len(rows_a) == 10 and _without_seconds(rows_a) == _without_seconds(rows_b)


# --- configuration errors ----------------------------------------------------------------------
OVERRIDE_ERRORS = [
    ("schedule.roundz=3", "unknown config key 'schedule.roundz'"),
    ("schedule.rounds=three", "schedule.rounds: expected int, got 'three'"),
    ("schedule.rounds=2.5", "schedule.rounds: expected int"),
    ("epsilon.train=1/0", "epsilon.train: expected float"),
    ("output.progress=maybe", "output.progress: expected bool"),
    ("runtime.amp=fp8", "runtime.amp must be one of"),
    ("schedule.rounds=0", "schedule.rounds must be > 0"),
    ("epsilon.protect=2", "epsilon.protect must be in [0, 1]"),
    ("data.surrogate_rescale_min=0", "data.surrogate_rescale_min must be in"),
    ("model.semantic_surrogate=maskformer", "model.semantic_surrogate: unknown segmenter 'maskformer'"),
    ("model.semantic_size=100", "model.semantic_size must be a multiple of 32"),
    ("loss.semantic_weight=-1", "loss.semantic_weight must be >= 0"),
    ("prompts.surrogate_unprompted=2", "prompts: surrogate_unprompted must be in [0, 1]"),
    ("augmentation.scale_min=2", "augmentation: scale range must satisfy 0 < min <= max"),
    ("epsilon.train_bg=0.5", "epsilon.train / epsilon.train_bg: epsilon_bg"),
    ("schedule.rounds", "is not of the form section.key=value"),
    ("loss.objective=max-max", "loss.objective must be one of"),
    ("prompts.surrogate_prompt=ellipse", "prompts.surrogate_prompt must be one of"),
    ("schedule.warmup_rounds=-1", "schedule.warmup_rounds must be >= 0"),
]
RUN_ERRORS = [
    ("model.generator=huge", "unknown generator preset 'huge'"),
    ("model.surrogate=missing.json", "model.surrogate: config file not found"),
    ("data.root=does/not/exist", "data folder not found"),
    ("data.root=", "no training data"),
    ("data.train_split=nope.txt", "split file not found"),
    ("schedule.batch_size=64", "fewer than batch size 64"),
    ("data.min_area=0.9", "no objects found"),
]


@pytest.mark.parametrize(("override", "message"), OVERRIDE_ERRORS + RUN_ERRORS)
def test_config_errors_are_clear_in_api_and_cli(tmp_path, override, message):
    config = tiny_config(tmp_path)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        runner.run_training(apply_overrides(config, [override]))
    args = ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "cli"),
            "--set", f"model.generator={config.model.generator}", "--set", f"model.surrogate={config.model.surrogate}",
            "--set", override]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "cli" / "generator.safetensors").exists()


def test_config_file_and_model_file_errors(tmp_path):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[schedule\nrounds = 3")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(bad_toml)
    unknown_section = tmp_path / "extra.yaml"
    unknown_section.write_text("schedule:\n  rounds: 5\nextra:\n  x: 1\n")
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['extra'\]"):
        load_config(unknown_section)
    good = tmp_path / "good.yaml"
    good.write_text("schedule:\n  rounds: 5\nepsilon:\n  train: 2/255\n")
    loaded = load_config(good)
    assert loaded.schedule.rounds == 5 and loaded.epsilon.train == pytest.approx(2 / 255)

    config = tiny_config(tmp_path)
    generator_json = tmp_path / "models" / "tiny_generator.json"
    assert config.model.generator == str(generator_json)
    generator_json.write_text(json.dumps({"sam": {"img_size": 32}, "wings": 2}))
    with pytest.raises(ConfigError, match=r"model.generator: bad config file .*wings"):
        runner.run_training(config)

    result = RUNNER.invoke(app, ["train", "--config", str(tmp_path / "none.toml")])
    assert result.exit_code == 2 and "config file not found" in result.stderr


def test_shipped_default_toml_is_the_dataclasses_defaults_key_for_key():
    """default.toml (with its comments) is checked against the config dataclasses: every key once,
    every value the built-in default, so neither can drift from the other."""
    import tomllib

    path = default_config_path()
    raw = tomllib.loads(path.read_text())
    keys = {f"{section}.{key}" for section, values in raw.items() for key in values}
    assert keys == set(valid_keys())
    assert load_config(path) == TrainConfig() == load_config(None)
    paper = tomllib.loads((path.parent / "paper.toml").read_text())
    assert {f"{section}.{key}" for section, values in paper.items() for key in values} <= set(valid_keys())
    assert isinstance(TrainConfig().augmentation, Augmentation) and isinstance(TrainConfig().prompts, PromptSampling)


def test_configs_written_before_the_augmentation_section_still_load(tmp_path):
    old = tmp_path / "old.toml"
    old.write_text("[data]\nflip_probability = 0.0\nscale_min = 0.5\nscale_max = 2.0\nmin_area = 0.01\n")
    loaded = load_config(old)
    assert loaded.augmentation == Augmentation(0.0, 0.5, 2.0) and loaded.data.min_area == 0.01
    assert load_config(REPO / "benchmarks" / "results" / "default_generator" / "config.toml").augmentation == Augmentation()


def test_resume_refuses_the_wrong_file_or_network(tmp_path):
    config = tiny_config(tmp_path, schedule={"rounds": 1})
    runner.run_training(config)
    out = tmp_path / "run"
    result = RUNNER.invoke(app, ["train", "--resume", str(out / "generator.safetensors")])
    assert result.exit_code == 2 and "is not an unseg training state" in result.stderr
    result = RUNNER.invoke(app, ["train", "--resume", str(tmp_path / "missing.safetensors")])
    assert result.exit_code == 2 and "training state not found" in result.stderr
    # a run stored with the tiny generator cannot continue as the "small" preset
    result = RUNNER.invoke(app, ["train", "--resume", str(out / "checkpoint_last.safetensors"),
                                 "--set", "model.generator=small", "--set", "schedule.rounds=2"])
    assert result.exit_code == 2 and "does not fit" in result.stderr
    # nor with a semantic surrogate it did not train
    result = RUNNER.invoke(app, ["train", "--resume", str(out / "checkpoint_last.safetensors"),
                                 "--set", "model.semantic_surrogate=unet", "--set", "schedule.rounds=2"])
    assert result.exit_code == 2 and "holds the networks ['generator', 'surrogate']" in result.stderr


def test_real_camvid_objects_feed_a_training_step(tmp_path, shared_data):
    """A handful of real camvid images (void never an object) go through one round."""
    camvid = shared_data / "camvid"
    if not camvid.is_dir():
        pytest.skip("camvid not present")
    stems = (camvid / "splits" / "train.txt").read_text().split()[:2]
    (tmp_path / "two.txt").write_text("\n".join(stems))
    config = tiny_config(tmp_path, data={"root": str(camvid), "train_split": str(tmp_path / "two.txt"),
                                         "val_split": str(tmp_path / "two.txt"), "min_area": 0.01},
                         schedule={"rounds": 1})
    dataset = runner.build_dataset(config, 32, "train", augment=True)
    assert len(dataset) >= 4 and all(ref.class_id != 11 for ref in dataset.objects)
    result = runner.run_training(config)
    assert np.isfinite(result.last_metrics["surrogate_loss"]) and np.isfinite(result.last_metrics["generator_loss"])


def test_step_values_are_read_in_bulk_every_log_every_steps(tmp_path):
    """No host sync per step: a step's losses stay 0-d device tensors until a flush reads the
    window's values in one go (and reduces them across DDP processes in one all-reduce)."""
    from unseg.training.metrics_log import MetricsLog, StepLog

    reduced: list[int] = []
    log = MetricsLog(tmp_path / "metrics.csv")
    steps = StepLog(log, every=3, synchronous=False, reduce=lambda values: reduced.append(values.numel()) or values)
    flushed = [steps.add({"step": i, "round": i, "phase": "generator"},
                         {"generator_loss": torch.tensor(float(i)), "generator_mask_loss": torch.tensor(0.5)}, 9.0)
               for i in range(7)]
    assert reduced == [6, 6] and [bool(f) for f in flushed] == [False, False, True] * 2 + [False]
    assert flushed[5] == {"generator_loss": 5.0, "generator_mask_loss": 0.5}
    assert len(read_metrics(log.path)) == 6 and steps.flush() == {"generator_loss": 6.0, "generator_mask_loss": 0.5}
    rows = read_metrics(log.path)
    assert [float(r["generator_loss"]) for r in rows] == [float(i) for i in range(7)] and reduced == [6, 6, 2]
    assert all(float(r["seconds"]) < 9.0 for r in rows)  # not synchronous: the window's wall time per step
    with pytest.raises(ValueError):
        StepLog(log, every=0, synchronous=True)


def test_log_every_changes_when_values_are_read_not_what_is_logged(tmp_path):
    rows = {}
    for every in (1, 3):
        config = tiny_config(tmp_path / f"every{every}", output={"log_every": every})
        runner.run_training(config)
        rows[every] = _without_seconds(read_metrics(tmp_path / f"every{every}" / "run" / "metrics.csv"))
    assert rows[1] == rows[3] and len([r for r in rows[1] if r["phase"] != "eval"]) == 8


def test_channels_last_changes_the_layout_not_the_losses(tmp_path):
    plain, batch = _trainer_and_batch(tmp_path / "plain", **SEMANTIC)
    fast, _ = _trainer_and_batch(tmp_path / "fast", **SEMANTIC, runtime={"channels_last": True})
    weights = [p for p in fast.semantic_module.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    a, b = plain.surrogate_step(batch, 0), fast.surrogate_step(batch, 0)
    assert torch.allclose(a["semantic_loss"], b["semantic_loss"], atol=1e-5) and torch.equal(a["surrogate_loss"],
                                                                                               b["surrogate_loss"])


def test_pinned_batches_are_the_same_batches(tmp_path):
    import warnings

    from unseg.training.batches import BatchStream

    config = tiny_config(tmp_path)
    dataset = runner.build_dataset(config, 32, "train", augment=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no GPU here: pinning is skipped with a warning
        plain, pinned = (BatchStream(dataset, 4, seed=1, pin_memory=pin).iterate(3) for pin in (False, True))
        for _ in range(2):
            (i, a), (j, b) = next(plain), next(pinned)
            assert i == j and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_move_between_machines(tmp_path, monkeypatch):
    """A run continued elsewhere: a checkpoint written on a CUDA machine (it then holds the CUDA RNG
    states) resumes on a CPU-only one, and a CPU-written one restores no CUDA state on a GPU machine;
    tensors are read to the CPU first (safetensors) and moved to the run's device."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    straight = tiny_config(tmp_path, output={"dir": str(tmp_path / "straight")})
    runner.run_training(straight)
    save = runner._Run.save

    def save_then_stop(self, round_index, extra=None):  # the first machine's time is up after round 2
        save(self, round_index, extra)
        if round_index == 2:
            raise Interrupted

    monkeypatch.setattr(runner._Run, "save", save_then_stop)
    with pytest.raises(Interrupted):
        runner.run_training(tiny_config(tmp_path, output={"dir": str(tmp_path / "moved")}))
    monkeypatch.undo()
    checkpoint = tmp_path / "moved" / "checkpoint_last.safetensors"
    tensors, metadata = load_file(str(checkpoint)), read_training_metadata(checkpoint)
    tensors["rng.cuda.0"] = torch.zeros(16, dtype=torch.uint8)  # as a GPU machine's file holds
    with safe_open(str(checkpoint), framework="pt") as handle:
        raw = handle.metadata()
    save_file(tensors, str(checkpoint), metadata=raw)
    assert metadata["round"] == 2 and not torch.cuda.is_available()
    result = RUNNER.invoke(app, ["train", "--resume", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert _same(load_file(str(tmp_path / "straight" / "generator.safetensors")),
                 load_file(str(tmp_path / "moved" / "generator.safetensors")))

    restored = []  # a GPU machine resuming a CPU-written file: no CUDA RNG state to restore
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    cpu_file = load_file(str(tmp_path / "straight" / "checkpoint_last.safetensors"))
    cpu_meta = read_training_metadata(tmp_path / "straight" / "checkpoint_last.safetensors")
    restore_rng(cpu_file, cpu_meta["rng"])
    assert restored == [] and not any(key.startswith("rng.cuda.") for key in cpu_file)
    restore_rng({**cpu_file, "rng.cuda.0": torch.ones(8, dtype=torch.uint8),
                                "rng.cuda.1": torch.ones(8, dtype=torch.uint8)}, metadata["rng"])
    assert len(restored) == 1 and len(restored[0]) == 1  # only as many GPUs as this machine has
