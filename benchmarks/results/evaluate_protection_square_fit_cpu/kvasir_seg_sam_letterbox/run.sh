#!/bin/bash
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
C="--preset strong_cpu --no-amp --no-progress"
# plain unseg ran with the letterbox fit (the default then); today: --methods unseg_letterbox
unseg evaluate --out runs/bench_sq_d --datasets kvasir_seg --victims sam --methods unseg_letterbox --epochs 20 $C
