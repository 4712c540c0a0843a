"""``unseg train`` end to end: config -> data -> bilevel rounds -> checkpoints, metrics, check.

Outputs in ``config.output.dir`` (rank 0 only): ``generator.safetensors`` (the deliverable, with
its training budget and the recommended protection budget in the metadata),
``checkpoint_last.safetensors`` (full state for exact resume), ``metrics.csv``, ``metrics.png``,
``config.toml`` and ``summary.json``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import unseg
from unseg.data.interactive import NO_AUGMENTATION, InteractiveDataset
from unseg.data.scenes import SceneDataset
from unseg.devices import DeviceError, flush_denormals
from unseg.models import (
    CheckpointError,
    GeneratorConfig,
    SurrogateConfig,
    build_generator,
    build_surrogate,
    generator_config,
    load_model,
    load_sam_weights,
    save_model,
    surrogate_config,
)
from unseg.models.config import config_from_dict
from unseg.training.batches import BatchStream, collate
from unseg.training.bilevel import BilevelTrainer, semantic_network
from unseg.training.keyed import KeyedTrainer
from unseg.training.checkpointing import load_training_state, read_training_metadata, save_training_state
from unseg.training.config import ConfigError, TrainConfig, to_toml
from unseg.training.distributed import (
    DistributedContext,
    barrier,
    context_from_env,
    init_distributed,
    mean_across,
    resolve_device,
    shutdown,
    wrap_model,
)
from unseg.training.metrics_log import MetricsLog, StepLog, plot_metrics
from unseg.training.protection_check import protection_check


@dataclass
class TrainResult:
    """What a finished run produced."""

    out_dir: Path
    rounds: int
    steps: int
    last_metrics: dict[str, float] = field(default_factory=dict)
    check: dict[str, float] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (initialisation of the networks depends on it)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _resolve(root: Path, relative: str) -> Path | None:
    if not relative:
        return None
    path = Path(relative)
    return path if path.is_absolute() else root / path


def build_dataset(config: TrainConfig, size: int, split: str, augment: bool,
                  scenes: bool = False) -> InteractiveDataset | SceneDataset | None:
    """Training (``split="train"``) or validation objects (``scenes``: whole scenes, for a keyed
    generator); None when no validation split is configured."""
    data = config.data
    if not data.root:
        raise ConfigError("no training data: give --data DIR (or data.root in the config)")
    root = Path(data.root)
    if not root.is_dir():
        raise ConfigError(f"data folder not found: {root}")
    augmentation = config.augmentation if augment else NO_AUGMENTATION
    seed = config.runtime.seed
    if scenes and data.format != "folder":
        raise ConfigError("a keyed generator trains on whole scenes: data.format must be folder")
    if data.format == "coco":
        json_path = data.train_json if split == "train" else data.val_json
        if not json_path:
            if split == "train":
                raise ConfigError("data.format = coco needs data.train_json")
            return None
        return InteractiveDataset.from_coco(_resolve(root, json_path), root / data.images_dir, size, data.min_area,
                                            augmentation, seed)
    split_file = _resolve(root, data.train_split if split == "train" else data.val_split)
    if split != "train" and split_file is None:
        return None
    if split_file is not None and not split_file.is_file():
        raise ConfigError(f"split file not found: {split_file}")
    ignore = data.ignore_index if data.ignore_index >= 0 else None
    if scenes:
        return SceneDataset.from_folder(root / data.images_dir, root / data.masks_dir, size, split_file, ignore,
                                        augmentation, seed)
    return InteractiveDataset.from_folder(root / data.images_dir, root / data.masks_dir, size, split_file, ignore,
                                          data.min_area, augmentation, seed)


def evaluation_batches(dataset: InteractiveDataset | SceneDataset, count: int,
                       batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Fixed batches of ``count`` objects spread evenly over ``dataset`` (no augmentation)."""
    count = min(count, len(dataset))
    picks = np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist() if count else []
    return [collate([dataset[i] for i in picks[s:s + batch_size]]) for s in range(0, len(picks), batch_size)]


def network_config(value: str, kind: str) -> GeneratorConfig | SurrogateConfig:
    """A preset name (``small``, ``vit_b``) or the path of a JSON file with the config's fields."""
    cls, presets = (GeneratorConfig, generator_config) if kind == "generator" else (SurrogateConfig, surrogate_config)
    if value.endswith(".json"):
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"model.{kind}: config file not found: {path}")
        try:
            return config_from_dict(cls, json.loads(path.read_text()))
        except (ValueError, TypeError) as error:
            raise ConfigError(f"model.{kind}: bad config file {path}: {error}") from error
    try:
        return presets(value)
    except KeyError as error:
        raise ConfigError(str(error.args[0])) from error


