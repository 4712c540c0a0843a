"""Typed training configuration, loaded from TOML or YAML, with ``key.sub=value`` overrides."""

from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from unseg.budget import DEFAULT_BUDGET, Budget
from unseg.data.interactive import Augmentation
from unseg.models.semantic import parse_semantic


class ConfigError(ValueError):
    """A training configuration is malformed (unknown key, wrong type, bad value)."""


@dataclass(frozen=True)
class DataConfig:
    """Where training/validation objects come from (see ``unseg.data.interactive``).

    ``format`` "folder": ``root/images_dir`` + ``root/masks_dir`` matched by stem, stems from
    ``root/train_split`` / ``root/val_split`` (empty = all files; relative paths are under root).
    ``format`` "coco": ``train_json`` / ``val_json`` instance files, images under ``root/images_dir``.
    ``min_area``: smallest object as a fraction of the image area. ``ignore_index`` < 0: none.
    ``surrogate_rescale_min`` < 1: each step the surrogate sees x + δ shrunk by a random factor
    in [min, 1] and resized back, so the noise must survive the downscaling victims do (1 = off).
    The training objects' flip and scale jitter are the ``[augmentation]`` section
    (:class:`unseg.data.interactive.Augmentation`).
    """

    root: str = ""
    format: str = "folder"
    images_dir: str = "images"
    masks_dir: str = "masks"
    train_split: str = "splits/train.txt"
    val_split: str = "splits/val.txt"
    train_json: str = ""
    val_json: str = ""
    ignore_index: int = 11
    min_area: float = 0.002
    surrogate_rescale_min: float = 0.5
    val_objects: int = 64
    num_workers: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """Generator/surrogate: a preset name or a ``.json`` file of the config dataclass's fields.

    ``sam_checkpoint``: official SAM weights loaded into the generator (SAM part then frozen).
    ``semantic_surrogate``: an smp segmenter (``arch`` or ``arch@encoder``, see
    ``unseg.models.semantic``; "" = none) trained from scratch beside the interactive surrogate, with
    no prompt, on x + δ resized to ``semantic_size`` (the object vs. everything else); the generator
    then also minimises its loss, as a convolutional victim that trains on downscaled images would.
    ``surrogate_weights``: an unseg surrogate checkpoint (``benchmarks/clean_surrogate.py`` writes one:
    the ``sam`` victim trained on clean images) the interactive surrogate starts from instead of a random
    initialisation; its architecture must be ``surrogate``'s. With ``schedule.surrogate_steps = 0`` it
    stays frozen: the adversarial objective against a model that already reads images.
    """

    generator: str = "small"
    surrogate: str = "small"
    sam_checkpoint: str = ""
    surrogate_weights: str = ""
    semantic_surrogate: str = "linknet@resnet18"
    semantic_size: int = 96


@dataclass(frozen=True)
class ScheduleConfig:
    """Rounds of (``surrogate_steps`` surrogate steps, then ``generator_steps`` generator steps).

    The learning rates drop by ``decay_factor`` once ``decay_at`` of the rounds are done
    (the UnSeg paper, arXiv:2410.09909: x0.1 at epoch 20 of 27, i.e. ~0.75). ``eval_every`` / ``checkpoint_every`` count rounds.
    ``surrogate_reset_every`` > 0 (keyed generators): the semantic surrogate restarts from a fresh
    initialisation every that many rounds, so the codes stay what a young network learns first.
    ``warmup_rounds``: the first rounds run surrogate steps only (all ``surrogate_steps +
    generator_steps`` of them), so an adversarial generator (``loss.objective``) starts against a
    surrogate that already segments.
    """

    rounds: int = 500
    surrogate_steps: int = 2
    generator_steps: int = 3
    batch_size: int = 8
    decay_at: float = 0.75
    decay_factor: float = 0.1
    eval_every: int = 50
    checkpoint_every: int = 50
    surrogate_reset_every: int = 0
    warmup_rounds: int = 0


@dataclass(frozen=True)
class OptimiserConfig:
    """Adam for each network. Default lr 3e-4 (release: 1e-4 with a frozen pretrained SAM part):
    a from-scratch generator and surrogate on CPU get few steps, and 3e-4 is the usual stable Adam
    rate for small ViTs trained from scratch."""

    generator_lr: float = 3e-4
    surrogate_lr: float = 3e-4
    code_lr: float = 1e-2
    weight_decay: float = 0.0
    grad_clip: float = 1.0


