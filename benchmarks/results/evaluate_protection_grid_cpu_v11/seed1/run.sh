#!/usr/bin/env bash
# The CamVid semantic cells of issue 9's v11 grid with a second seed (stop 40, 2026-12-07 00:58–01:43 UTC,
# code 4e92310): seed 1 changes the victims' initialisation and data order (v11's noise is deterministic).
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
unseg evaluate --out runs/seed1 --preset strong_cpu --datasets camvid --victims unet,deeplabv3plus,fpn \
  --methods clean,unseg --seed 1 --no-amp --no-progress --data-root ../shared/data
python benchmarks/merge_results.py benchmarks/results/evaluate_protection_grid_cpu_v11/seed1 runs/seed1
rm -rf benchmarks/results/evaluate_protection_grid_cpu_v11/seed1/{protected,predictions}  # not committed
