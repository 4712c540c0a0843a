"""Typed training configuration, loaded from TOML or YAML, with ``key.sub=value`` overrides."""

from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

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
    flip_probability: float = 0.5
    scale_min: float = 0.75
    scale_max: float = 1.25
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
    """

    generator: str = "small"
    surrogate: str = "small"
    sam_checkpoint: str = ""
    semantic_surrogate: str = "linknet@resnet18"
    semantic_size: int = 96


@dataclass(frozen=True)
class ScheduleConfig:
    """Rounds of (``surrogate_steps`` surrogate steps, then ``generator_steps`` generator steps).

    The learning rates drop by ``decay_factor`` once ``decay_at`` of the rounds are done
    (PAPER.md: x0.1 at epoch 20 of 27, i.e. ~0.75). ``eval_every`` / ``checkpoint_every`` count rounds.
    ``surrogate_reset_every`` > 0 (keyed generators): the semantic surrogate restarts from a fresh
    initialisation every that many rounds, so the codes stay what a young network learns first.
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
    """

    train: float = 8 / 255
    train_bg: float = 2 / 255
    protect: float = 8 / 255
    protect_bg: float = 2 / 255


@dataclass(frozen=True)
class LossConfig:
    """Generator target ("true" = plain min-min, the default; "ones" = the release's label
    modification, in ``configs/paper.toml``), and loss weights (``semantic_weight``: the semantic
    surrogate's loss in the generator's objective)."""

    target: str = "true"
    generator_mask_weight: float = 1.0
    semantic_weight: float = 1.0
    bce_weight: float = 1.0
    dice_weight: float = 1.0


@dataclass(frozen=True)
class PromptConfig:
    """Training-prompt sampling (see ``unseg.training.prompts.PromptSampling``).

    ``surrogate_unprompted``: share of training samples the surrogate gets with no prompt. It must
    then find the object from the image alone, as a semantic-segmentation victim does, so noise
    that marks the object (from the generator's prompt) pays off directly (0 = the paper's setup).
    """

    num_points: int = 10
    box_jitter: float = 0.1
    mask_max_radius: float = 0.03
    surrogate_unprompted: float = 0.75


@dataclass(frozen=True)
class RuntimeConfig:
    """Device ("auto" = cuda if available), mixed precision ("none", "bf16", "fp16"), seed, threads."""

    device: str = "auto"
    amp: str = "none"
    seed: int = 0
    threads: int = 0


@dataclass(frozen=True)
class OutputConfig:
    """Output folder; ``check_steps`` > 0 runs the final protection check for that many steps."""

    dir: str = "runs/unseg"
    check_steps: int = 0
    progress: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``unseg train`` needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)
    epsilon: EpsilonConfig = field(default_factory=EpsilonConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        validate(self)


CHOICES = {
    "data.format": ("folder", "coco"),
    "loss.target": ("ones", "true"),
    "runtime.amp": ("none", "bf16", "fp16"),
}


def validate(config: TrainConfig) -> None:
    """Raise :class:`ConfigError` for values out of range."""
    flat = flatten(config)
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"{key} must be one of {allowed}, got {flat[key]!r}")
    positive = ["model.semantic_size", "schedule.rounds", "schedule.batch_size", "schedule.eval_every",
                "schedule.checkpoint_every", "optimiser.generator_lr", "optimiser.surrogate_lr", "optimiser.code_lr"]
    if config.schedule.surrogate_reset_every < 0:
        raise ConfigError(f"schedule.surrogate_reset_every must be >= 0, got {config.schedule.surrogate_reset_every}")
    for key in positive:
        if flat[key] <= 0:
            raise ConfigError(f"{key} must be > 0, got {flat[key]}")
    if config.schedule.surrogate_steps < 0 or config.schedule.generator_steps < 0:
        raise ConfigError("schedule.surrogate_steps and generator_steps must be >= 0")
    if config.schedule.surrogate_steps + config.schedule.generator_steps == 0:
        raise ConfigError("a round needs at least one surrogate or generator step")
    if not 0 <= config.prompts.surrogate_unprompted <= 1:
        raise ConfigError(f"prompts.surrogate_unprompted must be in [0, 1], got {config.prompts.surrogate_unprompted}")
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
    return cls(**kwargs)


def config_from_mapping(data: dict[str, Any]) -> TrainConfig:
    """Config from a nested mapping (missing keys take defaults)."""
    return _build(TrainConfig, data, "")


def load_config(path: str | Path | None) -> TrainConfig:
    """Config from a ``.toml`` or ``.yaml``/``.yml`` file; None gives the shipped default."""
    path = Path(path) if path is not None else default_config_path()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot parse {path}: {error}") from error
    return config_from_mapping(data or {})


def config_from_toml_text(text: str) -> TrainConfig:
    """Config from TOML text (e.g. the copy stored in a training checkpoint)."""
    try:
        return config_from_mapping(tomllib.loads(text))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"cannot parse config: {error}") from error


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
