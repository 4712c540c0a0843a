"""Merge ``unseg evaluate`` run folders that share one schedule into one results.json + report.

Runs of the same grid split over processes (one method each, to use every core) write separate
folders; this joins their cells, protection records and priors, checks the schedules agree, and
writes ``report.md`` and the figures from the merged results (sample predictions are copied, the
protected-image caches linked, so that the image grid can be drawn). Usage:

    python benchmarks/merge_results.py OUT RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from unseg.evaluation import write_report
from unseg.evaluation.config import AXIS_FIELDS, DISPLAY_FIELDS
from unseg.evaluation.protocol import RESULTS_FILE

MERGED_KEYS = ("cells", "protection", "priors", "generators")


def merge(runs: list[dict]) -> dict:
    """One results mapping from several; fails when their configs differ beyond the grid axes."""
    first = runs[0]
    merged = {**first, "config": dict(first["config"]), **{key: {} for key in MERGED_KEYS}}
    schedule = {k: v for k, v in first["config"].items() if k not in AXIS_FIELDS + DISPLAY_FIELDS}
    for data in runs:
        other = {k: v for k, v in data["config"].items() if k not in AXIS_FIELDS + DISPLAY_FIELDS}
        if other != schedule:
            changed = sorted(k for k in schedule.keys() | other.keys() if schedule.get(k) != other.get(k))
            raise ValueError(f"runs differ in {', '.join(changed)}: not one grid")
        for key in AXIS_FIELDS:
            merged["config"][key] = list(dict.fromkeys([*merged["config"][key], *data["config"][key]]))
        for key in MERGED_KEYS:
            merged[key].update(data.get(key, {}))
    return merged


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the merged results.json, report.md and figures")
    parser.add_argument("runs", type=Path, nargs="+", help="run folders of unseg evaluate")
    args = parser.parse_args(argv)
    data = merge([json.loads((run / RESULTS_FILE).read_text()) for run in args.runs])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RESULTS_FILE).write_text(json.dumps(data, indent=1))
    for run in args.runs:
        for prediction in sorted((run / "predictions").glob("*.npy")):
            (args.out / "predictions").mkdir(exist_ok=True)
            shutil.copyfile(prediction, args.out / "predictions" / prediction.name)
        for cache in sorted(p for p in (run / "protected").glob("*") if p.is_dir()):
            (args.out / "protected").mkdir(exist_ok=True)
            link = args.out / "protected" / cache.name
            if not link.exists():
                link.symlink_to(cache.resolve(), target_is_directory=True)
    print(write_report(data, args.out))


if __name__ == "__main__":
    main()