@dataclass(frozen=True)
class EpsilonConfig:
    """Budgets for training and for protection (both recorded in the checkpoint).

    The paper trains small and protects large ("epsilon generalization": 1/255, bg 0.25/255, in
    ``configs/paper.toml``, for a long GPU schedule). The CPU default trains at the protection
    budget (8/255, bg 2/255): at 4/255 the from-scratch surrogate did not pick up the noise within
    200 rounds in any of four runs (``unseg/weights/README.md``).

    Values are fractions of the intensity range (TOML may write them as ``"8/255"``); the code
    uses them as :class:`~unseg.budget.Budget` values, :attr:`train_budget` and
    :attr:`protect_budget`. The protection budget is stored in ``generator.safetensors`` and is
    what :meth:`unseg.protection.Protector.load` (and ``unseg protect``) uses unless told otherwise.

    ``saturate``: train on the noise as protection applies it (saturated,
    :func:`unseg.protection.perturb.saturate`; generator steps get the straight-through gradient)
    instead of the generator's raw tanh output (the default, as the shipped weights were trained).
    """

    train: float = DEFAULT_BUDGET.fraction
    train_bg: float = DEFAULT_BUDGET.fraction_bg
    protect: float = DEFAULT_BUDGET.fraction
    protect_bg: float = DEFAULT_BUDGET.fraction_bg
    saturate: bool = False

    @property
    def train_budget(self) -> Budget:
        return Budget.from_fractions(self.train, self.train_bg)

    @property
    def protect_budget(self) -> Budget:
        return Budget.from_fractions(self.protect, self.protect_bg)


@dataclass(frozen=True)
class LossConfig:
    """The generator's objective, its target and the loss weights.

    ``objective``: ``"min-min"`` (the paper's bilevel error-minimisation: the surrogates learn on
    x + δ, the generator *lowers* their loss — a shortcut) or ``"adversarial"`` (an adversarial
    poison, Fowl et al., NeurIPS 2021, amortised in one generator as in GAP, Poursaeed et al., CVPR
    2018: the surrogates learn on the *clean* images and the generator *raises* their loss on the
    true masks, so a victim trained on the noised images learns features that point the wrong way on
    clean ones; what took the box-prompted ``sam`` victim below box-fill in
    ``benchmarks/results/adversarial_poison_probe.md``). ``target`` (min-min only): "true" = plain
    min-min, the default; "ones" = the release's label modification (``configs/paper.toml``).
    ``semantic_weight``: the semantic surrogate's loss in the generator's objective."""

    objective: str = "min-min"
    target: str = "true"
    generator_mask_weight: float = 1.0
    semantic_weight: float = 1.0
    bce_weight: float = 1.0
    dice_weight: float = 1.0


@dataclass(frozen=True)
class PromptSampling:
    """How training prompts are drawn (:mod:`unseg.training.prompts`), the ``[prompts]`` section.

    ``num_points`` random positive points per object; ``box_jitter`` is the largest box-corner
    shift as a fraction of the box side; ``mask_max_radius`` the largest dilation/erosion radius
    of the noisy mask prompt as a fraction of the input side. ``surrogate_unprompted``: share of
    training samples the surrogate gets with no prompt. It must then find the object from the
    image alone, as a semantic-segmentation victim does, so noise that marks the object (from the
    generator's prompt) pays off directly (0 = the paper's setup). ``surrogate_prompt``: ``"any"``
    (one of box, points, noisy mask per prompted sample) or ``"box"`` (the box's corners and the
    filled box as the mask prompt, as the benchmark's interactive victim is prompted,
    :class:`unseg.evaluation.interactive.ObjectSamples`).
    """

    num_points: int = 10
    box_jitter: float = 0.1
    mask_max_radius: float = 0.03
    surrogate_unprompted: float = 0.75
    surrogate_prompt: str = "any"

    def __post_init__(self) -> None:
        if self.num_points < 1:
            raise ValueError("num_points must be at least 1")
        if not 0 <= self.surrogate_unprompted <= 1:
            raise ValueError(f"surrogate_unprompted must be in [0, 1], got {self.surrogate_unprompted}")


