#!/bin/bash
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
C="--preset strong_cpu --no-amp --no-progress"
unseg evaluate --out runs/bench_sq_k --datasets kvasir_seg --victims sam --methods random,synper --epochs 20 $C
