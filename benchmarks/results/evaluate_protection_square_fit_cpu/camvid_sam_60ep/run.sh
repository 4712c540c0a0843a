#!/bin/bash
# CamVid, box-prompted `sam` victim, 60 epochs: clean and unseg (the shipped default, square fit),
# one process each, side by side on the 2-core CPU (code 1c33484); then one merged results.json + report.
# Stop 32 ran the two with torch.set_flush_denormal(True) set before the CLI (the same as the code
# from 239453e on does itself), through `python -c "import torch; torch.set_flush_denormal(True);
# from unseg.cli.main import app; app()" evaluate ...`; with the current code plain `unseg evaluate` is the same.
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
C="--datasets camvid --victims sam --epochs 60 --preset strong_cpu --no-amp"  # with progress bars, as run
unseg evaluate --out runs/bench_long_clean --methods clean $C &
unseg evaluate --out runs/bench_long_unseg --methods unseg $C &
wait
python benchmarks/merge_results.py benchmarks/results/evaluate_protection_square_fit_cpu/camvid_sam_60ep \
    runs/bench_long_clean runs/bench_long_unseg