@dataclass(frozen=True)
class RuntimeConfig:
    """Device ("auto" = cuda if available, "cuda", "cuda:N", "cpu"), mixed precision ("none",
    "bf16", "fp16"), seed, CPU threads (0: torch's default), and ``channels_last``: the semantic
    surrogate (a CNN) and its inputs in channels-last memory layout (faster convolutions on a GPU,
    especially with bf16; the ViTs are unaffected)."""

    device: str = "auto"
    amp: str = "none"
    seed: int = 0
    threads: int = 0
    channels_last: bool = False


@dataclass(frozen=True)
class OutputConfig:
    """Output folder; ``check_steps`` > 0 runs the final protection check for that many steps;
    ``log_every``: step values are read from the device and written to ``metrics.csv`` every that
    many steps (and at every evaluation and checkpoint), not after each step: no per-step host
    sync on a GPU."""

    dir: str = "runs/unseg"
    check_steps: int = 0
    progress: bool = True
    log_every: int = 10


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``unseg train`` needs."""

    data: DataConfig = field(default_factory=DataConfig)
    augmentation: Augmentation = field(default_factory=Augmentation)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)
    epsilon: EpsilonConfig = field(default_factory=EpsilonConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    prompts: PromptSampling = field(default_factory=PromptSampling)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        validate(self)


CHOICES = {
    "data.format": ("folder", "coco"),
    "loss.target": ("ones", "true"),
    "loss.objective": ("min-min", "adversarial"),
    "prompts.surrogate_prompt": ("any", "box"),
    "runtime.amp": ("none", "bf16", "fp16"),
}


def validate(config: TrainConfig) -> None:
    """Raise :class:`ConfigError` for values out of range."""
    flat = flatten(config)
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"{key} must be one of {allowed}, got {flat[key]!r}")
    positive = ["model.semantic_size", "schedule.rounds", "schedule.batch_size", "schedule.eval_every",
                "schedule.checkpoint_every", "optimiser.generator_lr", "optimiser.surrogate_lr", "optimiser.code_lr",
                "output.log_every"]
    if config.loss.objective == "adversarial" and config.loss.target != "true":
        raise ConfigError("loss.target applies to min-min only: the adversarial objective raises the loss of the true masks")
    if config.schedule.warmup_rounds < 0:
        raise ConfigError(f"schedule.warmup_rounds must be >= 0, got {config.schedule.warmup_rounds}")
    if config.schedule.surrogate_reset_every < 0:
        raise ConfigError(f"schedule.surrogate_reset_every must be >= 0, got {config.schedule.surrogate_reset_every}")
    for key in positive:
        if flat[key] <= 0:
            raise ConfigError(f"{key} must be > 0, got {flat[key]}")
    if config.schedule.surrogate_steps < 0 or config.schedule.generator_steps < 0:
        raise ConfigError("schedule.surrogate_steps and generator_steps must be >= 0")
    if config.schedule.surrogate_steps + config.schedule.generator_steps == 0:
        raise ConfigError("a round needs at least one surrogate or generator step")
    if not 0 < config.data.surrogate_rescale_min <= 1:
        raise ConfigError(f"data.surrogate_rescale_min must be in (0, 1], got {config.data.surrogate_rescale_min}")
    if config.model.semantic_size % 32:
        raise ConfigError(f"model.semantic_size must be a multiple of 32, got {config.model.semantic_size}")
    if config.model.semantic_surrogate:
        try:
            parse_semantic(config.model.semantic_surrogate)
        except ValueError as error:
            raise ConfigError(f"model.semantic_surrogate: {error}") from None
    if config.loss.semantic_weight < 0:
        raise ConfigError(f"loss.semantic_weight must be >= 0, got {config.loss.semantic_weight}")
    for key in ("epsilon.train", "epsilon.train_bg", "epsilon.protect", "epsilon.protect_bg"):
        if not 0 <= flat[key] <= 1:
            raise ConfigError(f"{key} must be in [0, 1], got {flat[key]}")
    for name in ("train", "protect"):
        try:
            getattr(config.epsilon, f"{name}_budget")
        except ValueError as error:
            raise ConfigError(f"epsilon.{name} / epsilon.{name}_bg: {error}") from None


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"section.key": value}`` view of a (nested) config dataclass."""
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(value):
            out.update(flatten(value, key + "."))
        else:
            out[key] = value
    return out


