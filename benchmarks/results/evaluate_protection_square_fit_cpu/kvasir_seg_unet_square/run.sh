#!/bin/bash
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
C="--preset strong_cpu --no-amp --no-progress"
# images of runs a and b (symlinked into runs/bench_sq_c/protected; same identities)
unseg evaluate --out runs/bench_sq_c --datasets kvasir_seg --victims unet --methods unseg_square,unseg_refined_square --epochs 5 $C
