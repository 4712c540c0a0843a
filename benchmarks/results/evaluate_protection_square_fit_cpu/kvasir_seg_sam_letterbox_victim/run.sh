#!/bin/bash
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
C="--datasets kvasir_seg --victims sam --victim-fit letterbox --epochs 20 --preset strong_cpu --no-amp"
# stop 31 (code ba39344): the unseg (square default) cell, on the images of run bench_vfit_lb
# (symlinked into runs/bench_vfit_sam/protected; same identity)
unseg evaluate --out runs/bench_vfit_sam --methods unseg $C --no-progress
# stop 32 (code 8f9603e, subnormal floats flushed; the two side by side, progress bars on)
unseg evaluate --out runs/vfit_sam_clean --methods clean $C &
unseg evaluate --out runs/vfit_sam_unseg_letterbox --methods unseg_letterbox $C &
wait
python benchmarks/merge_results.py benchmarks/results/evaluate_protection_square_fit_cpu/kvasir_seg_sam_letterbox_victim \
    runs/bench_vfit_sam runs/vfit_sam_clean runs/vfit_sam_unseg_letterbox
