#!/usr/bin/env bash
# Issue 9's grid with v11: the unseg cells of the v11 generator (stop 36, 2026-12-06 14:46–16:02 UTC, code 483abc7),
# merged with the v10 grid's 48 cells (../evaluate_protection_grid_cpu_v10/run.sh: same preset, schedule, seed;
# the evaluation code changed only for gray images since, and these two sets are colour).
# Stop 36 ran v11 as `unseg:runs/gray/v10_yellow.safetensors`, v10's file with noise_codes[1] recoloured, built
# before the preset existed; tensor for tensor what `python benchmarks/make_default_generator.py` now writes
# (checked). On a clean clone use the shipped file, as below. The Kvasir-SEG UNet cell came from the gray
# probe's run (`../gray_probe.md`: --defences gray,none; its `none` cell only). Resumable like the others.
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
V11=unseg:src/unseg/weights/default_generator.safetensors
unseg evaluate --out runs/grid_v11_camvid --preset strong_cpu --datasets camvid --victims unet,deeplabv3plus,fpn,sam \
  --methods $V11 --no-amp --no-progress --data-root ../shared/data &
unseg evaluate --out runs/grid_v11_kvasir_seg --preset strong_cpu --datasets kvasir_seg --victims unet,sam,deeplabv3plus,fpn \
  --methods $V11 --no-amp --no-progress --data-root ../shared/data &
wait
python benchmarks/merge_results.py benchmarks/results/evaluate_protection_grid_cpu_v11 \
  runs/grid_camvid runs/grid_kvasir_seg runs/grid_kvasir_seg_random runs/grid_v10_camvid runs/grid_v10_kvasir_seg \
  runs/grid_v11_camvid runs/grid_v11_kvasir_seg
rm -rf benchmarks/results/evaluate_protection_grid_cpu_v11/{protected,predictions}  # not committed
