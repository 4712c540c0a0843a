"""One evaluation run: datasets × methods × defences × victims, resumable, one results.json.

For every cell the victim trains on the (protected, possibly defended) training split and is
scored on the clean test split after each epoch. Each finished cell is written to
``results.json`` at once; a rerun with the same config skips finished cells, reuses the
cached protected images (``<out>/protected/``) and continues an unfinished cell from its last
saved epoch (``<out>/checkpoints/``, :mod:`unseg.evaluation.resume`).
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import unseg
from unseg.data.images import atomic_write
from unseg.data.segmentation import SegmentationFolder, resize_mask, resize_pair, victim_size
from unseg.devices import flush_denormals, resolve_device
from unseg.evaluation.config import EvaluationConfig
from unseg.evaluation.defences import Defence, clean_subset, parse_defence
from unseg.evaluation.methods import CLEAN, generator_identity, protect_split, read_protected
from unseg.evaluation.priors import layout_prior_scores
from unseg.evaluation.resume import EpochCheckpoint
from unseg.evaluation.training import SplitTensors, train_victim
from unseg.evaluation.victims import parse_victim

RESULTS_FILE = "results.json"
CHECKPOINTS = "checkpoints"  # the training state of unfinished cells (:mod:`unseg.evaluation.resume`)


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    dataset: str
    method: str
    defence: str
    victim: str

    @property
    def key(self) -> str:
        return f"{self.dataset}|{self.victim}|{self.method}|{self.defence}"

    @property
    def file_stem(self) -> str:
        """The key as a file name (predictions, training state)."""
        return self.key.replace("|", "__").replace("/", "_").replace(":", "_")


def plan_cells(config: EvaluationConfig) -> list[Cell]:
    """The cells of a config, in run order (dataset, method, defence, victim).

    The clean method runs every non-mixture defence (its own reference); a mixture ``mix<K>``
    runs for the protected methods, and adds the clean-part-only reference ``cleanpart<K>``.
    """
    cells = []
    for dataset in config.datasets:
        for method in config.methods:
            for name in config.defences:
                defence = parse_defence(name)
                if method == CLEAN and defence.is_mixture:
                    name = f"cleanpart{round(defence.clean_fraction * 100)}"
                    if defence.clean_fraction == 0:
                        continue
                for victim in config.victims:
                    cell = Cell(dataset, method, name, victim)
                    if cell not in cells:
                        cells.append(cell)
    return cells


def library_versions() -> dict[str, str]:
    import segmentation_models_pytorch as smp

    return {"unseg": unseg.__version__, "torch": torch.__version__, "segmentation_models_pytorch": smp.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "threads": str(torch.get_num_threads())}


class ResultsStore:
    """results.json of a run folder: config, versions, protection info and finished cells."""

    def __init__(self, out: Path, config: EvaluationConfig) -> None:
        config.check_files()
        self.path = Path(out) / RESULTS_FILE
        self.data: dict = {"config": config.to_dict(), "versions": library_versions(), "generators": {},
                           "protection": {}, "priors": {}, "cells": {}}
        if self.path.is_file():
            previous = json.loads(self.path.read_text())
            old = EvaluationConfig.from_dict(previous["config"])
            if old.fingerprint() != config.fingerprint():
                raise ValueError(f"{self.path} was made with a different schedule/budget; use a new --out folder "
                                 f"(changed: {_changed(old, config)})")
            self.data["protection"] = previous.get("protection", {})
            self.data["cells"] = previous.get("cells", {})
            self.data["generators"] = previous.get("generators", {})
            self.data["priors"] = previous.get("priors", {})
        self._check_generators(config)

    def _check_generators(self, config: EvaluationConfig) -> None:
        """Record each UnSeg method's generator identity; refuse a resume after it changed."""
        for method in config.methods:
            identity = generator_identity(method, config.generator)
            if identity is None:
                continue
            known = self.data["generators"].setdefault(method, identity)
            if known != identity:
                raise ValueError(f"{self.path}: the generator behind {method!r} changed since this run started "
                                 f"({known} -> {identity}); use a new --out folder")

    def done(self, cell: Cell) -> bool:
        return cell.key in self.data["cells"]

    def add_cell(self, cell: Cell, record: dict) -> None:
        self.data["cells"][cell.key] = record
        self.save()

    def add_protection(self, method: str, dataset: str, info: dict) -> None:
        self.data["protection"][f"{dataset}|{method}"] = info
        self.save()

    def add_prior(self, dataset: str, scores: dict) -> None:
        """The dataset's image-free layout prior (:mod:`unseg.evaluation.priors`) on the test split."""
        self.data["priors"][dataset] = scores
        self.save()

    def save(self) -> None:
        text = json.dumps(self.data, indent=1, default=_json_default)
        atomic_write(self.path, lambda tmp: tmp.write_text(text))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _changed(old: EvaluationConfig, new: EvaluationConfig) -> list[str]:
    a, b = old.to_dict(), new.to_dict()
    return [k for k in a if a[k] != b.get(k)]


def pick_stems(stems: list[str], limit: int | None, seed: int) -> list[str]:
    """At most ``limit`` stems, a seeded pick kept in file order (all when ``limit`` is None)."""
    if limit is None or limit >= len(stems):
        return list(stems)
    keep = np.sort(np.random.default_rng(seed).permutation(len(stems))[:limit])
    return [stems[i] for i in keep]