def trained_surrogate(path: str, expected: SurrogateConfig) -> torch.nn.Module:
    """The surrogate stored at ``path`` (``model.surrogate_weights``), which must have the ``expected`` layout."""
    try:
        surrogate, _ = load_model(path, kind="surrogate")
    except CheckpointError as error:
        raise ConfigError(f"model.surrogate_weights: {error}") from error
    if surrogate.config != expected:
        raise ConfigError(f"model.surrogate_weights: {path} holds another surrogate layout than model.surrogate "
                          f"(img_size {surrogate.config.sam.img_size} vs {expected.sam.img_size})")
    return surrogate


def build_networks(config: TrainConfig, device: torch.device):
    """Generator (optionally with official SAM weights, frozen), surrogate and semantic surrogate
    (None unless ``model.semantic_surrogate``), on ``device``."""
    generator = build_generator(network_config(config.model.generator, "generator"))
    if config.model.sam_checkpoint:
        missing = load_sam_weights(generator, config.model.sam_checkpoint)
        if missing:
            raise ConfigError(f"SAM checkpoint lacks {len(missing)} parameters, e.g. {missing[:3]}")
    layout = network_config(config.model.surrogate, "surrogate")
    surrogate = (trained_surrogate(config.model.surrogate_weights, layout) if config.model.surrogate_weights
                 else build_surrogate(layout))
    semantic = None
    if config.model.semantic_surrogate:  # a keyed generator's surrogate reads its codes
        semantic = semantic_network(config, device, classes=generator.config.num_codes if generator.config.keyed else 1)
    return generator.to(device), surrogate.to(device), semantic


def learning_rate_factor(config: TrainConfig, round_index: int) -> float:
    """Step decay: ``decay_factor`` once ``decay_at`` of the rounds are done."""
    schedule = config.schedule
    return schedule.decay_factor if round_index >= int(schedule.decay_at * schedule.rounds) else 1.0


