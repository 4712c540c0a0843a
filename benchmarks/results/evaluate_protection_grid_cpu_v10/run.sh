#!/usr/bin/env bash
# Issue 9's grid with v10: the unseg cells of the shipped v10 generator (stop 35, 2026-12-06 11:44–13:05 UTC,
# code bd88503), merged with the v9 grid's other cells (../evaluate_protection_grid_cpu/run.sh: same preset,
# schedule and seed; the clean / pattern / synper / random cells do not depend on the generator).
# Stop 35 ran the v10 cells as `unseg:runs/v9chkfine.safetensors`, a file with v10's tensors built before
# v10 became the default (equal to `python benchmarks/make_default_generator.py --preset keyed_checker`,
# checked tensor by tensor); on a clean clone use the shipped file, as below. Resumable like the v9 grid.
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
V10=unseg:src/unseg/weights/default_generator.safetensors
unseg evaluate --out runs/grid_v10_camvid --preset strong_cpu --datasets camvid --methods $V10 --no-amp --no-progress &
unseg evaluate --out runs/grid_v10_kvasir_seg --preset strong_cpu --datasets kvasir_seg --methods $V10 --no-amp --no-progress &
wait
python benchmarks/merge_results.py benchmarks/results/evaluate_protection_grid_cpu_v10 \
  runs/grid_camvid runs/grid_kvasir_seg runs/grid_kvasir_seg_random runs/grid_v10_camvid runs/grid_v10_kvasir_seg
rm -rf benchmarks/results/evaluate_protection_grid_cpu_v10/{protected,predictions}  # not committed
