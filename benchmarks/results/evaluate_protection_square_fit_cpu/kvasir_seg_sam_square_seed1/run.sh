#!/bin/bash
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
C="--preset strong_cpu --no-amp --no-progress"
# run b's images (symlinked)
unseg evaluate --out runs/bench_sq_e --datasets kvasir_seg --victims sam --methods unseg_square --epochs 20 --seed 1 $C