def generator_metadata(config: TrainConfig, round_index: int, step: int, description: str,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metadata stored with ``generator.safetensors``."""
    eps = config.epsilon
    meta = {
        "epsilon_train": eps.train,
        "epsilon_bg_train": eps.train_bg,
        "recommended_epsilon": eps.protect,
        "recommended_epsilon_bg": eps.protect_bg,
        "round": round_index,
        "step": step,
        "train_config": asdict(config),
        "data": description,
        "seed": config.runtime.seed,
        "versions": {"unseg": unseg.__version__, "torch": torch.__version__},
    }
    meta.update(extra or {})
    return meta


class _Run:
    """State of one training run (one process)."""

    def __init__(self, config: TrainConfig, context: DistributedContext, device: torch.device) -> None:
        self.config = config
        self.context = context
        self.device = device
        self.out = Path(config.output.dir)
        generator_kind = network_config(config.model.generator, "generator")
        size = generator_kind.sam.img_size
        self.keyed = generator_kind.keyed
        if self.keyed and context.world_size > 1:
            raise ConfigError("keyed generators train in one process (no DDP yet)")
        if self.keyed and config.loss.objective != "min-min":
            raise ConfigError("keyed generators train with loss.objective = min-min only")
        if self.keyed and config.output.check_steps > 0:
            raise ConfigError("--check-steps measures the interactive surrogate; keyed generators are checked by "
                              "unseg evaluate (set output.check_steps = 0)")
        try:
            self.train_set = build_dataset(config, size, "train", augment=True, scenes=self.keyed)
            val_set = (build_dataset(config, size, "val", augment=False, scenes=self.keyed)
                       or build_dataset(config, size, "train", False, scenes=self.keyed))
            self.val_set = val_set
            self.eval_batches = evaluation_batches(val_set, config.data.val_objects, config.schedule.batch_size)
            self.stream = BatchStream(self.train_set, config.schedule.batch_size, config.runtime.seed, context.rank,
                                      context.world_size, config.data.num_workers, pin_memory=device.type == "cuda")
        except ConfigError:
            raise
        except ValueError as error:  # no objects, unreadable masks, batch larger than the data
            raise ConfigError(f"training data: {error}") from error
        seed_everything(config.runtime.seed)
        generator, surrogate, semantic = build_networks(config, device)
        trainer = KeyedTrainer if self.keyed else BilevelTrainer
        self.trainer = trainer(wrap_model(generator, context, device), wrap_model(surrogate, context, device),
                               config, device, context.rank,
                               None if semantic is None else wrap_model(semantic, context, device))
        self.steps_per_round = config.schedule.surrogate_steps + config.schedule.generator_steps

    def save(self, round_index: int, extra: dict[str, Any] | None = None) -> None:
        if not self.context.is_main:
            return
        step = round_index * self.steps_per_round
        description = self.train_set.description
        save_model(self.out / "generator.safetensors", self.trainer.generator_module,
                   generator_metadata(self.config, round_index, step, description, extra))
        save_training_state(self.out / "checkpoint_last.safetensors", self.trainer, round_index,
                            {"step": step, "config_toml": to_toml(self.config), "seed": self.config.runtime.seed,
                             "data_position": {"batch_index": step,
                                               "batches_per_epoch": self.stream.batches_per_epoch}})


def run_training(config: TrainConfig, resume: str | Path | None = None) -> TrainResult:
    """Train (or continue training) the generator as ``config`` says; see the module docstring."""
    context = context_from_env()
    flush_denormals()  # subnormal floats slow CPU training; before the first op, so intra-op threads inherit it
    if config.runtime.threads > 0:
        torch.set_num_threads(config.runtime.threads)
    try:
        device = resolve_device(config.runtime.device, context)
    except DeviceError as error:
        raise ConfigError(f"runtime.device: {error}") from None
    init_distributed(context, device)
    try:
        return _train(config, context, device, resume)
    finally:
        shutdown(context)


def _train(config: TrainConfig, context: DistributedContext, device: torch.device,
           resume: str | Path | None) -> TrainResult:
    start_round = 0
    if resume is not None:
        read_training_metadata(resume)  # fail early on a wrong file
    run = _Run(config, context, device)
    if resume is not None:
        start_round = int(load_training_state(resume, run.trainer)["round"])
    out = run.out
    schedule = config.schedule
    per_round = run.steps_per_round
    log = None
    if context.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.toml").write_text(to_toml(config))
        log = MetricsLog(out / "metrics.csv", resume_step=start_round * per_round if resume is not None else None)
    trainer = run.trainer
    batches = run.stream.iterate(start_round * per_round)
    last: dict[str, float] = {}
    steps = StepLog(log, config.output.log_every, synchronous=device.type == "cpu",
                    reduce=lambda values: mean_across(values, context))
    progress = tqdm(range(start_round, schedule.rounds), initial=start_round, total=schedule.rounds,
                    disable=not (context.is_main and config.output.progress), desc="train", unit="round")
    for round_index in progress:
        reset = schedule.surrogate_reset_every
        if run.keyed and reset > 0 and round_index > 0 and round_index % reset == 0:
            trainer.reset_semantic(round_index)
        trainer.set_learning_rates(learning_rate_factor(config, round_index))
        lrs = {"generator_lr": trainer.generator_optimiser.param_groups[0]["lr"],
               "surrogate_lr": trainer.surrogate_optimiser.param_groups[0]["lr"]}
        phases = ["surrogate"] * schedule.surrogate_steps + ["generator"] * schedule.generator_steps
        if round_index < schedule.warmup_rounds:  # the surrogate learns to segment before the generator starts
            phases = ["surrogate"] * len(phases)
        for phase in phases:
            step, batch = next(batches)
            started = time.perf_counter()
            values = trainer.surrogate_step(batch, step) if phase == "surrogate" else trainer.generator_step(batch, step)
            last.update(steps.add({"step": step, "round": round_index, "phase": phase, **lrs}, values,
                                  time.perf_counter() - started))  # device values: read every log_every steps
        done = round_index + 1
        progress.set_postfix({k: f"{v:.3f}" for k, v in last.items() if k.endswith("loss")})
        evaluate = done % schedule.eval_every == 0 or done == schedule.rounds
        save = done % schedule.checkpoint_every == 0 or done == schedule.rounds
        if evaluate or save:
            last.update(steps.flush())  # the log is complete up to this round
        if evaluate and context.is_main:
            ious = trainer.evaluate(run.eval_batches)
            last.update(ious)
            log.write(step=done * per_round - 1, round=round_index, phase="eval", **ious)
            plot_metrics(out / "metrics.csv", out / "metrics.png")
        if save:
            run.save(done)
        if evaluate or save:
            barrier(context)  # only where rank 0 did extra work: no per-round sync
    check: dict[str, float] = {}
    if config.output.check_steps > 0 and context.is_main:
        check_set = build_dataset(config, run.train_set.size, "val", augment=True) or run.train_set
        check_stream = BatchStream(check_set, min(schedule.batch_size, len(check_set)), config.runtime.seed + 1)
        check = protection_check(trainer, (b for _, b in check_stream.iterate()), run.eval_batches,
                                 config.output.check_steps)
        run.save(schedule.rounds, {"protection_check": check})
    if context.is_main:
        summary = {"rounds": schedule.rounds, "steps": schedule.rounds * per_round, "last": last,
                   "protection_check": check, "data": run.train_set.description,
                   "train_objects": len(run.train_set), "val_objects": len(run.val_set)}
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    barrier(context)
    return TrainResult(out, schedule.rounds, schedule.rounds * per_round, last, check)
