"""Training metrics: one CSV row per optimiser step or evaluation, and a PNG of the curves."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

COLUMNS = ("step", "round", "phase", "surrogate_loss", "semantic_loss", "generator_loss", "generator_semantic_loss",
           "generator_mask_loss", "iou_protected", "iou_clean", "semantic_iou_protected", "semantic_iou_clean",
           "code_accuracy_protected", "code_accuracy_clean", "generator_lr", "surrogate_lr", "seconds")


class MetricsLog:
    """Appends rows to ``metrics.csv``; on resume, rows after the resumed step are dropped."""

    def __init__(self, path: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = read_metrics(self.path) if resume_step is not None and self.path.is_file() else []
        rows = [r for r in rows if int(r["step"]) < resume_step] if resume_step is not None else []
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, **values: float | int | str) -> None:
        """Append one row (missing columns left empty; unknown columns are an error)."""
        unknown = set(values) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown metrics columns {sorted(unknown)}")
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=COLUMNS).writerow(values)


class StepLog:
    """Step values kept as 0-d tensors on the device and written to ``log`` every ``every`` steps.

    Reading a value waits for the device; doing it once per ``every`` steps (one ``tolist`` of all
    the buffered values and, under DDP, one ``reduce`` of them: the mean over processes) keeps the
    training loop free of per-step host syncs on a GPU. A row's ``seconds`` is its step's own time
    when ``synchronous`` (on CPU every op finishes before the next starts), else the wall time of
    its flush window over its steps (on CUDA the host runs ahead). ``log`` None (ranks > 0):
    the values are reduced, not written.
    """

    def __init__(self, log: MetricsLog | None, every: int, synchronous: bool,
                 reduce: Callable[[torch.Tensor], torch.Tensor] = lambda values: values) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.log, self.every, self.synchronous, self.reduce = log, every, synchronous, reduce
        self.rows: list[tuple[dict, dict[str, torch.Tensor], float]] = []
        self.window_start = time.perf_counter()

    def add(self, row: dict, values: dict[str, torch.Tensor], seconds: float) -> dict[str, float]:
        """Buffer one step (``row``: step, round, phase, learning rates); returns the flushed
        values when this step completed a window, else {}."""
        self.rows.append((row, values, seconds))
        return self.flush() if len(self.rows) >= self.every else {}

    def flush(self) -> dict[str, float]:
        """Write the buffered steps; returns the latest value of every key written."""
        if not self.rows:
            return {}
        flat = torch.stack([value.detach().float().reshape(()) for _, values, _ in self.rows for value in values.values()])
        numbers = iter(self.reduce(flat).tolist())
        window = (time.perf_counter() - self.window_start) / len(self.rows)
        latest: dict[str, float] = {}
        for row, values, seconds in self.rows:
            written = {key: next(numbers) for key in values}
            latest.update(written)
            if self.log is not None:
                self.log.write(**row, **written, seconds=round(seconds if self.synchronous else window, 4))
        self.rows.clear()
        self.window_start = time.perf_counter()
        return latest


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """Rows of a metrics CSV as dicts of strings."""
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def _series(rows: list[dict[str, str]], column: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in rows:
        if row.get(column):
            value = float(row[column])
            if math.isfinite(value):
                xs.append(int(row["step"]))
                ys.append(value)
    return xs, ys


def plot_metrics(csv_path: str | Path, png_path: str | Path) -> None:
    """Plot surrogate loss, generator loss and surrogate IoU (protected vs clean) over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(csv_path)
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for axis, columns, title in (
        (axes[0], ("surrogate_loss", "semantic_loss"), "surrogate losses (true masks; protected inputs, clean if adversarial)"),
        (axes[1], ("generator_loss", "generator_semantic_loss", "generator_mask_loss"), "generator losses"),
        (axes[2], ("iou_protected", "iou_clean", "semantic_iou_protected", "semantic_iou_clean",
                   "code_accuracy_protected", "code_accuracy_clean"),
         "surrogate IoU (code accuracy) on validation objects"),
    ):
        for column in columns:
            xs, ys = _series(rows, column)
            if xs:
                axis.plot(xs, ys, label=column, marker="o" if "iou" in column or "accuracy" in column else None,
                          linewidth=1 if column.endswith("loss") else 1.5)
        axis.set_title(title)
        axis.set_xlabel("step")
        if axis.lines:  # no generator steps yet during warm-up rounds
            axis.legend()
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