def load_split(images: list[np.ndarray], masks: list[np.ndarray], size: tuple[int, int], fit: str = "stretch",
               pad_label: int = 0) -> SplitTensors:
    """Resize full-resolution images/masks to the victim size and stack them (``fit`` and
    ``pad_label``: :func:`unseg.data.segmentation.resize_pair`)."""
    pairs = [resize_pair(image, mask, size, fit, pad_label) for image, mask in zip(images, masks)]
    return SplitTensors(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]))


def training_images(folder: SegmentationFolder, stems: list[str], protected: Path | None, defence: Defence, seed: int) -> tuple[list[str], list[np.ndarray]]:
    """The training images a victim sees for (method, defence): protected/clean mix, then the image defence."""
    clean_part = set()
    if defence.clean_fraction is not None:
        clean_part = set(clean_subset(len(stems), defence.clean_fraction, seed).tolist())
    if defence.clean_only:
        stems = [stem for i, stem in enumerate(stems) if i in clean_part]
        clean_part = set(range(len(stems)))
    images = []
    for i, stem in enumerate(stems):
        use_clean = protected is None or i in clean_part
        pixels = folder.read_image(stem).rgb8() if use_clean else read_protected(protected, stem)
        images.append(defence.image_transform(pixels) if defence.image_transform else pixels)
    return stems, images


def run_evaluation(config: EvaluationConfig, out: str | Path) -> dict:
    """Run (or resume) every cell of ``config`` into ``out``; returns the results dict."""
    flush_denormals()  # before the protection's first parallel op, so intra-op threads inherit it
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(out, config)
    store.save()
    device = resolve_device(config.device)
    cells = plan_cells(config)
    bar = tqdm(total=len(cells), desc="cells", disable=not config.progress)
    bar.update(sum(store.done(cell) for cell in cells))
    for dataset in config.datasets:
        folder = SegmentationFolder(Path(config.data_root) / dataset)
        spec = folder.spec
        size = victim_size(spec, config.image_height)
        fit = dict(fit=config.victim_fit, pad_label=spec.pad_label)
        train_stems = pick_stems(folder.stems(spec.train_split), config.train_limit(len(folder.stems(spec.train_split))), config.seed)
        test_stems = pick_stems(folder.stems(spec.test_split), config.test_images, config.seed)
        if dataset not in store.data["priors"]:
            store.add_prior(dataset, layout_prior_scores(
                torch.stack([resize_mask(folder.read_mask(s), size, **fit) for s in train_stems]),
                torch.stack([resize_mask(folder.read_mask(s), size, **fit) for s in test_stems]), spec))
        test = None
        for method in config.methods:
            todo = [c for c in cells if c.dataset == dataset and c.method == method and not store.done(c)]
            if not todo:
                continue
            protected = None
            if method != CLEAN:
                protected, info = protect_split(method, folder, train_stems, out / "protected",
                                                config.method_options(spec.aspect), progress=config.progress)
                store.add_protection(method, dataset, info)
            if test is None:
                test = load_split([folder.read_image(s).rgb8() for s in test_stems], [folder.read_mask(s) for s in test_stems], size, **fit)
            for defence_name in dict.fromkeys(c.defence for c in todo):
                defence = parse_defence(defence_name)
                stems, images = training_images(folder, train_stems, protected, defence, config.seed)
                train = load_split(images, [folder.read_mask(s) for s in stems], size, **fit)
                for cell in [c for c in todo if c.defence == defence_name]:
                    checkpoint = EpochCheckpoint(out / CHECKPOINTS / f"{cell.file_stem}.safetensors", identity={
                        "cell": cell.key, "config": config.fingerprint(), "train_images": len(stems)})
                    record = _run_cell(cell, config, spec, train, test, defence, device, checkpoint)
                    record["train_images"] = len(stems)
                    record["test_images"] = len(test_stems)
                    _save_predictions(out, cell, record.pop("predictions"))
                    store.add_cell(cell, record)
                    checkpoint.remove()
                    bar.update(1)
    bar.close()
    return store.data


def _run_cell(cell: Cell, config: EvaluationConfig, spec, train: SplitTensors, test: SplitTensors, defence: Defence, device,
              checkpoint: EpochCheckpoint) -> dict:
    victim = parse_victim(cell.victim)
    schedule = config.schedule(augment=defence.augment, adversarial_epsilon=defence.adversarial_epsilon)
    result = train_victim(victim, spec, train, test, schedule, device, config.seed, progress=cell.key if config.progress else None,
                          checkpoint=checkpoint)
    metric = "iou" if victim.interactive else spec.primary_metric
    return {
        "dataset": cell.dataset, "victim": cell.victim, "method": cell.method, "defence": cell.defence,
        "metric": metric, "value": result.final[metric], "final": result.final, "history": result.history,
        "seconds": result.seconds, "seconds_per_epoch": result.seconds / config.epochs,
        "predictions": result.predictions,
    }


def _save_predictions(out: Path, cell: Cell, predictions: np.ndarray | None) -> None:
    if predictions is None:
        return
    path = out / "predictions" / f"{cell.file_stem}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, predictions)
