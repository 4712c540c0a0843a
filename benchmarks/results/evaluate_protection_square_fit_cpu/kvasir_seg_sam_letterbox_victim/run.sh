#!/bin/bash
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
C="--preset strong_cpu --no-amp --no-progress"
# images of run bench_vfit_lb (symlinked into runs/bench_vfit_sam/protected; same identity)
unseg evaluate --out runs/bench_vfit_sam --datasets kvasir_seg --victims sam --methods unseg --victim-fit letterbox --epochs 20 $C
