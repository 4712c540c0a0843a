#!/bin/bash
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
C="--preset strong_cpu --no-amp --no-progress"
# plain unseg ran with the letterbox fit (the default then; protection.json records it); today: unseg_letterbox
unseg evaluate --out runs/bench_sq_f --datasets camvid --victims unet --methods clean,unseg_letterbox,unseg_square --epochs 8 $C
