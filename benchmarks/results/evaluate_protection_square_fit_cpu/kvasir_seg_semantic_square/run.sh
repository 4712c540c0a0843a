#!/bin/bash
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
C="--preset strong_cpu --no-amp --no-progress"
# run b's images (symlinked into runs/bench_sq_h/protected)
unseg evaluate --out runs/bench_sq_h --datasets kvasir_seg --victims deeplabv3plus,fpn,segformer --methods unseg_square --epochs 5 $C
