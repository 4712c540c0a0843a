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

# stop 39 (2026-12-06 22:09–00:44 UTC, code cecb63b; report code bf068c4): CamVid under the same defences and the
# hand-made `pattern` under adversarial training on Kvasir-SEG, same schedule, merged into the same folder (the
# stop-38 cells are taken from the committed results.json, copied to runs/mix11/stop38/ first)
$E --out runs/at12/cam_clean --methods clean --defences advtrain --datasets camvid &
$E --out runs/at12/cam_unseg --methods unseg --defences advtrain --datasets camvid &
wait
$E --out runs/at12/kv_pattern --methods pattern --defences advtrain &
( $E --out runs/at12/cam_mix --methods unseg,clean --defences mix20 --datasets camvid
  $E --out runs/at12/cam_e16 --methods unseg --defences advtrain --epsilon 16 --epsilon-bg 4 --datasets camvid ) &
wait
# then (23:36–00:13) ε 16 on CamVid without a defence, and adversarial training at 8/255 (`advtrain8`)
( $E --out runs/at12/cam_e16none --methods unseg --defences none --epsilon 16 --epsilon-bg 4 --datasets camvid
  $E --out runs/at12/cam_clean8 --methods clean --defences advtrain8 --datasets camvid ) &
$E --out runs/at12/cam_e16at8 --methods unseg --defences advtrain8 --epsilon 16 --epsilon-bg 4 --datasets camvid &
wait
# then (00:22–00:44) the DeepLabV3+ victim under adversarial training
D="--victims deeplabv3plus --datasets camvid --defences advtrain"
$E --out runs/at12/cam_dl_clean --methods clean $D &
$E --out runs/at12/cam_dl_unseg --methods unseg $D &
wait
F=benchmarks/results/evaluate_protection_mixtures_cpu_v11
mkdir -p runs/mix11/stop38 runs/mix11/stop38e16 && cp $F/results.json runs/mix11/stop38/ && cp $F/eps16/results.json runs/mix11/stop38e16/
python benchmarks/merge_results.py $F runs/mix11/stop38 runs/at12/{cam_clean,cam_unseg,kv_pattern,cam_mix,cam_clean8,cam_dl_clean,cam_dl_unseg}
python benchmarks/merge_results.py $F/eps16 runs/mix11/stop38e16 runs/at12/{cam_e16,cam_e16none,cam_e16at8}
rm -rf $F/{protected,predictions} $F/eps16/{protected,predictions}  # not committed
