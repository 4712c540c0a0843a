"""Training metrics: one CSV row per optimiser step or evaluation, and a PNG of the curves."""

from __future__ import annotations

import csv
import math
from pathlib import Path

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
        (axes[0], ("surrogate_loss", "semantic_loss"), "surrogate losses (protected inputs, true masks)"),
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
        axis.legend()
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
