"""What every committed benchmark table says about itself: the command, the code commit, the
hardware and the date (STYLE.md, "Results that explain themselves"). Imported by the benchmark
scripts, which run as ``python benchmarks/<script>.py`` (this folder is then on ``sys.path``)."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def commit() -> str:
    """Short hash of HEAD, marked when the code (src/, benchmarks/*.py) has uncommitted changes."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks/*.py"],
                           cwd=REPO, capture_output=True, text=True).stdout.strip()
    return head + (" (uncommitted changes)" if dirty else "")


def machine(device: str, threads: int) -> str:
    """The hardware a number was measured on, in words (GPU model, or CPU model, cores, threads)."""
    if device.startswith("cuda"):
        import torch

        return f"GPU {torch.cuda.get_device_name(torch.device(device))}"
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return f"CPU {model}, {os.cpu_count()} cores, {threads} torch threads"


def header(script: str, devices: list[str], threads: int, note: str = "", *details: str) -> list[str]:
    """``#`` lines: command, code and date, ``details``, one line per device, the note."""
    import torch

    return [f"# command: python benchmarks/{Path(script).name} {shlex.join(sys.argv[1:])}".rstrip(),
            f"# code: {commit()}; torch {torch.__version__}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
            *(f"# {detail}" for detail in details),
            *(f"# {device}: {machine(device, threads)}" for device in devices),
            *([f"# note: {note}"] if note else [])]


def write(path: Path | None, lines: list[str]) -> None:
    """The table into ``path`` (nothing when None)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
