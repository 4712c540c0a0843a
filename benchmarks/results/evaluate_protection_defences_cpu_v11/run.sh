#!/usr/bin/env bash
# v11 (the shipped generator) under image and training defences (stop 37, 2026-12-06 16:45–18:55 UTC, code 8dd0178):
# the strong_cpu preset's schedule (full splits, 128 px, 8 epochs, fp32, seed 0), UNet only, one torch thread
# per process, two processes at a time on the project's 2-core CPU. The CamVid runs started on the core the
# Kvasir-SEG run of the same pair left. The `none` and `gray` cells are in ../evaluate_protection_grid_cpu_v11/
# and ../gray_probe.md (same schedule). Resumable per cell.
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
E="unseg evaluate --preset strong_cpu --victims unet --no-amp --no-progress --data-root ../shared/data"
$E --out runs/def11/a --datasets kvasir_seg --methods clean,unseg,pattern --defences jpeg75,blur1 &
$E --out runs/def11/b --datasets kvasir_seg --methods clean,unseg,pattern --defences augment,bits3 &
wait
$E --out runs/def11/c --datasets camvid --methods clean,unseg --defences jpeg75,blur1 &
$E --out runs/def11/d --datasets camvid --methods clean,unseg --defences augment,bits3 &
wait
python benchmarks/merge_results.py benchmarks/results/evaluate_protection_defences_cpu_v11 runs/def11/{a,b,c,d}
rm -rf benchmarks/results/evaluate_protection_defences_cpu_v11/{protected,predictions}  # not committed
