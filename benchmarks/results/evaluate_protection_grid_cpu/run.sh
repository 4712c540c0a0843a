#!/usr/bin/env bash
# Issue 9's grid in one schedule on 2 CPU cores (the strong_cpu preset without unseg_refined), one process
# per dataset. Resumable: rerun the same commands into the same folders to continue (finished cells are
# skipped; an unfinished one goes on from its last saved epoch). Then merge into this folder.
# Started 2026-12-06 05:34 UTC at code cd6b730 (stop 33). Stop 34 moved Kvasir-SEG's `random` cells to a
# third process (its own folder; same schedule, merged below) so that both cores stay busy to the end.
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
run() {  # run FOLDER DATASET METHODS
  if pgrep -f "unseg evaluate --out $1 " >/dev/null; then  # still running (e.g. from an earlier stop)
    echo "$1: a process is still writing it; waiting for that one" >&2
    while pgrep -f "unseg evaluate --out $1 " >/dev/null; do sleep 60; done
  else
    unseg evaluate --out $1 --preset strong_cpu --datasets $2 --methods $3 --no-amp --no-progress >> $1.log 2>&1
  fi
}
run runs/grid_camvid camvid clean,unseg,pattern,synper,random &
run runs/grid_kvasir_seg kvasir_seg clean,unseg,pattern,synper &
run runs/grid_kvasir_seg_random kvasir_seg random &
wait
python benchmarks/merge_results.py benchmarks/results/evaluate_protection_grid_cpu \
  runs/grid_camvid runs/grid_kvasir_seg runs/grid_kvasir_seg_random
rm -rf benchmarks/results/evaluate_protection_grid_cpu/{protected,predictions}  # links / sample predictions: not committed
