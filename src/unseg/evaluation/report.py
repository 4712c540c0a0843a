"""Turning results.json into report.md, metric plots and an image grid."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from unseg.data.images import atomic_write  # noqa: E402
from unseg.data.segmentation import SegmentationFolder, resize_pair, victim_size  # noqa: E402
from unseg.evaluation.config import EvaluationConfig  # noqa: E402
from unseg.evaluation.defences import parse_defence  # noqa: E402
from unseg.evaluation.methods import CLEAN, protected_folder, read_protected  # noqa: E402

REPORT_FILE = "report.md"


def _fmt(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def _cells(data: dict) -> list[dict]:
    return list(data["cells"].values())


def _cell(data: dict, dataset: str, victim: str, method: str, defence: str) -> dict | None:
    """The finished cell of that grid point (its key as :attr:`unseg.evaluation.protocol.Cell.key` writes it), or None."""
    return data["cells"].get(f"{dataset}|{victim}|{method}|{defence}")


def _value(data: dict, dataset: str, victim: str, method: str, defence: str) -> float | None:
    cell = _cell(data, dataset, victim, method, defence)
    return None if cell is None else cell["value"]


def clean_reference(defence: str) -> str:
    """The clean cell a defence is compared with: the same defence, or ``cleanpart<K>`` for ``mix<K>``."""
    parsed = parse_defence(defence)
    return f"cleanpart{round(parsed.clean_fraction * 100)}" if parsed.is_mixture else defence


def _with_ratio(value: float | None, reference: float | None) -> str:
    """``value (value / reference)``: the protected score and its share of the clean-trained one."""
    if value is None or reference is None or math.isnan(value) or not reference or math.isnan(reference):
        return _fmt(value)
    return f"{value:.1f} ({value / reference:.2f})"


def no_image_baselines(data: dict, dataset: str, victim: str) -> list[float]:
    """What predictors that never look at the pixels score on the same test split as ``victim``.
    Interactive victims: [box-fill, ellipse], the IoUs of the prompt-only predictors on their test
    objects (:func:`unseg.evaluation.interactive.prompt_only_ious`); semantic victims: [the layout
    prior's metric] (:mod:`unseg.evaluation.priors`); [] where the run did not record it (older runs)."""
    for cell in _cells(data):
        final = cell.get("final", {})
        if cell["dataset"] == dataset and cell["victim"] == victim and "box_fill_iou" in final:
            return [final[key] for key in ("box_fill_iou", "ellipse_iou") if key in final]
        if cell["dataset"] == dataset and cell["victim"] == victim and dataset in data.get("priors", {}):
            prior = data["priors"][dataset].get(cell["metric"])
            return [] if prior is None else [prior]
    return []


def image_free(data: dict, dataset: str, victim: str) -> str:
    """The "no-image baseline" cell: :func:`no_image_baselines` as "box-fill / ellipse" or "prior"."""
    return " / ".join(_fmt(value) for value in no_image_baselines(data, dataset, victim))


def kept_gain(value: float | None, clean: float | None, baseline: float) -> str:
    """``(value − baseline) / (clean − baseline)``: the share of what the clean-trained victim learned
    *from the image* (its score above the no-image baseline) that the protected-trained one still has.
    1 = protection took nothing, 0 = the victim learned nothing beyond the baseline, < 0 = misled."""
    if value is None or clean is None or math.isnan(value) or math.isnan(clean) or clean - baseline <= 0:
        return "–"
    return f"{(value - baseline) / (clean - baseline):.2f}"


def kept_gain_table(data: dict, dataset: str) -> list[str]:
    """Markdown rows (no defence): :func:`kept_gain` per victim and method, against the first no-image
    baseline (layout prior; box-fill for interactive victims, the bar issue 9 sets). [] without baselines
    or without an undefended clean-trained cell."""
    methods = [m for m in data["config"]["methods"] if m != CLEAN]
    rows = []
    for victim in data["config"]["victims"]:
        baselines = no_image_baselines(data, dataset, victim)
        clean = _value(data, dataset, victim, CLEAN, "none")
        if baselines and clean is not None:  # a run of defence cells only has no undefended share to show
            rows.append(f"| {victim} | {_fmt(baselines[0])} | "
                        + " | ".join(kept_gain(_value(data, dataset, victim, m, "none"), clean, baselines[0]) for m in methods) + " |")
    if not rows:
        return []
    return ["| victim | no-image baseline | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)] + rows


def results_table(data: dict, dataset: str) -> list[str]:
    """Markdown rows: one per (victim, defence); the clean-trained reference beside every method,
    each method as "score (score / clean)"; beside them the no-image baseline (:func:`image_free`): a
    protected-trained victim near it learned nothing from the content, one below it was misled."""
    config = data["config"]
    methods = [m for m in config["methods"] if m != CLEAN]
    lines = ["| victim | defence | no-image baseline | clean-trained | " + " | ".join(methods) + " |",
             "|---|---|---|---|" + "---|" * len(methods)]
    for victim in config["victims"]:
        trivial = image_free(data, dataset, victim)
        for defence in config["defences"]:
            reference = _value(data, dataset, victim, CLEAN, clean_reference(defence))
            label = f"{defence} (ref: {clean_reference(defence)})" if clean_reference(defence) != defence else defence
            row = [_with_ratio(_value(data, dataset, victim, m, defence), reference) for m in methods]
            lines.append(f"| {victim} | {label} | {trivial} | {_fmt(reference)} | " + " | ".join(row) + " |")
    return lines


RISING_POINTS = 1.0
"""A clean victim whose test metric rose by more than this over its last two epochs is reported as still
rising: a longer schedule would raise it, so its cells' shares of clean are shares of an unconverged model
(issue 9 asks for victims "where clean victims converge"). One that fell by more than this is reported as
falling: its final value understates what it reached (the table shows its best)."""


def convergence(history: list[dict], metric: str) -> dict | None:
    """From a cell's per-epoch ``history`` (``[{"epoch": e, metric: v, ...}, ...]``): ``final``, ``best``,
    ``best_epoch``, ``recent_gain`` (the last value minus the value two epochs earlier, or minus the first
    with fewer epochs), ``rising`` (``recent_gain``, to the 0.1 the report shows, above ``RISING_POINTS``) and
    ``falling`` (below ``-RISING_POINTS``).
    None with fewer than two epochs."""
    rows = [row for row in history if metric in row]
    if len(rows) < 2:
        return None
    values = [row[metric] for row in rows]
    best = int(np.argmax(values))
    gain = values[-1] - values[max(len(values) - 3, 0)]
    return {"final": values[-1], "best": values[best], "best_epoch": rows[best]["epoch"],
            "recent_gain": gain, "rising": round(gain, 1) > RISING_POINTS, "falling": round(gain, 1) < -RISING_POINTS}


def convergence_table(data: dict, dataset: str) -> list[str]:
    """Markdown rows: per victim, whether its clean-trained (undefended) cell converged — its final and best
    test metric, and what the last two epochs added (:func:`convergence`). [] without such cells."""
    rows = []
    for victim in data["config"]["victims"]:
        cell = _cell(data, dataset, victim, CLEAN, "none")
        state = None if cell is None else convergence(cell.get("history", []), cell["metric"])
        if state is not None:
            reading = "still rising" if state["rising"] else "falling" if state["falling"] else "flat"
            rows.append(f"| {victim} | {_fmt(state['final'])} | {_fmt(state['best'])} (epoch {state['best_epoch']}) | "
                        f"{state['recent_gain']:+.1f} | {reading} |")
    if not rows:
        return []
    return ["| victim | clean final | best (epoch) | last two epochs | reading |", "|---|---|---|---|---|"] + rows


def protection_table(data: dict) -> list[str]:
    lines = ["| dataset | method | images | s / image | mean PSNR (dB) | max L∞ inside / outside (levels) | "
             "budget (levels) | note |",
             "|---|---|---|---|---|---|---|---|"]
    for key, info in sorted(data["protection"].items()):
        dataset, method = key.split("|", 1)
        note = "" if info.get("trained", True) else "UNTRAINED generator"
        lines.append(f"| {dataset} | {method} | {info['images']} | {info['seconds_per_image']:.4f} | "
                     f"{_fmt(info.get('mean_psnr'))} | {info['max_linf_inside']} / {info['max_linf_outside']} | "
                     f"{info['epsilon_levels']} / {info['epsilon_bg_levels']} | {note} |")
    return lines


def mean_over_victims(data: dict, dataset: str, defence: str = "none") -> dict[str, float]:
    """Per method, the mean metric over the victims that finished (defence ``defence``)."""
    means = {}
    for method in data["config"]["methods"]:
        values = [v for v in (_value(data, dataset, victim, method, defence) for victim in data["config"]["victims"])
                  if v is not None and not math.isnan(v)]
        if values:
            means[method] = float(np.mean(values))
    return means


def write_report(data: dict, out: str | Path) -> Path:
    """Write report.md and the figures into ``out``; returns the report path."""
    out = Path(out)
    config = data["config"]
    figures = [plot_curves(data, out, d) for d in config["datasets"]] + [plot_bars(data, out)]
    for dataset in config["datasets"]:
        try:
            figures.append(image_grid(data, out, dataset))
        except (FileNotFoundError, OSError, ValueError) as error:  # the grid is a convenience; never lose the report
            previous = out / f"grid_{dataset}.png"  # e.g. a results folder kept without its protected-image cache
            figures.append(previous if previous.is_file() else None)
            print(f"image grid {'kept from before' if previous.is_file() else 'skipped'}: {error}")
    cells = _cells(data)
    settings = EvaluationConfig.from_dict(config)  # older results.json: the fields' defaults filled in
    budget = settings.budget
    lines = ["# UnSeg protection evaluation", "",
             f"Victims train on the protected training split and are tested on the clean test split; "
             f"lower is better protection. Budget ε = {budget.epsilon:g}/255 on objects, "
             f"ε_bg = {budget.epsilon_bg:g}/255 elsewhere. {len(cells)} cells, {config['epochs']} epochs, "
             f"victim height {config['image_height']} px ({settings.victim_fit} fit), train images ≤ {config['train_images'] or 'all'}, "
             f"test images ≤ {config['test_images'] or 'all'}, seed {config['seed']}, device {config['device']}.",
             "", "No-image baseline: what a predictor that never looks at the pixels scores on the same test "
             "split — interactive victims: box-fill / ellipse inscribed in the box prompt; semantic victims: "
             "the layout prior (each pixel's most frequent training class). A protected-trained victim near it "
             "learned nothing from the content; below it, the noise misled the victim.",
             "", "Versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()), ""]
    for dataset in config["datasets"]:
        metrics = sorted({c["metric"] for c in cells if c["dataset"] == dataset}) or ["–"]
        lines += [f"## {dataset} (test {', '.join(metrics)}, 0–100)", ""] + results_table(data, dataset) + [""]
        gains = kept_gain_table(data, dataset)
        if gains:
            lines += ["Share of the clean victim's gain over the no-image baseline that survives protection, "
                      "(protected − baseline) / (clean − baseline): 0 = nothing learned from the image beyond the "
                      "baseline, below 0 = misled.", ""] + gains + [""]
        converged = convergence_table(data, dataset)
        if converged:
            lines += [f"Did the clean-trained victims converge? \"Still rising\": the test metric gained more than "
                      f"{RISING_POINTS:g} point over the last two epochs, so a longer schedule would raise the clean "
                      "reference and every share of it above; \"falling\": it lost more than that, so the final "
                      "clean value understates what the victim reached (see its best).", ""] + converged + [""]
        means = mean_over_victims(data, dataset)
        if means:
            lines += ["Mean over victims (no defence): " + ", ".join(f"{m} {_fmt(v)}" for m, v in means.items()), ""]
    lines += ["## Protection cost", "", "Noise generation + exact budget, per training image (I/O excluded).", ""]
    lines += protection_table(data) + [""]
    seconds = [c["seconds"] for c in cells]
    if seconds:
        lines += [f"Victim training: {sum(seconds):.0f} s over {len(cells)} cells "
                  f"(mean {np.mean(seconds):.1f} s / cell, {np.mean([c['seconds_per_epoch'] for c in cells]):.1f} s / epoch).", ""]
    lines += ["## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figures if f is not None] + [""]
    path = out / REPORT_FILE
    text = "\n".join(lines)
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def plot_curves(data: dict, out: Path, dataset: str) -> Path:
    """Test metric over epochs, one panel per victim, one line per method (no defence; in a run of
    defence cells only, one line per method and defence, each with its clean reference)."""
    config = data["config"]
    victims = config["victims"]
    defences = ["none"] if mean_over_victims(data, dataset) else list(dict.fromkeys(
        d for defence in config["defences"] for d in (clean_reference(defence), defence)))
    figure, axes = plt.subplots(1, len(victims), figsize=(4 * len(victims), 3.2), squeeze=False)
    for axis, victim in zip(axes[0], victims):
        for defence in defences:
            for method in config["methods"]:
                cell = _cell(data, dataset, victim, method, defence)
                if cell:
                    history = cell["history"]
                    axis.plot([h["epoch"] for h in history], [h[cell["metric"]] for h in history], marker="o",
                              label=method if defence == "none" else f"{method} / {defence}",
                              linewidth=2.5 if method == CLEAN else 1.2)
        axis.set_title(f"{dataset} / {victim}")
        axis.set_xlabel("epoch")
        axis.set_ylabel("test metric")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    path = out / f"curves_{dataset}.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def plot_bars(data: dict, out: Path) -> Path | None:
    """Mean test metric over victims per method, one group per dataset (no defence); None (and no
    bars.png) for a run of defence cells only."""
    datasets, methods = data["config"]["datasets"], data["config"]["methods"]
    path = out / "bars.png"
    all_means = [mean_over_victims(data, dataset) for dataset in datasets]
    if not any(all_means):
        path.unlink(missing_ok=True)  # an empty chart, or one left from another run, says nothing true
        return None
    figure, axis = plt.subplots(figsize=(1.2 + 1.1 * len(methods) * len(datasets), 3.2))
    width = 0.8 / max(len(datasets), 1)
    for i, (dataset, means) in enumerate(zip(datasets, all_means)):
        axis.bar(np.arange(len(methods)) + i * width, [means.get(m, 0.0) for m in methods], width, label=dataset)
    axis.set_xticks(np.arange(len(methods)) + width * (len(datasets) - 1) / 2, methods, rotation=30)
    axis.set_ylabel("test metric (mean over victims)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _prediction(out: Path, dataset: str, victim: str, method: str) -> np.ndarray | None:
    name = f"{dataset}|{victim}|{method}|none".replace("|", "__").replace("/", "_").replace(":", "_") + ".npy"
    path = out / "predictions" / name
    return np.load(path)[0] if path.is_file() else None


def image_grid(data: dict, out: Path, dataset: str) -> Path:
    """Rows = protected methods: train image clean / noise (amplified) / protected, test image / GT /
    prediction of the clean-trained and of the protected-trained first victim. Methods without a
    protected-image cache for ``dataset`` (merged runs) get no row; FileNotFoundError when none has one."""
    from unseg.evaluation.protocol import pick_stems  # local: protocol imports this module's siblings

    config = EvaluationConfig.from_dict(data["config"])
    folder = SegmentationFolder(Path(config.data_root) / dataset)
    spec = folder.spec
    train_stem = pick_stems(folder.stems(spec.train_split), config.train_limit(len(folder.stems(spec.train_split))), config.seed)[0]
    test_stem = pick_stems(folder.stems(spec.test_split), config.test_images, config.seed)[0]
    size = victim_size(spec, config.image_height)
    test_image, test_mask = resize_pair(folder.read_image(test_stem).rgb8(), folder.read_mask(test_stem), size,
                                        config.victim_fit, spec.pad_label)
    clean = folder.read_image(train_stem).rgb8()
    victim = config.victims[0]
    caches = {m: protected_folder(out / "protected", m, dataset, config.method_options(spec.aspect))
              for m in config.methods if m != CLEAN}
    # merged runs: a method may not have run on every dataset
    methods = [m for m, cache in caches.items() if (cache / f"{train_stem}.png").is_file()]
    if caches and not methods:
        raise FileNotFoundError(f"no protected image of {train_stem} in {', '.join(map(str, caches.values()))}")
    clean_pred = _prediction(out, dataset, victim, CLEAN)
    titles = ["clean train", "noise (amplified)", "protected", "test image", "ground truth",
              f"{victim}: clean-trained", f"{victim}: protected-trained"]
    figure, axes = plt.subplots(max(len(methods), 1), len(titles), figsize=(2.2 * len(titles), 1.9 * max(len(methods), 1)), squeeze=False)
    colour = dict(cmap="tab20", vmin=0, vmax=max(spec.num_classes, 20) - 1, interpolation="nearest")
    for row, method in enumerate(methods):
        protected = read_protected(caches[method], train_stem)
        noise = protected.astype(np.int16) - clean.astype(np.int16)
        peak = max(int(np.abs(noise).max()), 1)
        panels = [clean, (127.5 + noise * 127.5 / peak).clip(0, 255).astype(np.uint8), protected,
                  test_image.permute(1, 2, 0).numpy()]
        for col, panel in enumerate(panels):
            axes[row][col].imshow(panel)
        mask = test_mask.numpy().copy()
        axes[row][4].imshow(np.where(mask >= spec.num_classes, 0, mask), **colour)
        for col, prediction in ((5, clean_pred), (6, _prediction(out, dataset, victim, method))):
            if prediction is not None:
                axes[row][col].imshow(prediction, **colour)
        axes[row][0].set_ylabel(method, fontsize=8)
    for col, title in enumerate(titles):
        axes[0][col].set_title(title, fontsize=7)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    path = out / f"grid_{dataset}.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