def valid_keys() -> list[str]:
    """All ``section.key`` names a config accepts."""
    return sorted(flatten(TrainConfig()))


def _parse_float(text: str) -> float:
    """``"0.5"`` or a ratio like ``"8/255"`` -> float."""
    numerator, _, denominator = text.strip().partition("/")
    return float(numerator) / float(denominator) if denominator else float(numerator)


def _convert(value: Any, kind: Any, key: str) -> Any:
    """Typed conversion of a TOML/YAML value or an override string; fractions like 1/255 allowed."""
    kind = typing.get_args(kind)[0] if isinstance(kind, types.UnionType) else kind
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return _parse_float(value) if isinstance(value, str) else float(value)
        if kind is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
    except (ValueError, TypeError, ZeroDivisionError):
        pass
    raise ConfigError(f"{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a table/mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {[prefix + k for k in unknown]}; valid keys: {', '.join(valid_keys())}")
    kwargs = {}
    for name, value in data.items():
        kind = hints[name]
        if is_dataclass(kind):
            kwargs[name] = _build(kind, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _convert(value, kind, prefix + name)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as error:  # a section's own validation (Augmentation, PromptSampling)
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {error}") from None


# Keys that moved, old -> new section; configs written before (stored in checkpoints) still load.
MOVED_KEYS = {("data", key): "augmentation" for key in ("flip_probability", "scale_min", "scale_max")}


def _move_legacy_keys(data: dict[str, Any]) -> dict[str, Any]:
    data = {name: dict(values) if isinstance(values, dict) else values for name, values in data.items()}
    for (old, key), new in MOVED_KEYS.items():
        if isinstance(data.get(old), dict) and key in data[old]:
            data.setdefault(new, {}).setdefault(key, data[old].pop(key))
    return data


def config_from_mapping(data: dict[str, Any]) -> TrainConfig:
    """Config from a nested mapping (missing keys take defaults; keys of :data:`MOVED_KEYS` are
    read from their old place too)."""
    return _build(TrainConfig, _move_legacy_keys(data), "")


def load_config(path: str | Path | None) -> TrainConfig:
    """Config from a ``.toml`` or ``.yaml``/``.yml`` file; None gives the shipped default."""
    path = Path(path) if path is not None else default_config_path()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    return _parse(path.read_text(), yaml_text=path.suffix in (".yaml", ".yml"), source=str(path))


def config_from_toml_text(text: str) -> TrainConfig:
    """Config from TOML text (e.g. the copy stored in a training checkpoint)."""
    return _parse(text, yaml_text=False, source="config")


def _parse(text: str, yaml_text: bool, source: str) -> TrainConfig:
    """TOML or YAML text -> config; a syntax error becomes a :class:`ConfigError` naming ``source``."""
    try:
        data = yaml.safe_load(text) if yaml_text else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot parse {source}: {error}") from error
    return config_from_mapping(data or {})


def default_config_path() -> Path:
    """The shipped default config (``unseg/configs/default.toml``)."""
    return Path(__file__).resolve().parents[1] / "configs" / "default.toml"


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``section.key=value`` overrides with typed conversion; unknown keys fail clearly."""
    data = asdict(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if key not in flatten(config):
            raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(valid_keys())}")
        node = data
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return config_from_mapping(data)


def with_values(config: TrainConfig, **sections: dict[str, Any]) -> TrainConfig:
    """Copy of ``config`` with some fields of some sections replaced (already typed values)."""
    return replace(config, **{name: replace(getattr(config, name), **values) for name, values in sections.items()})


def to_toml(config: TrainConfig) -> str:
    """TOML text of ``config`` (round-trips through :func:`load_config`)."""
    lines: list[str] = []
    for section in fields(config):
        lines.append(f"[{section.name}]")
        for key, value in asdict(getattr(config, section.name)).items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, str):
                text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            else:
                text = repr(value)
            lines.append(f"{key} = {text}")
        lines.append("")
    return "\n".join(lines)
