#!/usr/bin/env bash
# v11 (the shipped generator) on Kvasir-SEG under clean/protected mixtures and PGD adversarial training
# (stop 38, 2026-12-06 20:13–21:50 UTC, code 028edc4; the e16 run in fact started at 21:03, beside run b's clean cell): the strong_cpu preset's schedule (full splits, 128 px, 8 epochs, fp32, seed 0), UNet,
# one torch thread per process, two processes at a time on the project's 2-core CPU. Resumable per cell.
# `mix<K>` trains on K % clean + the rest protected; its reference `cleanpart<K>` (the clean method's cell)
# trains on the same K % clean images alone. `advtrain` = PGD adversarial training, radius 4/255, 3 steps.
# The `none` cells (clean 50.7, v11 0.0) are in ../evaluate_protection_grid_cpu_v11/ (same schedule).
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
E="unseg evaluate --preset strong_cpu --victims unet --no-amp --no-progress --data-root ../shared/data --datasets kvasir_seg"
$E --out runs/mix11/a --methods clean,unseg --defences mix20,mix60 &
$E --out runs/mix11/b --methods unseg,clean --defences advtrain &
wait
# the same generator at twice the budget (ε 16/255, ε_bg 4/255) under the same adversarial training: its own run
# folder (a budget is part of a run's schedule, so it is not merged); its report.md / results.json are in eps16/
$E --out runs/mix11/e16 --methods unseg --defences advtrain --epsilon 16 --epsilon-bg 4
python benchmarks/merge_results.py benchmarks/results/evaluate_protection_mixtures_cpu_v11 runs/mix11/{a,b}
rm -rf benchmarks/results/evaluate_protection_mixtures_cpu_v11/{protected,predictions}  # not committed
