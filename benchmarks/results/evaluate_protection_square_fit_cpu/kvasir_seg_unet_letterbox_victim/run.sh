#!/bin/bash
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
C="--preset strong_cpu --no-amp --no-progress"
unseg evaluate --out runs/bench_vfit_lb --datasets kvasir_seg --victims unet --methods clean,unseg,unseg_letterbox --victim-fit letterbox --epochs 5 $C
